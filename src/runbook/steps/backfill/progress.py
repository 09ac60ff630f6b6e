"""Counts, progress lines and the ETA of a backfill.

The total is never counted up front (``count(*)`` is a full scan before the
first batch): it starts as the planner's estimate of the table's rows
(PostgreSQL), InnoDB's (MySQL, MariaDB) or the span of its rowids (SQLite), is never let fall below the
rows already done, and becomes the exact count when the walk ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.model import format_duration
from runbook.steps.backfill.keys import KeyValue

if TYPE_CHECKING:
    import sqlalchemy as sa

# Fewer progress lines than batches: one a second is readable, and the last batch always reports.
PROGRESS_EVERY_S = 1.0


@dataclass
class Batch:
    """One committed (or, in a dry run, classified) batch of keys ``lo..hi``."""

    lo: KeyValue
    hi: KeyValue
    checked: int
    seconds: float = 0.0
    updated: int = 0
    updated_ambiguous: int = 0
    ambiguous: int = 0
    unresolved: int = 0
    skipped_already_set: int = 0
    # (key, classification, candidates) for the report.
    flagged: list[tuple[KeyValue, str, int | None]] = field(default_factory=list)


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

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> Tally:
        tally = cls(**{name: saved[name] for name in cls.__dataclass_fields__ if name in saved})
        # Failed batches were rolled back and are walked again now; only this attempt's errors count.
        tally.errors = 0
        return tally


class BatchTimes:
    """The time of each batch of this attempt, for the distribution in the outputs and summary."""

    def __init__(self) -> None:
        self.ms: list[float] = []

    def add(self, seconds: float) -> None:
        self.ms.append(seconds * 1000)

    def percentile(self, pct: float) -> float:
        if not self.ms:
            return 0.0
        ordered = sorted(self.ms)
        return round(ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))], 1)

    def text(self) -> str:
        if not self.ms:
            return "no batches"
        return f"p50 {self.percentile(50):,.0f} ms, p99 {self.percentile(99):,.0f} ms, max {max(self.ms):,.0f} ms"


class Progress:
    """Rate, estimated total and ETA; reports through the step's progress events and output."""

    def __init__(self, total: int, estimated: bool, done: int) -> None:
        self.total, self.estimated = max(total, done), estimated
        self.started = time.monotonic()
        self.checked_now = 0
        self.waited = 0.0
        self.last_line = -PROGRESS_EVERY_S

    def add(self, rows: int, done: int) -> None:
        self.checked_now += rows
        self.total = max(self.total, done)

    def finish(self, done: int) -> None:
        """The walk ended: now the total is known exactly."""
        self.total, self.estimated = done, False

    def rate(self) -> float:
        # Time spent waiting for the database to recover is not the backfill's speed.
        working = time.monotonic() - self.started - self.waited
        return self.checked_now / working if working > 0 else 0.0

    def eta(self, done: int) -> float | None:
        rate = self.rate()
        return (self.total - done) / rate if rate > 0 else None

    def event(self, done: int) -> dict[str, Any]:
        eta = self.eta(done)
        return {
            "done": done,
            "total": self.total,
            "rate": round(self.rate(), 1),
            "eta_s": None if eta is None else round(eta, 1),
        }

    def line_due(self, batch_no: int, last: bool) -> bool:
        elapsed = time.monotonic() - self.started
        if batch_no == 1 or last or elapsed - self.last_line >= PROGRESS_EVERY_S:
            self.last_line = elapsed
            return True
        return False

    def line(self, batch_no: int, rows: int, done: int) -> str:
        eta = self.eta(done)
        eta_text = "" if eta is None or done >= self.total else f", ETA {format_duration(max(1, round(eta)))}"
        total = f"~{self.total:,}" if self.estimated else f"{self.total:,}"
        return f"batch {batch_no}: {rows:,} rows ({done:,}/{total}, {self.rate():,.0f} rows/s{eta_text})"


def estimate_rows(conn: sa.Connection, table: sa.TableClause) -> int | None:
    """The table's rows as the database estimates them without counting; None when it cannot say."""
    import sqlalchemy as sa

    name = conn.dialect.identifier_preparer.format_table(table)
    try:
        if conn.dialect.name == "postgresql":
            # The planner's own estimate: fresh even for a table never analyzed (it scales by the pages).
            plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {name}").scalar_one()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            return int(plan[0]["Plan"]["Plan Rows"])
        if conn.dialect.name in ("mysql", "mariadb"):
            # InnoDB's estimate from its sampled statistics (the table's, not the schema's).
            rows = conn.execute(
                sa.text("SELECT table_rows FROM information_schema.tables WHERE table_schema = COALESCE(:schema, DATABASE())"
                        " AND table_name = :name"),
                {"schema": table.schema, "name": table.name},
            ).scalar()
            return None if rows is None else int(rows)
        if conn.dialect.name == "sqlite":
            span = conn.exec_driver_sql(f"SELECT max(rowid) - min(rowid) + 1 FROM {name}").scalar()
            return None if span is None else int(span)
    except sa.exc.DBAPIError:
        # A WITHOUT ROWID table, or a server that will not explain: progress then counts up as it goes.
        conn.rollback()
    return None


def checkpoint_progress(checkpoint: dict[str, Any]) -> str:
    """How far a backfill got, from its saved checkpoint: ``rows DONE / TOTAL``."""
    done = int(checkpoint.get("total", 0))
    total = checkpoint.get("rows_total")
    # Checkpoints saved before rows_total was recorded only know what was done.
    if total is None:
        return f"rows {done:,} checked"
    return f"rows {done:,} / {'~' if checkpoint.get('rows_estimated') else ''}{max(int(total), done):,}"
