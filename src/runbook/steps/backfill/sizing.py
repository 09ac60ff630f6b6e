"""The adaptive batch size: toward ``target_batch_time`` per batch, smoothly."""

from __future__ import annotations

# Batch size moves by at most this factor per batch, so one slow or fast batch cannot swing it.
MAX_STEP_FACTOR = 2.0
# Weight of a faster-than-expected batch in the cost-per-row estimate.
COST_SMOOTHING = 0.25


class Sizer:
    """Rows for the next batch: target time over the estimated cost of a row.

    The estimate follows a slower batch at once and a faster one only
    gradually: on a shared server the cost of a row jumps about, and a batch
    far over the target holds its locks longer than promised.
    """

    def __init__(self, target_s: float, min_batch: int, max_batch: int) -> None:
        self.target_s, self.min_batch, self.max_batch = target_s, min_batch, max_batch
        self.row_cost: float | None = None

    def next(self, size: int, rows: int, seconds: float) -> int:
        cost = seconds / max(rows, 1)
        if self.row_cost is None or cost > self.row_cost:
            self.row_cost = cost
        else:
            self.row_cost += COST_SMOOTHING * (cost - self.row_cost)
        ideal = self.target_s / max(self.row_cost, 1e-9)
        bounded = min(size * MAX_STEP_FACTOR, max(size / MAX_STEP_FACTOR, ideal))
        return self.clamp(round(bounded))

    def shrink(self, size: int) -> int:
        """After a failed batch or a pause: half as many rows."""
        return self.clamp(size // 2)

    def clamp(self, size: int) -> int:
        return int(min(self.max_batch, max(self.min_batch, size)))
