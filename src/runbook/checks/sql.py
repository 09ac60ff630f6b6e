"""``check: sql`` - run a read-only query and compare its first value with ``expect``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from runbook.checks.base import CheckContext, CheckResult
from runbook.expect import ExpectationText, parse_expectation


class SqlCheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str
    query: str
    expect: ExpectationText = "is not null"
    params: dict[str, Any] = {}


class SqlCheck:
    name: ClassVar[str] = "sql"
    Params: ClassVar[type[BaseModel]] = SqlCheckParams
    # SQL text: a templated value in it must be a number or a checked name (runbook.sqltext).
    sql_keys: ClassVar[frozenset[str]] = frozenset({"query"})
    sql_binds: ClassVar[bool] = True
    read_only: ClassVar[bool] = True

    def describe(self, params: SqlCheckParams) -> str:
        query = " ".join(params.query.split())
        return f"[{params.connection}] {query}  -> expect {parse_expectation(params.expect)}"

    def evaluate(self, params: SqlCheckParams, ctx: CheckContext) -> CheckResult:
        expectation = parse_expectation(params.expect)
        observed = query_scalar(ctx, params.connection, params.query, params.params)
        return CheckResult(expectation.holds(observed), _show(observed), str(expectation))


def query_scalar(ctx: CheckContext, connection: str, query: str, params: dict[str, Any] | None = None) -> Any:
    """The first column of the first row (None when there is no row), in a
    transaction that is rolled back: a check never changes data."""
    import sqlalchemy as sa

    engine = ctx.connections.engine(connection)
    with engine.connect() as conn:
        try:
            row = conn.execute(sa.text(query), params or {}).first()
        finally:
            conn.rollback()
    return None if row is None else row[0]


def _show(value: Any) -> str:
    return "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)


KIND = SqlCheck()
