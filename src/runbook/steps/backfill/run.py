"""One backfill from start (or checkpoint) to finish: the batch loop and its outcome.

The table is walked by its key up to the largest key as it was when the
backfill first started (later rows belong to the new code, which sets the
column itself). Each batch is one short transaction; after its commit the
position and the counts are saved with ``ctx.checkpoints``, so a crash or a
stop resumes right after the last committed batch.

The guard is what makes a replayed batch harmless (a crash between a batch's
commit and its checkpoint replays that one batch): rows it already set no
longer match ``where``. The update form's statement must carry the same
guard itself; rows it leaves unresolved may then be evaluated again, never
rewritten with a value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from runbook import mysql
from runbook.connections import describe_db_error
from runbook.model import format_duration
from runbook.steps.backfill.checkpoint import CheckpointRefused, Position, position_from
from runbook.steps.backfill.failures import BatchFailed, retryable
from runbook.steps.backfill.health import Health, HealthFailed
from runbook.steps.backfill.keys import Key, KeyRefused, inspect_key, output_value
from runbook.steps.backfill.params import BackfillParams
from runbook.steps.backfill.progress import Batch, BatchTimes, Progress, Tally, estimate_rows
from runbook.steps.backfill.report import Samples, report_file, summary, write_rows
from runbook.steps.backfill.resolve import ResolveForm
from runbook.steps.backfill.session import session
from runbook.steps.backfill.sizing import Sizer
from runbook.steps.backfill.update import UpdateForm
from runbook.steps.backfill.walk import Span, Walk
from runbook.steps.base import StepContext, StepOutcome

if TYPE_CHECKING:
    import sqlalchemy as sa


class Backfill:
    # Set up in run(), once the database has said what the key is.
    key: Key
    walk: Walk
    form: ResolveForm | UpdateForm
    progress: Progress
    health: Health

    def __init__(self, params: BackfillParams, ctx: StepContext, engine: sa.Engine) -> None:
        self.p, self.ctx, self.engine = params, ctx, engine
        self.pg = engine.dialect.name == "postgresql"
        self.mysql = mysql.is_mysql(engine.dialect.name)
        self.write = not (ctx.dry_run or params.preview)
        self.report = ctx.workdir / params.report_path
        self.started = time.monotonic()
        self.samples = Samples()
        self.times = BatchTimes()
        # Writes keep to target_batch_time (a batch holds its row locks until it commits); a
        # read-only walk holds none and reads in chunks of about a second instead.
        self.sizer = (
            Sizer(params.target_batch_time, params.min_batch, params.max_batch)
            if self.write
            else Sizer.for_reads(params.min_batch, params.target_batch_time, params.statement_timeout)
        )
        self.span: Span | None = None
        # ``runbook set RUN STEP throttle=... max_batch=...`` changes these between batches.
        self.throttle = params.throttle
        self.tuned = ""

    def run(self) -> StepOutcome:
        import sqlalchemy as sa

        with session(self.engine, self.p.lock_timeout, self.write, self.p.statement_timeout) as conn:
            try:
                self.key = inspect_key(conn, self.p)
            except KeyRefused as err:
                return self._refused(str(err))
            finally:
                conn.rollback()
            self.walk = Walk(self.key, self.engine.dialect)
            self.form = (
                ResolveForm(self.p, self.key, self.walk, write=self.write)
                if self.p.resolve is not None
                else UpdateForm(self.p.update or "", self.p.where, self.key, self.walk, write=self.write)
            )
            try:
                return self._started(conn)
            finally:
                self.form.finish(conn)

    def _started(self, conn: sa.Connection) -> StepOutcome:
        import sqlalchemy as sa

        try:
            start = self._start(conn)
        except CheckpointRefused as err:
            return self._refused(str(err))
        except sa.exc.SQLAlchemyError as err:
            return StepOutcome(False, error=f"backfill could not start: {describe_db_error(err, self.ctx.masker)}")
        if isinstance(start, StepOutcome):
            return start
        self.progress = Progress(start.total, start.estimated, start.tally.total)
        self.health = Health(self.p, self.ctx, conn, self.walk.table_sql)
        with report_file(self.report, self.ctx.workdir, list(self.key.columns), start.report_bytes, self.ctx.output) as report:
            return self._loop(conn, start, report)

    # ------------------------------------------------------------ start

    def _start(self, conn: sa.Connection) -> Position | StepOutcome:
        saved = self.ctx.checkpoints.load() if self.write else None
        show = self.key.show
        if saved is None:
            last = conn.execute(self.walk.last_key).first()
            estimate = estimate_rows(conn, self.key.table)
            conn.rollback()
            upto = None if last is None else tuple(last)
            position = Position(None, upto, self.p.batch_size, estimate or 0, estimate is not None, Tally(), None)
        else:
            position = position_from(saved, self.key)
            done = position.tally
            self.ctx.output(
                f"resuming after {self.key.text()} {show(position.after)} ({done.total:,} rows done in {done.batches} batches)"
            )
        # A dry run never runs the update form's UPDATE, not even on an empty range.
        problem = self._trial(conn)
        if problem is not None:
            return self._finish(position, problem)
        mode = "" if self.write else "preview: " if self.p.preview else "dry run: "
        left = max(position.total - position.tally.total, 0)
        rows = f"~{left:,} rows to check" if position.estimated else "rows counted as they go"
        bound = "empty table" if position.max_key is None else f"{self.key.text()} up to {show(position.max_key)}"
        self.ctx.output(f"{mode}{self.p.target}: {rows}, {bound}")
        return position

    def _trial(self, conn: sa.Connection) -> str | None:
        """What is wrong with the step's SQL, found by running a batch's statements once on
        an empty key range and rolling back: a mistake there is the author's, and retrying
        batches would only repeat it."""
        import sqlalchemy as sa

        trial = conn.begin()
        try:
            # Not on MySQL: there the resolve form's trial creates its temporary table (and rolls back).
            if self.pg and not self.write:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            return self.form.trial(conn)
        except sa.exc.SQLAlchemyError as err:
            return f"the {'resolve' if self.p.resolve else 'update'} SQL fails: {describe_db_error(err, self.ctx.masker)}"
        finally:
            trial.rollback()

    # ------------------------------------------------------------ loop

    def _loop(self, conn: sa.Connection, pos: Position, report: TextIO) -> StepOutcome:
        import sqlalchemy as sa

        failures = 0
        while pos.max_key is not None:
            self._between_batches(pos)
            stop = self._should_stop(pos)
            if stop is not None:
                return stop
            if self.health.due(pos.tally.batches):
                try:
                    waited = self.health.wait_until_healthy(pos.tally.batches, self._stopping, self._waiting(pos))
                except HealthFailed as err:
                    return self._finish(pos, f"{err}; a resume continues after {self._at(pos)}")
                self.progress.waited += waited
                if waited:
                    pos.size = self.sizer.shrink(pos.size)
                    continue
            try:
                batch = self._batch(conn, pos)
            except BatchFailed as err:
                return self._finish(pos, f"{self._where(pos)}: {err.explain(conn)}; {self._nothing_written(pos)}")
            except sa.exc.SQLAlchemyError as err:
                reason = describe_db_error(err, self.ctx.masker)
                if not retryable(err):
                    return self._finish(pos, f"{self._where(pos)} failed: {reason}; {self._nothing_written(pos)}")
                # Rolled back already; the same range is tried again, smaller, until max_errors.
                failures += 1
                pos.tally.errors += 1
                if self.write:
                    self._save(pos, report)
                if failures > self.p.max_errors:
                    return self._finish(
                        pos, f"{self._where(pos)} failed: {reason} ({failures} failed batches, max_errors {self.p.max_errors})"
                    )
                pos.size = self.sizer.shrink(pos.size)
                self.ctx.output(f"{self._where(pos)} failed: {reason}; retrying with {pos.size:,} rows")
                continue
            if batch is None:
                break
            self._record(pos, batch, report)
        self.progress.finish(pos.tally.total)
        self.ctx.progress(self.progress.event(pos.tally.total))
        return self._finish(pos, None)

    def _batch(self, conn: sa.Connection, pos: Position) -> Batch | None:
        """The next ``size`` rows after the position, in one transaction; None when none is left."""
        assert pos.max_key is not None
        self.span = None
        t0 = time.monotonic()
        self.form.before_batch(conn)
        with conn.begin():
            settings = None
            if self.pg:
                settings = {
                    "_rb_lock": _ms(self.p.lock_timeout),
                    "_rb_stmt": _ms(self.p.statement_timeout),
                    "_rb_ro": "off" if self.write else "on",
                }
            elif self.mysql:
                if not self.write:
                    # Before the transaction's first read, which starts it (the session's timeouts are set already).
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            elif self.write:
                # Take the write lock first (waiting up to busy_timeout), so the batch reads what it writes.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            span = self.walk.next_batch(conn, pos.after, pos.max_key, pos.size, settings)
            if span is None:
                return None
            self.span = span
            batch = self.form.run(conn, span)
        batch.seconds = time.monotonic() - t0
        return batch

    def _record(self, pos: Position, batch: Batch, report: TextIO) -> None:
        write_rows(report, batch.flagged)
        self.samples.add(batch.flagged, self.key.show)
        pos.tally.add(batch)
        self.times.add(batch.seconds)
        pos.after = batch.hi
        pos.size = self.sizer.next(pos.size, batch.checked, batch.seconds)
        self.progress.add(batch.checked, pos.tally.total)
        pos.total, pos.estimated = self.progress.total, self.progress.estimated
        if self.write:
            self._save(pos, report)
        done = pos.tally.total
        self.ctx.progress(self.progress.event(done))
        if self.progress.line_due(pos.tally.batches, last=batch.hi == pos.max_key):
            self.ctx.output(self.progress.line(pos.tally.batches, batch.checked, done) + self.tuned)
        if self.throttle:
            time.sleep(self.throttle)

    def _save(self, pos: Position, report: TextIO) -> None:
        self.ctx.checkpoints.save(pos.data(report.tell(), self.key))

    # ------------------------------------------------------------ live control

    def _between_batches(self, pos: Position) -> None:
        """The safe point between two committed batches: hold here while paused, and take
        new ``throttle``/``max_batch`` values (``runbook set``)."""
        control = self.ctx.control
        if control is None or not self.write:
            return
        control.hold_if_paused(f"between batches of {self.ctx.step_id} ({pos.tally.batches:,} done)", ask_store=False)
        values = control.take_settings(self.ctx.step_id)
        if not values:
            return
        if "throttle" in values:
            self.throttle = float(values["throttle"])
        if "max_batch" in values:
            self.sizer.max_batch = int(values["max_batch"])
            pos.size = self.sizer.clamp(pos.size)
        now = f"throttle {_ms(self.throttle)}, max_batch {self.sizer.max_batch:,}"
        self.tuned = f" [{now}]"
        self.ctx.output(f"settings changed: {now}")

    # ------------------------------------------------------------ stopping

    def _stopping(self) -> bool:
        supervisor = self.ctx.supervisor
        timeout = self.ctx.timeout
        return (supervisor is not None and supervisor.stop_requested) or (
            timeout is not None and time.monotonic() - self.started > timeout
        )

    def _should_stop(self, pos: Position) -> StepOutcome | None:
        resume = f"a resume continues after {self._at(pos)}"
        supervisor = self.ctx.supervisor
        if supervisor is not None and supervisor.stop_requested:
            outcome = self._finish(pos, f"interrupted after {pos.tally.batches} batches; {resume}")
            outcome.interrupted = True
            return outcome
        if self.ctx.timeout is not None and time.monotonic() - self.started > self.ctx.timeout:
            outcome = self._finish(pos, f"timed out after {format_duration(self.ctx.timeout)}; {resume}")
            outcome.timed_out = True
            return outcome
        return None

    def _waiting(self, pos: Position) -> Callable[[str], None]:
        def waiting(reason: str) -> None:
            self.ctx.progress({**self.progress.event(pos.tally.total), "waiting": reason})

        return waiting

    # ------------------------------------------------------------ messages and outcome

    def _at(self, pos: Position) -> str:
        return f"{self.key.text()} {self.key.show(pos.after)}"

    def _where(self, pos: Position) -> str:
        """The batch being worked on, for messages: its number and keys."""
        number = pos.tally.batches + 1
        if self.span is None:
            return f"batch {number} (after {self._at(pos)})"
        return f"batch {number} ({self.key.text()} {self.key.show(self.span.lo)}..{self.key.show(self.span.hi)})"

    def _nothing_written(self, pos: Position) -> str:
        if not self.write:
            return "nothing was written"
        return f"that batch was rolled back, and a resume continues after {self._at(pos)}"

    def _refused(self, error: str) -> StepOutcome:
        """Refused before any write: the key cannot be walked, or the checkpoint is not this step's."""
        return StepOutcome(False, error=self.ctx.masker.mask(f"backfill refused: {error}"), refused=True)

    def _finish(self, pos: Position, error: str | None) -> StepOutcome:
        """The outcome, passed (error None) or failed, with the outputs gates read."""
        outputs: dict[str, Any] = {
            **asdict(pos.tally),
            "batch_ms_p50": self.times.percentile(50),
            "batch_ms_p99": self.times.percentile(99),
            "last_key": output_value(pos.after),
            "max_key": output_value(pos.max_key),
            "report": str(self.report),
            "dry_run": not self.write,
        }
        text = summary(self.p, pos.tally, self.write, self.report, self.samples, self.times)
        # Also an output, so that a later step's confirm text can quote a preview's summary.
        outputs["summary"] = text
        self.ctx.output(text)
        if error is None:
            return StepOutcome(True, outputs, summary=text)
        return StepOutcome(False, outputs, error=self.ctx.masker.mask(error), summary=text)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"
