"""``kind: backfill`` - fill a column in keyset batches: resumable, adaptive, gated.

The table is walked by its integer key up to ``max(key)`` as it was when the
backfill first started (later rows belong to the new code, which sets the
column itself). Each batch is one short transaction; after its commit the
position and the counts are saved with ``ctx.checkpoints``, so a crash or a
stop resumes right after the last committed batch.

Two forms:

* ``update``: the author's own UPDATE for the range ``:lo``..``:hi``; one round
  trip, no classification beyond "still matches ``where`` afterwards".
* ``resolve``: a SELECT returning ``key``, ``value`` and ``candidates`` for the
  rows still to do in ``:lo``..``:hi``. Rows are classified (one candidate,
  several, none) and only the resolved ones are written, each guarded by
  ``where`` so a row another writer has set meanwhile is never overwritten.
  On PostgreSQL the SELECT, the UPDATE and the counting are one statement per
  batch; on SQLite the rows are classified here and written with executemany.

The guard is what makes a replayed batch harmless (a crash between a batch's
commit and its checkpoint replays that one batch): rows it already set no
longer match. The update form's statement must carry the same guard itself;
rows it leaves unresolved may then be evaluated again, never rewritten with
a value.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runbook.connections import describe_db_error
from runbook.model import Duration, format_duration
from runbook.safefile import open_for_writing
from runbook.steps.base import StepContext, StepOutcome

if TYPE_CHECKING:
    import sqlalchemy as sa

# Identifiers are spliced into SQL, so only plain (optionally schema-qualified) names pass.
_COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
_BIND = re.compile(r"(?<![:\w]):(lo|hi)\b")
# Fewer progress lines than batches: one a second is readable, and the last batch always reports.
PROGRESS_EVERY_S = 1.0
SAMPLE_KEYS = 10
# Batch size moves by at most this factor per batch, so one slow or fast batch cannot swing it.
MAX_STEP_FACTOR = 2.0
# Weight of a faster-than-expected batch in the cost-per-row estimate.
COST_SMOOTHING = 0.25
REPORT_HEADER = ("key", "classification", "candidates")


class BackfillParams(BaseModel):
    # "Exactly one of" (the validator below), for `runbook schema`.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"oneOf": [{"required": [k]} for k in ["update", "resolve"]]})

    connection: str
    table: str = Field(pattern=_TABLE_PATTERN)
    key: str = Field(pattern=_COLUMN_PATTERN, description="Integer primary key column, walked in keyset batches.")
    where: str = Field(description="SQL predicate for the rows still to do, e.g. 'subscriber_id IS NULL'.")
    update: str | None = Field(None, description="UPDATE for the key range :lo..:hi (guarded by where).")
    resolve: str | None = Field(None, description="SELECT key, value, candidates for the rows still to do in :lo..:hi.")
    set_column: str | None = Field(None, pattern=_COLUMN_PATTERN)
    ambiguous: Literal["skip", "first"] = "skip"
    batch_size: int = Field(1000, ge=1)
    min_batch: int = Field(100, ge=1)
    max_batch: int = Field(20000, ge=1)
    target_batch_time: Duration = 0.1
    throttle: Duration = 0.0
    max_errors: int = Field(0, ge=0)
    lock_timeout: Duration = 2.0
    statement_timeout: Duration = 30.0
    report: str | None = None
    # The seed's "dry run first, review, then commit" inside one real run: classify
    # and report as a dry run does, whatever mode the run is in.
    preview: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.update is None) == (self.resolve is None):
            raise ValueError("give exactly one of 'update' or 'resolve'")
        sql = self.update if self.update is not None else self.resolve
        assert sql is not None
        if {m.group(1) for m in _BIND.finditer(sql)} != {"lo", "hi"}:
            raise ValueError("the update/resolve SQL must use both bind parameters :lo and :hi")
        if self.resolve is not None and self.set_column is None:
            raise ValueError("'set_column' is required with 'resolve'")
        if self.update is not None and "ambiguous" in self.model_fields_set:
            raise ValueError("'ambiguous' applies only with 'resolve': an UPDATE does not classify rows")
        if not self.min_batch <= self.batch_size <= self.max_batch:
            raise ValueError(
                f"need min_batch <= batch_size <= max_batch, got {self.min_batch}, {self.batch_size}, {self.max_batch}"
            )
        if self.target_batch_time <= 0:
            raise ValueError("target_batch_time must be positive")
        return self

    @property
    def report_path(self) -> str:
        return self.report or f"backfill_{self.table.replace('.', '_')}_report.csv"

    @property
    def target(self) -> str:
        return f"{self.table}.{self.set_column}" if self.set_column else self.table


@dataclass
class Tally:
    """Counts over the whole backfill; persisted in the checkpoint so a resume continues them.

    Every checked row lands in exactly one of: updated, skipped_already_set,
    unresolved, or ambiguous but not written (``ambiguous - updated_ambiguous``).
    """

    total: int = 0
    updated: int = 0
    updated_ambiguous: int = 0
    ambiguous: int = 0
    unresolved: int = 0
    skipped_already_set: int = 0
    errors: int = 0
    batches: int = 0
    max_batch_ms: float = 0.0

    def add(self, batch: Batch) -> None:
        self.total += batch.checked
        self.updated += batch.updated
        self.updated_ambiguous += batch.updated_ambiguous
        self.ambiguous += batch.ambiguous
        self.unresolved += batch.unresolved
        self.skipped_already_set += batch.skipped_already_set
        self.batches += 1
        self.max_batch_ms = max(self.max_batch_ms, round(batch.seconds * 1000, 1))


@dataclass
class Batch:
    """One committed (or, in a dry run, classified) key range ``(after, hi]``."""

    hi: int
    checked: int
    seconds: float = 0.0
    updated: int = 0
    updated_ambiguous: int = 0
    ambiguous: int = 0
    unresolved: int = 0
    skipped_already_set: int = 0
    # (key, classification, candidates) for the report.
    flagged: list[tuple[Any, str, int | None]] = field(default_factory=list)


class BatchFailed(Exception):
    """A mistake in the step's SQL that retrying cannot fix."""


