"""``kind: alembic`` - upgrade, downgrade, stamp or read a database's alembic revision.

Runs in-process through alembic's Python API. The database is the one the
project's ``env.py`` connects to; ``connection`` names a runbook connection
whose URL is handed to it as the ``sqlalchemy.url`` main option.

``target`` may be a comma-joined list such as ``c64d9a16fa9d,c6b208ba7659``:
upgrade and downgrade then go to each revision in turn and check that the
database ends at exactly those heads. That is what makes the rollback contract
work on a branched history::

    rollback: {kind: alembic, config: alembic.ini, command: downgrade,
               target: "{{ steps.migrate.outputs.from }}"}

A single downgrade target below a merge is not the same thing: from the merge
``fdf1b7f6bbe1`` of ``ee4f9c4fb5b3`` (on ``c64d9a16fa9d``) and ``c6b208ba7659``,
``downgrade c6b208ba7659`` undoes only the merge and leaves heads
``c6b208ba7659,ee4f9c4fb5b3``; alembic undoes the descendants of the target, and
``ee4f9c4fb5b3`` is not one.

Outputs: ``from_revisions`` and ``to_revisions`` (sorted lists of the heads
before and after) and ``from``/``to`` (the same, comma-joined; ``base`` when
there is no revision). In a dry run nothing touches the schema: ``to`` is the
predicted result, ``would_apply`` lists ``"rev: message"`` in order and ``sql``
holds alembic's offline SQL for those revisions, or None (with a note in the
output) when a migration cannot render offline, such as SQLite batch mode,
which needs a live connection to reflect the table. A stamp applies no
revision, so its ``would_apply`` is empty and its ``sql`` is "".

alembic's log (``Running upgrade a -> b, message``) becomes the step's output.
An ``env.py`` should leave logging alone when
``config.attributes.get("configure_logger", True)`` is false, as the example
project's does; one that always calls ``fileConfig`` replaces the capture.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runbook.connections import ConnectionFailed, describe_db_error
from runbook.steps.base import StepContext, StepOutcome

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationStep
    from alembic.script import Script, ScriptDirectory

Command = Literal["upgrade", "downgrade", "stamp", "current"]
TAIL_LINES = 20
BASE = "base"


class AlembicParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str = Field(description="Path of alembic.ini, relative to the runbook's directory.")
    connection: str | None = Field(default=None, description="A runbook connection whose URL env.py receives as sqlalchemy.url.")
    command: Command
    target: str | None = Field(default=None, description="A revision, 'head', 'heads', 'base', or a comma-joined list.")

    @model_validator(mode="after")
    def _target_fits_command(self) -> AlembicParams:
        if self.command == "current":
            if self.target is not None:
                raise ValueError("'current' takes no target")
        elif not self.targets:
            raise ValueError(f"'{self.command}' needs a target, e.g. head or a revision id")
        return self

    @property
    def targets(self) -> list[str]:
        return [t.strip() for t in (self.target or "").split(",") if t.strip()]


class AlembicStep:
    name: ClassVar[str] = "alembic"
    Params: ClassVar[type[BaseModel]] = AlembicParams
    changes_data: ClassVar[bool] = True
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: AlembicParams) -> str:
        where = f"[{params.connection}] " if params.connection else ""
        target = f" {params.target}" if params.target else ""
        return f"{where}alembic {params.command}{target} ({params.config})"

    def run(self, params: AlembicParams, ctx: StepContext) -> StepOutcome:
        from alembic import command
        from alembic.script import ScriptDirectory

        ini = ctx.workdir / params.config
        if not ini.is_file():
            return StepOutcome(False, error=f"alembic config {params.config} not found")
        try:
            config = _config(ini, params.connection, ctx)
        except ConnectionFailed as err:
            return StepOutcome(False, error=err.message)
        log = _AlembicLog(ctx)
        action = params.command if params.command == "current" else f"{params.command} to {params.target}"
        script: ScriptDirectory | None = None
        before: list[str] | None = None
        try:
            script = ScriptDirectory.from_config(config)
            # A list is resolved up front, so a bad revision in it fails before anything runs;
            # a single target may be relative (-1), which only the database can resolve.
            wanted = _resolve(script, params.targets) if len(params.targets) > 1 else []
            before = _current_heads(config, script)
            log.output(f"current: {_joined(before)}")
            if params.command == "current":
                return StepOutcome(True, _revision_outputs(before, before), summary=_joined(before))
            if ctx.dry_run:
                return _preview(params, config, script, before, log)
            with log:
                if params.command == "stamp":
                    command.stamp(config, params.targets)
                else:
                    for target in params.targets:
                        getattr(command, params.command)(config, target)
            after = _current_heads(config, script)
        except Exception as err:  # migration scripts are user code: whatever they raise fails this step
            return _failure(action, err, config, script, before, log)
        log.output(f"now: {_joined(after)}")
        outputs = _revision_outputs(before, after)
        if len(params.targets) > 1 and after != wanted:
            error = f"{action} left the database at {_joined(after)}, not {_joined(wanted)}"
            return StepOutcome(False, outputs, error, log.tail())
        return StepOutcome(True, outputs, tail=log.tail(), summary=f"{_joined(before)} -> {_joined(after)}")


def _config(ini: Path, connection: str | None, ctx: StepContext) -> Config:
    from alembic.config import Config

    config = Config(str(ini))
    # Asks env.py not to call logging.config.fileConfig, which would replace
    # the process's log handlers, this step's capture among them.
    config.attributes["configure_logger"] = False
    if connection:
        # Main options go through configparser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", ctx.connections.url(connection).replace("%", "%%"))
    return config


def _current_heads(config: Config, script: ScriptDirectory) -> list[str]:
    """The database's heads, read through env.py (so through its URL) without changing anything."""
    from alembic.runtime.environment import EnvironmentContext

    heads: list[str] = []

    def read(current: tuple[str, ...], _context: Any) -> list[MigrationStep]:
        heads.extend(current)
        return []

    with EnvironmentContext(config, script, fn=read, dont_mutate=True):
        script.run_env()
    return sorted(heads)


