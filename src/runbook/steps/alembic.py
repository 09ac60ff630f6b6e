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
which needs a live connection to reflect the table, or a migration that
reads data; ``sql_error`` then names the revision that could not render. A
stamp applies no revision, so its ``would_apply`` is empty and its ``sql`` is "".

When a migration fails, the error starts with the migration that failed and
the revision the database is left at (``failed in upgrade a -> b (message)
(last applied: a): ...``), and ``failed_in``/``failed_revision`` hold them.
On MySQL and MariaDB, where DDL commits as it runs, it also names the
statements that stayed applied (``left_applied``, per migration), and the
next attempt takes them as done (``steps/alembic_ddl.py``).

alembic's log (``Running upgrade a -> b, message``) becomes the step's output.
While a step runs ``env.py`` it owns the ``alembic`` loggers: the handlers an
application attached to them (``env.py`` imports the application) are taken
off and put back afterwards, so nothing of alembic's reaches the terminal or
``--log-format json`` except through the step. An ``env.py`` should leave
logging alone when ``config.attributes.get("configure_logger", True)`` is
false, as the example project's does; one that always calls ``fileConfig``
replaces the capture.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runbook.alembic_project import AlembicProjectError, existing_ini, load_config, script_directory
from runbook.connections import ConnectionFailed, describe_db_error
from runbook.steps.alembic_ddl import MigrationDdl
from runbook.steps.base import StepContext, StepOutcome

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationStep
    from alembic.script import Script, ScriptDirectory

Command = Literal["upgrade", "downgrade", "stamp", "current"]
TAIL_LINES = 20
# Lines of a database error after its first (the SQL alembic ran, cut by the driver).
ERROR_DETAIL_LINES = 5
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

        try:
            ini = existing_ini(ctx.runbook_file(params.config), params.config)
            config = load_config(ini, ctx.connections.url(params.connection) if params.connection else None)
            script = script_directory(config)
        except (AlembicProjectError, ConnectionFailed) as err:
            return StepOutcome(False, error=err.message)
        log = _AlembicLog(ctx)
        action = params.command if params.command == "current" else f"{params.command} to {params.target}"
        before: list[str] | None = None
        ddl = MigrationDdl(ctx.checkpoints, ctx.masker, lambda: log.running.short_log if log.running else None, log.output)
        try:
            # A list is resolved up front, so a bad revision in it fails before anything runs;
            # a single target may be relative (-1), which only the database can resolve.
            wanted = _resolve(script, params.targets) if len(params.targets) > 1 else []
            before = _current_heads(config, script, log)
            log.output(f"current: {_joined(before)}")
            if params.command == "current":
                return StepOutcome(True, _revision_outputs(before, before), summary=_joined(before))
            if ctx.dry_run:
                return _preview(params, config, script, before, log)
            with log.capturing(echo=True), ddl.watching():
                if params.command == "stamp":
                    command.stamp(config, params.targets)
                else:
                    for target in params.targets:
                        getattr(command, params.command)(config, target)
            ddl.passed()
            after = _current_heads(config, script, log)
        except Exception as err:  # migration scripts are user code: whatever they raise fails this step
            return _failure(action, err, config, script, before, log, ddl)
        log.output(f"now: {_joined(after)}")
        outputs = _revision_outputs(before, after)
        if len(params.targets) > 1 and after != wanted:
            error = f"{action} left the database at {_joined(after)}, not {_joined(wanted)}"
            return StepOutcome(False, outputs, error, log.tail())
        return StepOutcome(True, outputs, tail=log.tail(), summary=f"{_joined(before)} -> {_joined(after)}")


def _current_heads(config: Config, script: ScriptDirectory, log: _AlembicLog) -> list[str]:
    """The database's heads, read through env.py (so through its URL) without changing anything.

    env.py runs inside the capture, silent: the first run imports the application,
    whose logging setup must not outlive the step."""
    from alembic.runtime.environment import EnvironmentContext

    heads: list[str] = []

    def read(current: tuple[str, ...], _context: Any) -> list[MigrationStep]:
        heads.extend(current)
        return []

    with log.capturing(echo=False), EnvironmentContext(config, script, fn=read, dont_mutate=True):
        script.run_env()
    return sorted(heads)


def _preview(params: AlembicParams, config: Config, script: ScriptDirectory, before: list[str], log: _AlembicLog) -> StepOutcome:
    """What the command would do, and alembic's offline SQL for it; the schema is not touched."""
    from alembic.runtime.migration import MigrationStep

    if params.command == "stamp":
        after = _resolve(script, params.targets)
        log.output(f"would stamp {_joined(after)} without running any migration")
        return StepOutcome(True, {**_revision_outputs(before, after), "would_apply": [], "sql": "", "sql_error": None}, tail=log.tail())

    heads = tuple(before)
    applied = _lineage(script, heads)
    would_apply: list[str] = []
    chunks: list[str] = []
    sql_error: str | None = None
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
        if steps and sql_error is None:
            try:
                chunks.append(_offline_sql(config, script, steps, heads, target, log))
            except Exception as err:  # e.g. a migration that reads data through op.get_bind()
                cause = describe_db_error(err, log.ctx.masker)
                sql_error = f"{_step_text(log.running)} cannot render offline: {cause}" if log.running else cause
                log.output(f"offline SQL not available: {sql_error}")
        heads = _heads_of(script, applied)
    sql = None if sql_error else "\n".join(chunks)
    for line in would_apply:
        log.output(f"would apply {line}")
    for line in (sql or "").splitlines():
        if line.strip():
            log.output(line)
    outputs = {**_revision_outputs(before, list(heads)), "would_apply": would_apply, "sql": sql, "sql_error": sql_error}
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
    with log.capturing(echo=False), EnvironmentContext(
        config, script, fn=lambda _heads, _context: steps, as_sql=True, starting_rev=heads or None, destination_rev=target
    ):
        script.run_env()
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