class BackfillStep:
    name: ClassVar[str] = "backfill"
    Params: ClassVar[type[BaseModel]] = BackfillParams
    changes_data: ClassVar[bool] = True
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: BackfillParams) -> str:
        what = f"backfill {params.target} where {params.where} (batches of {params.batch_size}, keyset on {params.key})"
        return f"preview (no writes): {what}" if params.preview else what

    def run(self, params: BackfillParams, ctx: StepContext) -> StepOutcome:
        engine = ctx.connections.engine(params.connection)
        if engine.dialect.name not in ("postgresql", "sqlite"):
            return StepOutcome(False, error=f"backfill supports postgresql and sqlite, not {engine.dialect.name}")
        return _Backfill(params, ctx, engine).run()


@dataclass
class _Position:
    """Where the backfill stands: resumed from a checkpoint or fresh."""

    after: int
    max_key: int
    size: int
    # Rows to check in all, for progress: those done plus those left at start.
    total: int
    tally: Tally
    # Length of the report the checkpoint covers; None starts a new report.
    report_bytes: int | None


class _Backfill:
    def __init__(self, params: BackfillParams, ctx: StepContext, engine: sa.Engine) -> None:
        import sqlalchemy as sa

        self.p, self.ctx, self.engine = params, ctx, engine
        self.pg = engine.dialect.name == "postgresql"
        self.write = not (ctx.dry_run or params.preview)
        self.report = ctx.workdir / params.report_path
        self.started = time.monotonic()
        # Seconds per row, estimated from the batches so far (see _next_size).
        self.row_cost: float | None = None
        self.samples: dict[str, list[Any]] = {"ambiguous": [], "unresolved": []}
        t, k, where = params.table, params.key, params.where
        in_range = f"{k} > :after AND {k} <= :hi"
        self.sql_bounds = sa.text(f"SELECT min({k}), max({k}), count(*) FROM {t}")
        self.sql_remaining = sa.text(f"SELECT count(*) FROM {t} WHERE {in_range}")
        # Keyset: the next ``size`` keys in index order, never OFFSET, so no batch rescans done rows.
        keyset = (
            f"SELECT count(*), max(_rb_k) FROM (SELECT {k} AS _rb_k FROM {t} WHERE {in_range} ORDER BY {k} LIMIT :size) _rb_r"
        )
        self.sql_range = sa.text(keyset)
        # PostgreSQL: the batch's SET LOCAL timeouts ride along with the keyset query, saving a round trip.
        self.sql_range_pg = sa.text(
            "SELECT _rb_n.* FROM (SELECT set_config('lock_timeout', :lock, true), set_config('statement_timeout', :stmt, true),"
            f" set_config('transaction_read_only', :ro, true)) _rb_c, ({keyset}) _rb_n"
        )
        self.sql_todo = sa.text(f"SELECT {k} FROM {t} WHERE {in_range} AND ({where}) ORDER BY {k}")
        self.sql_todo_count = sa.text(f"SELECT count(*) FROM {t} WHERE {in_range} AND ({where})")
        self.sql_main = sa.text(_strip(params.update or params.resolve or ""))
        if params.resolve is not None:
            self.sql_write = sa.text(f"UPDATE {t} SET {params.set_column} = :_rb_value WHERE {k} = :_rb_key AND ({where})")
            self.sql_resolve_pg = sa.text(_resolve_pg_sql(params, write=self.write))

    # ------------------------------------------------------------------ run

    def run(self) -> StepOutcome:
        with self._session() as conn:
            start = self._start(conn)
            if isinstance(start, StepOutcome):
                return start
            with self._report_file(start.report_bytes) as report:
                return self._loop(conn, start, report)

    def _start(self, conn: Any) -> _Position | StepOutcome:
        saved = self.ctx.checkpoints.load() if self.write else None
        if saved is None:
            low, max_key, count = conn.execute(self.sql_bounds).one()
            conn.commit()
            if max_key is None:
                return _Position(0, 0, self.p.batch_size, 0, Tally(), None)
            if not isinstance(max_key, int):
                return StepOutcome(
                    False, error=f"backfill walks an integer key; {self.p.table}.{self.p.key} holds {type(max_key).__name__}"
                )
            position = _Position(low - 1, max_key, self.p.batch_size, count, Tally(), None)
        else:
            tally = Tally(**{name: saved[name] for name in Tally.__dataclass_fields__})
            # Failed batches were rolled back and are walked again now; only this attempt's errors count.
            tally.errors = 0
            position = _Position(saved["last_key"], saved["max_key"], saved["batch_size"], 0, tally, saved["report_bytes"])
            position.total = (
                tally.total + conn.execute(self.sql_remaining, {"after": position.after, "hi": position.max_key}).scalar_one()
            )
            conn.commit()
            self.ctx.output(
                f"resuming after {self.p.key} {position.after:,} ({tally.total:,} rows done in {tally.batches} batches)"
            )
        # A dry run never runs the update form's UPDATE, not even on an empty range.
        problem = self._sql_problem(conn) if self.write or self.p.resolve is not None else None
        if problem is not None:
            return self._finish(position, problem)
        left = position.total - position.tally.total
        mode = "" if self.write else "preview: " if self.p.preview else "dry run: "
        self.ctx.output(f"{mode}{self.p.target}: {left:,} rows to check, {self.p.key} up to {position.max_key:,}")
        return position

    def _loop(self, conn: Any, pos: _Position, report: Any) -> StepOutcome:
        import sqlalchemy as sa

        failures, checked_now, last_line = 0, 0, 0.0
        while pos.after < pos.max_key:
            stop = self._should_stop(pos)
            if stop is not None:
                return stop
            try:
                batch = self._batch(conn, pos.after, pos.size, pos.max_key)
            except BatchFailed as err:
                return self._finish(pos, str(err))
            except sa.exc.SQLAlchemyError as err:
                # Rolled back already; the same range is tried again, smaller, until max_errors.
                failures += 1
                pos.tally.errors += 1
                reason = describe_db_error(err, self.ctx.masker)
                if self.write:
                    self._save(pos, report)
                where = f"batch after {self.p.key} {pos.after:,}"
                if failures > self.p.max_errors:
                    return self._finish(
                        pos, f"{where} failed: {reason} ({failures} failed batches, max_errors {self.p.max_errors})"
                    )
                pos.size = max(self.p.min_batch, pos.size // 2)
                self.ctx.output(f"{where} failed: {reason}; retrying with {pos.size:,} rows")
                continue
            if batch is None:
                break
            _write_report(report, batch.flagged)
            for key, classification, _ in batch.flagged:
                bucket = self.samples["unresolved" if classification == "unresolved" else "ambiguous"]
                if len(bucket) < SAMPLE_KEYS:
                    bucket.append(key)
            pos.tally.add(batch)
            pos.after = batch.hi
            pos.size = self._next_size(pos.size, batch)
            if self.write:
                self._save(pos, report)
            checked_now += batch.checked
            elapsed = time.monotonic() - self.started
            rate = checked_now / elapsed if elapsed > 0 else 0.0
            eta = (pos.total - pos.tally.total) / rate if rate > 0 else None
            self.ctx.progress(
                {
                    "done": pos.tally.total,
                    "total": pos.total,
                    "rate": round(rate, 1),
                    "eta_s": None if eta is None else round(eta, 1),
                }
            )
            if pos.tally.batches == 1 or pos.after >= pos.max_key or elapsed - last_line >= PROGRESS_EVERY_S:
                last_line = elapsed
                self.ctx.output(_progress_line(pos.tally.batches, batch.checked, pos.tally.total, pos.total, rate, eta))
            if self.p.throttle and pos.after < pos.max_key:
                time.sleep(self.p.throttle)
        return self._finish(pos, None)

    def _should_stop(self, pos: _Position) -> StepOutcome | None:
        resume = f"a resume continues after {self.p.key} {pos.after:,}"
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

    def _next_size(self, size: int, batch: Batch) -> int:
        """Rows for the next batch: target time over the estimated cost of a row.

        The estimate follows a slower batch at once and a faster one only
        gradually: on a shared server the cost of a row jumps about, and a
        batch far over the target holds its locks longer than promised.
        """
        cost = batch.seconds / batch.checked
        if self.row_cost is None or cost > self.row_cost:
            self.row_cost = cost
        else:
            self.row_cost += COST_SMOOTHING * (cost - self.row_cost)
        ideal = self.p.target_batch_time / max(self.row_cost, 1e-9)
        bounded = min(size * MAX_STEP_FACTOR, max(size / MAX_STEP_FACTOR, ideal))
        return int(min(self.p.max_batch, max(self.p.min_batch, round(bounded))))

    def _save(self, pos: _Position, report: Any) -> None:
        self.ctx.checkpoints.save(
            {
                "last_key": pos.after,
                "max_key": pos.max_key,
                "batch_size": pos.size,
                "report_bytes": report.tell(),
                # Rows to check in all, so that `runbook status` on any machine sharing the
                # store can show "rows done / total" (done is the tally's ``total``).
                "rows_total": pos.total,
                **asdict(pos.tally),
            }
        )

    # ---------------------------------------------------------------- batch

    def _batch(self, conn: Any, after: int, size: int, max_key: int) -> Batch | None:
        """Process keys ``(after, hi]``, the next ``size`` rows; None when nothing is left."""
        t0 = time.monotonic()
        with conn.begin():
            keyset = {"after": after, "hi": max_key, "size": size}
            if self.pg:
                settings = {
                    "lock": _ms(self.p.lock_timeout),
                    "stmt": _ms(self.p.statement_timeout),
                    "ro": "off" if self.write else "on",
                }
                checked, hi = conn.execute(self.sql_range_pg, {**keyset, **settings}).one()
            else:
                if self.write:
                    # Take the write lock first (waiting up to busy_timeout), so the batch reads what it writes.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                checked, hi = conn.execute(self.sql_range, keyset).one()
            if not checked:
                return None
            if self.p.resolve is not None:
                batch = self._resolve(conn, after, int(hi), int(checked))
            else:
                batch = self._update(conn, after, int(hi), int(checked))
        batch.seconds = time.monotonic() - t0
        return batch

    def _update(self, conn: Any, after: int, hi: int, checked: int) -> Batch:
        batch = Batch(hi, checked)
        bounds = {"after": after, "hi": hi}
        todo = conn.execute(self.sql_todo_count, bounds).scalar_one()
        if self.write:
            conn.execute(self.sql_main, {"lo": after + 1, "hi": hi})
            left = [row[0] for row in conn.execute(self.sql_todo, bounds)]
            batch.updated, batch.unresolved = todo - len(left), len(left)
            batch.flagged = [(key, "unresolved", None) for key in left]
        else:
            # Without running the UPDATE nothing tells which rows it would resolve.
            batch.updated = todo
        batch.skipped_already_set = checked - todo
        return batch

    def _resolve(self, conn: Any, after: int, hi: int, checked: int) -> Batch:
        rows, todo, written = (self._resolve_pg if self.pg else self._resolve_local)(conn, after, hi)
        batch = Batch(hi, checked, updated=written)
        refused = 0
        for key, candidates, take, was_written in rows:
            if take and not was_written:
                # The guard refused it: someone set the row after the SELECT (or the
                # SELECT disagrees with ``where``). Theirs, not ours to count or report.
                refused += 1
            elif candidates > 1:
                batch.ambiguous += 1
                batch.updated_ambiguous += was_written
                batch.flagged.append((key, "ambiguous_first" if was_written else "ambiguous_skipped", candidates))
            else:
                batch.unresolved += 1
                batch.flagged.append((key, "unresolved", candidates))
        batch.skipped_already_set = checked - todo + refused
        return batch

    def _resolve_local(self, conn: Any, after: int, hi: int) -> tuple[list[tuple[Any, int, bool, bool]], int, int]:
        """SELECT, classify here, write with one executemany. Returns the rows other than
        plain single-candidate writes as (key, candidates, take, written), the number of
        rows to do and the number written."""
        result = conn.execute(self.sql_main, {"lo": after + 1, "hi": hi})
        columns = list(result.keys())
        at_key, at_value, at_candidates = columns.index("key"), columns.index("value"), columns.index("candidates")
        first = self.p.ambiguous == "first"
        writes: dict[Any, Any] = {}
        seen: list[tuple[Any, int, bool]] = []
        for row in result:
            key, value, candidates = row[at_key], row[at_value], int(row[at_candidates] or 0)
            if not after < key <= hi:
                raise BatchFailed(self._bad_keys(after, hi))
            take = value is not None and (candidates == 1 or (candidates > 1 and first))
            if take:
                writes[key] = value
            seen.append((key, candidates, take))
        if len({key for key, _, _ in seen}) != len(seen):
            raise BatchFailed(self._bad_keys(after, hi))
        written = self._write_local(conn, after, hi, writes) if self.write else set(writes)
        rows = [(key, c, take, key in written) for key, c, take in seen if not (c == 1 and key in written)]
        return rows, len(seen), len(written)

    def _write_local(self, conn: Any, after: int, hi: int, writes: dict[Any, Any]) -> set[Any]:
        if not writes:
            return set()
        # The batch holds SQLite's write lock since BEGIN IMMEDIATE, so the rows matching
        # ``where`` now are exactly the ones the guarded UPDATE will write.
        todo = {row[0] for row in conn.execute(self.sql_todo, {"after": after, "hi": hi})}
        params = [{"_rb_key": k, "_rb_value": v} for k, v in writes.items() if k in todo]
        if params:
            conn.execute(self.sql_write, params)
        return {p["_rb_key"] for p in params}

    def _resolve_pg(self, conn: Any, after: int, hi: int) -> tuple[list[tuple[Any, int, bool, bool]], int, int]:
        """The SELECT, the guarded UPDATE and the tally as one statement: the resolved
        values never travel to the client and back, only the rows worth reporting do."""
        rows = conn.execute(
            self.sql_resolve_pg, {"lo": after + 1, "hi": hi, "after": after, "first": self.p.ambiguous == "first"}
        ).all()
        todo, distinct, outside, written = rows[0][:4]
        if distinct != todo or outside:
            raise BatchFailed(self._bad_keys(after, hi))
        details = [(key, int(c or 0), take, was_written) for _, _, _, _, key, c, take, was_written in rows if key is not None]
        return details, todo, written

    def _bad_keys(self, after: int, hi: int) -> str:
        return (
            f"resolve returned a {self.p.key} twice or outside the batch {after + 1}..{hi}:"
            " it must return each row at most once and filter on :lo and :hi"
        )

    def _sql_problem(self, conn: Any) -> str | None:
        """What is wrong with the step's SQL, found by running it once on an empty key
        range and rolling back: a mistake there is the author's, and retrying batches
        would only repeat it."""
        import sqlalchemy as sa

        trial = conn.begin()
        try:
            if self.pg and not self.write:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = conn.execute(self.sql_main, {"lo": 1, "hi": 0})
            columns = set(result.keys()) if result.returns_rows else set()
        except sa.exc.SQLAlchemyError as err:
            return f"the {'resolve' if self.p.resolve else 'update'} SQL fails: {describe_db_error(err, self.ctx.masker)}"
        finally:
            trial.rollback()
        missing = {"key", "value", "candidates"} - columns
        if self.p.resolve is not None and missing:
            return f"resolve must return columns key, value and candidates; missing {', '.join(sorted(missing))}"
        return None

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """One connection for the whole backfill, with SQLite's lock wait and read-only mode set and restored."""
        with self.engine.connect() as conn:
            if self.pg:
                yield conn
                return
            # The pool hands this connection to other steps afterwards: put the pragmas back.
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
            query_only = conn.exec_driver_sql("PRAGMA query_only").scalar_one()
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {round(self.p.lock_timeout * 1000)}")
            if not self.write:
                conn.exec_driver_sql("PRAGMA query_only = 1")
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy)}")
                conn.exec_driver_sql(f"PRAGMA query_only = {int(query_only)}")
                conn.commit()

    @contextmanager
    def _report_file(self, resume_bytes: int | None) -> Iterator[Any]:
        """The report, opened for appending; on resume cut back to what the checkpoint covers,
        so lines of a batch whose checkpoint was never saved are not written twice."""
        # Opened through runbook.safefile: a link planted at the report's path or any directory
        # on the way (it lives in the working directory) is refused, never written through.
        fresh = resume_bytes is None or not self.report.exists()
        fd = open_for_writing(self.report, self.ctx.workdir, what="the backfill report", append=not fresh)
        if resume_bytes and fresh:
            self.ctx.output(f"warning: {self.report} is gone; it will hold only the rows from here on")
        elif resume_bytes is not None and not fresh:
            if os.fstat(fd).st_size < resume_bytes:
                self.ctx.output(
                    f"warning: {self.report} is shorter than its checkpoint records; rows of earlier batches are missing from it"
                )
            else:
                os.ftruncate(fd, resume_bytes)
        with os.fdopen(fd, "w" if fresh else "a", newline="", encoding="utf-8") as report:
            if fresh:
                csv.writer(report).writerow(REPORT_HEADER)
                report.flush()
            yield report

    def _finish(self, pos: _Position, error: str | None) -> StepOutcome:
        """The outcome, passed (error None) or failed, with the outputs gates read."""
        tally = pos.tally
        outputs: dict[str, Any] = {
            **asdict(tally),
            "last_key": pos.after,
            "max_key": pos.max_key,
            "report": str(self.report),
            "dry_run": not self.write,
        }
        summary = _summary(self.p, tally, self.write, self.report, self.samples)
        # Also an output, so that a later step's confirm text can quote a preview's summary.
        outputs["summary"] = summary
        self.ctx.output(summary)
        if error is None:
            return StepOutcome(True, outputs, summary=summary)
        return StepOutcome(False, outputs, error=self.ctx.masker.mask(error), summary=summary)