def _preview(params: AlembicParams, config: Config, script: ScriptDirectory, before: list[str], log: _AlembicLog) -> StepOutcome:
    """What the command would do, and alembic's offline SQL for it; the schema is not touched."""
    from alembic.runtime.migration import MigrationStep

    if params.command == "stamp":
        after = _resolve(script, params.targets)
        log.output(f"would stamp {_joined(after)} without running any migration")
        return StepOutcome(True, {**_revision_outputs(before, after), "would_apply": [], "sql": ""}, tail=log.tail())

    heads = tuple(before)
    applied = _lineage(script, heads)
    would_apply: list[str] = []
    chunks: list[str] = []
    offline_failed = False
    for target in params.targets:
        revisions: list[Script]
        if params.command == "upgrade":
            revisions = list(reversed(list(script.iterate_revisions(target, heads, implicit_base=True))))
            steps = [MigrationStep.upgrade_from_script(script.revision_map, rev) for rev in revisions]
            applied |= {rev.revision for rev in revisions}
        else:
            revisions = list(script.iterate_revisions(heads, target, select_for_downgrade=True))
            steps = [MigrationStep.downgrade_from_script(script.revision_map, rev) for rev in revisions]
            applied -= {rev.revision for rev in revisions}
        would_apply += [f"{rev.revision}: {_message(rev)}" for rev in revisions]
        if steps and not offline_failed:
            try:
                chunks.append(_offline_sql(config, script, steps, heads, target, log))
            except Exception as err:  # e.g. a migration that reads data through op.get_bind()
                log.output(f"offline SQL not available: {describe_db_error(err, log.ctx.masker)}")
                offline_failed = True
        heads = _heads_of(script, applied)
    sql = None if offline_failed else "\n".join(chunks)
    for line in would_apply:
        log.output(f"would apply {line}")
    for line in (sql or "").splitlines():
        if line.strip():
            log.output(line)
    outputs = {**_revision_outputs(before, list(heads)), "would_apply": would_apply, "sql": sql}
    return StepOutcome(True, outputs, tail=log.tail(), summary=f"{len(would_apply)} revision(s) would apply")


