"""``check: alembic_revision`` - where the database's Alembic history stands.

Exactly one of:

- ``current: REV`` (or a list of revisions, one per applied branch head; an
  empty list means base): the ``alembic_version`` rows, read directly, equal it;
- ``at_head: true`` with ``config``: they equal the script directory's heads;
- ``single_head: true`` with ``config``: the script directory has one head
  (a merge is not missing); this one needs no connection.

``config`` is an alembic.ini relative to the runbook's directory, found and
read as the ``alembic`` step does (``runbook.alembic_project``): a relative
``script_location`` inside it is alembic's, relative to the working directory.
A config or script directory that cannot be found is an error of the check,
not an observed value.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runbook.alembic_project import AlembicProjectError, existing_ini, load_config, script_directory
from runbook.checks.base import CheckContext, CheckResult
from runbook.checks.schema import TableName, quote_table, reading, split_table


class AlembicRevisionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str | None = None
    current: str | list[str] | None = None
    at_head: bool = False
    single_head: bool = False
    config: str | None = Field(default=None, description="Path of alembic.ini, relative to the runbook's directory; needed for at_head and single_head.")
    version_table: TableName = "alembic_version"

    @model_validator(mode="after")
    def _one_question(self) -> AlembicRevisionParams:
        questions = {"current": self.current is not None, "at_head": self.at_head, "single_head": self.single_head}
        chosen = [name for name, asked in questions.items() if asked]
        if len(chosen) != 1:
            raise ValueError("give exactly one of current: REV, at_head: true or single_head: true")
        if (self.at_head or self.single_head) and not self.config:
            raise ValueError(f"{chosen[0]} needs config: path/to/alembic.ini")
        if not self.single_head and not self.connection:
            raise ValueError(f"{chosen[0]} needs a connection")
        return self

    @property
    def expected_current(self) -> set[str]:
        if isinstance(self.current, str):
            return {self.current}
        return set(self.current or [])


def _show(revisions: set[str] | list[str] | tuple[str, ...]) -> str:
    return ", ".join(sorted(revisions)) or "base (no revision)"


class AlembicRevisionCheck:
    name: ClassVar[str] = "alembic_revision"
    Params: ClassVar[type[BaseModel]] = AlembicRevisionParams
    read_only: ClassVar[bool] = True

    def describe(self, params: AlembicRevisionParams) -> str:
        if params.single_head:
            return f"alembic scripts in {params.config} have a single head"
        if params.at_head:
            return f"[{params.connection}] alembic revision is at head of {params.config}"
        return f"[{params.connection}] alembic revision is {_show(params.expected_current)}"

    def evaluate(self, params: AlembicRevisionParams, ctx: CheckContext) -> CheckResult:
        if params.current is not None:
            expected = params.expected_current
            return _compare(_applied(params, ctx), expected, _show(expected))
        assert params.config is not None  # the validator requires it with at_head and single_head
        try:
            scripts = script_directory(load_config(existing_ini(ctx.runbook_file(params.config), params.config)))
        except AlembicProjectError as err:
            return CheckResult.errored(err.message)
        heads = tuple(scripts.get_heads())
        if params.single_head:
            observed = f"{len(heads)} heads: {_show(heads)}" if len(heads) != 1 else f"1 head: {heads[0]}"
            hint = None if len(heads) == 1 else "merge them (alembic merge heads) before deploying"
            return CheckResult(len(heads) == 1, observed, "1 head", hint)
        return _compare(_applied(params, ctx), set(heads), f"head {_show(heads)}")


def _applied(params: AlembicRevisionParams, ctx: CheckContext) -> tuple[set[str], str | None]:
    """The revisions in the version table; no table means nothing applied yet."""
    import sqlalchemy as sa

    assert params.connection is not None  # the validator requires it unless single_head
    schema, name = split_table(params.version_table)
    with reading(ctx, params.connection) as conn:
        if not sa.inspect(conn).has_table(name, schema=schema):
            return set(), f"no {params.version_table} table"
        rows = conn.execute(sa.text(f"SELECT version_num FROM {quote_table(conn, params.version_table)}")).scalars()
        return set(rows), None


def _compare(applied: tuple[set[str], str | None], expected: set[str], shown: str) -> CheckResult:
    revisions, note = applied
    ok = revisions == expected
    detail = note
    if not ok and len(revisions) > 1:
        detail = "several heads are applied (branches not merged)"
    return CheckResult(ok, _show(revisions), shown, detail)


KIND = AlembicRevisionCheck()