# ---------------------------------------------------------------- formatting


def _write_report(report: Any, rows: list[tuple[Any, str, int | None]]) -> None:
    if not rows:
        return
    csv.writer(report).writerows(
        (key, classification, "" if candidates is None else candidates) for key, classification, candidates in rows
    )
    # Flushed, not fsynced: the checkpoint saved next records this length, and only an
    # OS crash could leave the file shorter, which a resume notices and reports.
    report.flush()


def checkpoint_progress(checkpoint: dict[str, Any]) -> str:
    """How far a backfill got, from its saved checkpoint: ``rows DONE / TOTAL``."""
    done = int(checkpoint.get("total", 0))
    total = checkpoint.get("rows_total")
    # Checkpoints saved before rows_total was recorded only know what was done.
    return f"rows {done:,} / {int(total):,}" if total is not None else f"rows {done:,} checked"


def _progress_line(batch_no: int, rows: int, done: int, total: int, rate: float, eta: float | None) -> str:
    eta_text = "" if eta is None or done >= total else f", ETA {format_duration(max(1, round(eta)))}"
    return f"batch {batch_no}: {rows:,} rows ({done:,}/{total:,}, {rate:,.0f} rows/s{eta_text})"


def _summary(p: BackfillParams, tally: Tally, write: bool, report: Path, samples: dict[str, list[Any]] | None) -> str:
    needed = tally.total - tally.skipped_already_set
    if write:
        title, verb = f"Backfill Summary: {p.target}", "Updated successfully:"
    else:
        title, verb = f"Backfill Dry Run: {p.target} (nothing written)", "Would update:"
    ambiguous = f"{tally.ambiguous:,}"
    if p.resolve is not None and tally.ambiguous:
        ambiguous += f" ({tally.updated_ambiguous:,} set to the first candidate)" if p.ambiguous == "first" else " (left unset)"
    lines = [
        f"{title}",
        "=" * len(title),
        f"Total rows checked:      {tally.total:,}",
        f"{verb:<25}{tally.updated:,}",
        f"Skipped (already set):   {tally.skipped_already_set:,}",
        f"Skipped (no candidate):  {tally.unresolved:,}",
        f"Ambiguous cases:         {ambiguous}",
        f"Errors:                  {tally.errors:,}",
        "",
        f"Success Rate: {100.0 * tally.updated / needed if needed else 100.0:.1f}%",
    ]
    if not write and p.update is not None:
        lines.append("(update form: 'would update' counts rows matching where; use resolve to classify them)")
    if samples and any(samples.values()):
        shown = "; ".join(f"{name} {', '.join(str(k) for k in keys)}" for name, keys in samples.items() if keys)
        lines.append(f"Sample keys: {shown}")
    lines.append(f"Report: {report}")
    return "\n".join(lines)