def _offline_sql(
    config: Config, script: ScriptDirectory, steps: Sequence[MigrationStep], heads: tuple[str, ...], target: str, log: _AlembicLog
) -> str:
    # `alembic upgrade start:target --sql`, except that `start` may be several heads,
    # which the command's string form cannot express but the environment accepts.
    from alembic.runtime.environment import EnvironmentContext

    buffer = io.StringIO()
    config.output_buffer = buffer
    # Offline, alembic logs "Running upgrade ..." as if it ran: the SQL's own comments say it better.
    log.echo = False
    try:
        with log, EnvironmentContext(
            config, script, fn=lambda _heads, _context: steps, as_sql=True, starting_rev=heads or None, destination_rev=target
        ):
            script.run_env()
    finally:
        log.echo = True
    return log.ctx.masker.mask(buffer.getvalue().strip())


def _lineage(script: ScriptDirectory, heads: tuple[str, ...]) -> set[str]:
    """Every revision applied when the database is at ``heads``."""
    if not heads:
        return set()
    return {rev.revision for rev in script.iterate_revisions(heads, BASE, select_for_downgrade=True)}


def _heads_of(script: ScriptDirectory, applied: set[str]) -> tuple[str, ...]:
    below = {down for rev in applied for down in _down_revisions(script.get_revision(rev))}
    return tuple(sorted(applied - below))


def _down_revisions(rev: Script | None) -> tuple[str, ...]:
    down = rev.down_revision if rev else None
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _message(rev: Script) -> str:
    lines = (rev.doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _failure(
    action: str, err: BaseException, config: Config, script: ScriptDirectory | None, before: list[str] | None, log: _AlembicLog
) -> StepOutcome:
    reason = f"{action} failed: {describe_db_error(err, log.ctx.masker)}"
    log.output(reason)
    outputs: dict[str, Any] = {}
    if script is not None and before is not None:
        try:
            # Where the failure left the database matters for what to do next.
            after: list[str] | None = _current_heads(config, script)
        except Exception:  # the database may be the very thing that failed; `to` is then unknown
            after = None
        outputs = _revision_outputs(before, after)
    details = [log.ctx.masker.mask(line) for line in str(err).splitlines()[1:10] if line.strip()]
    return StepOutcome(False, outputs, reason, log.tail() + details)


def _resolve(script: ScriptDirectory, targets: list[str]) -> list[str]:
    """The revision ids a list of targets names (``heads`` may name several, ``base`` none)."""
    return sorted({rev.revision for target in targets for rev in script.get_revisions(target) if rev})


def _revision_outputs(before: list[str], after: list[str] | None) -> dict[str, Any]:
    outputs: dict[str, Any] = {"from_revisions": before, "from": _joined(before)}
    if after is not None:
        outputs |= {"to_revisions": after, "to": _joined(after)}
    return outputs


def _joined(revisions: list[str] | tuple[str, ...]) -> str:
    return ",".join(revisions) or BASE


class _AlembicLog(logging.Handler):
    """Step output, plus alembic's log records while entered (and ``echo`` is on)."""

    def __init__(self, ctx: StepContext) -> None:
        super().__init__(logging.INFO)
        self.ctx = ctx
        self.lines: list[str] = []
        self.echo = True
        self._saved: tuple[int, bool] = (logging.NOTSET, True)

    def output(self, line: str) -> None:
        # Kept for the outcome's tail, which does not pass through the output sink.
        line = self.ctx.masker.mask(line)
        self.lines.append(line)
        self.ctx.output(line)

    def emit(self, record: logging.LogRecord) -> None:
        if self.echo:
            for line in record.getMessage().splitlines():
                self.output(line)

    def tail(self) -> list[str]:
        return self.lines[-TAIL_LINES:]

    def __enter__(self) -> _AlembicLog:
        logger = logging.getLogger("alembic")
        self._saved = (logger.level, logger.propagate)
        logger.setLevel(logging.INFO)
        # The records are this step's output, not the host process's log.
        logger.propagate = False
        logger.addHandler(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        logger = logging.getLogger("alembic")
        if self not in logger.handlers:
            self.output("note: env.py reconfigured logging, so alembic's log went to its own handlers; "
                        "guard fileConfig with config.attributes.get('configure_logger', True)")
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]


KIND = AlembicStep()