def _step_text(step: MigrationStep) -> str:
    """``upgrade a -> b (message)``: which migration, in alembic's own words."""
    doc = (step.doc or "").strip().splitlines()
    return f"{step.short_log} ({doc[0]})" if doc else step.short_log


def _failure(
    action: str, err: BaseException, config: Config, script: ScriptDirectory, before: list[str] | None, log: _AlembicLog, ddl: MigrationDdl
) -> StepOutcome:
    cause = describe_db_error(err, log.ctx.masker)
    failed = log.running  # read before env.py runs again below
    outputs: dict[str, Any] = {}
    after: list[str] | None = None
    if before is not None:
        try:
            # Where the failure left the database matters for what to do next.
            after = _current_heads(config, script, log)
        except Exception:  # the database may be the very thing that failed; `to` is then unknown
            after = None
        outputs = _revision_outputs(before, after)
    if failed is None:  # nothing ran: a bad revision, no connection
        reason = f"{action} failed: {cause}"
    else:
        # The migration that failed and where the database stands come first: the
        # tail below is often the cut-off SQL of the failing statement.
        applied = _joined(after) if after is not None else "unknown, the database cannot be read"
        if after is not None and after == before and after != sorted(failed.from_revisions_no_deps):
            # PostgreSQL ran the whole command in one transaction: the migrations before it are gone too.
            applied += ", the migrations before it were rolled back with it"
        # MySQL: the DDL that committed before the failure stayed, whatever alembic_version says.
        applied += ddl.describe(failed.short_log)
        reason = f"failed in {_step_text(failed)} (last applied: {applied}): {cause}"
        revisions = failed.to_revisions_no_deps if failed.is_upgrade else failed.from_revisions_no_deps
        outputs |= {"failed_in": failed.short_log, "failed_revision": ",".join(revisions)}
    left = ddl.left_applied()
    if left:
        outputs["left_applied"] = left
    log.output(reason)
    if left:
        log.output(f"note: the next attempt (--resume) runs {'this migration' if len(left) == 1 else 'these migrations'} again; "
                   "a statement that stayed applied counts as done when it fails because its change is already there")
    # SQLAlchemy's "(Background on this error at: URL)" says nothing about this failure.
    details = [line for line in str(err).splitlines()[1:] if line.strip() and not line.startswith("(Background on this error")]
    details = [log.ctx.masker.mask(line) for line in details[:ERROR_DETAIL_LINES]]
    return StepOutcome(False, outputs, reason, log.tail()[-(TAIL_LINES - len(details)):] + details)


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
    """Step output, plus alembic's log records while capturing with ``echo``.

    Whatever the echo, it notes the migration alembic announced last
    (``Running upgrade a -> b``): the one that failed, if one fails."""

    def __init__(self, ctx: StepContext) -> None:
        super().__init__(logging.INFO)
        self.ctx = ctx
        self.lines: list[str] = []
        self.echo = True
        self.running: MigrationStep | None = None

    def output(self, line: str) -> None:
        # Kept for the outcome's tail, which does not pass through the output sink.
        line = self.ctx.masker.mask(line)
        self.lines.append(line)
        self.ctx.output(line)

    def emit(self, record: logging.LogRecord) -> None:
        from alembic.runtime.migration import MigrationStep

        # alembic logs "Running %s" with the MigrationStep itself as the argument.
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], MigrationStep):
            self.running = record.args[0]
        if self.echo:
            for line in record.getMessage().splitlines():
                self.output(line)

    def tail(self) -> list[str]:
        return self.lines[-TAIL_LINES:]

    @contextmanager
    def capturing(self, *, echo: bool) -> Iterator[None]:
        """Own the alembic loggers while env.py runs, and give them back as they were."""
        self.echo = echo
        self.running = None
        saved = _take_alembic_loggers(self)
        try:
            yield
        finally:
            lost = self not in logging.getLogger("alembic").handlers
            _give_back(saved)
            if lost and echo:
                self.output("note: env.py reconfigured logging, so alembic's log went to its own handlers; "
                            "guard fileConfig with config.attributes.get('configure_logger', True)")


_SavedLogger = tuple[logging.Logger, int, bool, bool, list[logging.Handler]]


def _take_alembic_loggers(capture: logging.Handler) -> list[_SavedLogger]:
    """Take every handler off ``alembic`` and its children (an application's among them)
    and put ``capture`` on ``alembic``: its records are the step's output, not the host's log."""
    top = logging.getLogger("alembic")
    children = [
        logger for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("alembic.") and isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.propagate, logger.disabled, list(logger.handlers)) for logger in [top, *children]]
    for logger in children:
        # Up to ``alembic``, whatever level or propagation the application gave them.
        logger.handlers = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.disabled = False
    top.handlers = [capture]
    top.setLevel(logging.INFO)
    top.propagate = False
    top.disabled = False
    return saved


def _give_back(saved: list[_SavedLogger]) -> None:
    for logger, level, propagate, disabled, handlers in saved:
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


KIND = AlembicStep()