def _resolve_pg_sql(p: BackfillParams, *, write: bool) -> str:
    """PostgreSQL: the resolve SELECT, the guarded UPDATE and the tally as one statement.

    One row of counts always comes back (todo, distinct keys, keys outside the
    batch, written), joined to the rows worth reporting: all but the plain
    single-candidate writes. The resolved values never travel to the client and
    back. ``_rb_take`` must say what ``_Backfill._resolve_local`` says.
    """
    t, k, col = p.table, p.key, p.set_column
    if write:
        # The key range keeps the planner on the primary key; without it, it hashes the whole table, per batch.
        change = (
            f"UPDATE {t} SET {col} = _rb_r._rb_value FROM _rb_r"
            f" WHERE {t}.{k} = _rb_r._rb_key AND _rb_r._rb_take AND {t}.{k} > :after AND {t}.{k} <= :hi AND ({p.where})"
            f" RETURNING {t}.{k} AS _rb_key"
        )
    else:
        change = "SELECT _rb_key FROM _rb_r WHERE _rb_take"
    return (
        f"WITH _rb_q AS ({_strip(p.resolve or '')}),"
        ' _rb_r AS MATERIALIZED (SELECT "key" AS _rb_key, "value" AS _rb_value, candidates AS _rb_candidates,'
        '  ("value" IS NOT NULL AND (candidates = 1 OR (candidates > 1 AND :first))) AS _rb_take FROM _rb_q),'
        f" _rb_w AS ({change})"
        " SELECT n.*, d.* FROM"
        " (SELECT count(*) AS todo, count(DISTINCT _rb_key) AS keys,"
        "  count(*) FILTER (WHERE _rb_key <= :after OR _rb_key > :hi) AS outside,"
        "  (SELECT count(*) FROM _rb_w) AS written FROM _rb_r) n"
        " LEFT JOIN (SELECT r._rb_key, r._rb_candidates, r._rb_take, w._rb_key IS NOT NULL AS _rb_written"
        "  FROM _rb_r r LEFT JOIN _rb_w w ON w._rb_key = r._rb_key"
        "  WHERE NOT (r._rb_candidates = 1 AND w._rb_key IS NOT NULL)) d ON true"
    )


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";").strip()


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


KIND = BackfillStep()
