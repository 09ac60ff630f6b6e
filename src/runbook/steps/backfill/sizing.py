"""The adaptive batch size: toward ``target_batch_time`` per batch, growing smoothly."""

from __future__ import annotations

# Batch size grows by at most this factor per batch, so one fast batch cannot swing it up.
MAX_STEP_FACTOR = 2.0
# Weight of a faster-than-expected batch in the cost-per-row estimate.
COST_SMOOTHING = 0.25
# A read-only chunk (dry run, preview): about this long, at most this many rows, growing by at most this factor.
READ_CHUNK_S = 1.0
READ_MAX_ROWS = 250_000
READ_MAX_STEP = 8.0


class Sizer:
    """Rows for the next batch: target time over the estimated cost of a row.

    The estimate follows a slower batch at once and a faster one only
    gradually, and so does the size (growing at most ``max_step`` times a
    batch): on a shared server the cost of a row jumps about, and a batch
    far over the target holds its locks longer than promised.
    """

    def __init__(self, target_s: float, min_batch: int, max_batch: int, max_step: float = MAX_STEP_FACTOR) -> None:
        self.target_s, self.min_batch, self.max_batch = target_s, min_batch, max_batch
        self.max_step = max_step
        self.row_cost: float | None = None

    @classmethod
    def for_reads(cls, min_batch: int, target_batch_time: float, statement_timeout: float) -> Sizer:
        """A dry run's (or preview's) chunks: read-only, holding no row lock, so sized by time
        to about a second each (up to ``READ_MAX_ROWS``) and let grow faster: the per-chunk
        costs (a transaction, the keyset probe, a progress event) are then spread over many
        rows, and a progress line still comes about once a second. Never aimed past a quarter
        of ``statement_timeout`` (0: none), nor below ``target_batch_time``: a chunk that
        overshoots its aim must not be the one the server cancels."""
        target = READ_CHUNK_S
        if statement_timeout > 0:
            target = min(READ_CHUNK_S, max(target_batch_time, statement_timeout / 4))
        return cls(target, min_batch, READ_MAX_ROWS, READ_MAX_STEP)

    def next(self, size: int, rows: int, seconds: float) -> int:
        cost = seconds / max(rows, 1)
        if self.row_cost is None or cost > self.row_cost:
            self.row_cost = cost
        else:
            self.row_cost += COST_SMOOTHING * (cost - self.row_cost)
        ideal = self.target_s / max(self.row_cost, 1e-9)
        # Grows by at most max_step a batch, shrinks at once: after a batch that took longer than
        # the target, one only halved would still hold its row locks too long (a table whose
        # rows turn three times as costly halfway through: 243 ms, then 152 ms, at 100 ms aimed).
        return self.clamp(round(min(size * self.max_step, ideal)))

    def shrink(self, size: int) -> int:
        """After a failed batch or a pause: half as many rows."""
        return self.clamp(size // 2)

    def clamp(self, size: int) -> int:
        return int(min(self.max_batch, max(self.min_batch, size)))
