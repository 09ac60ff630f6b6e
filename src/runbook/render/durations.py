"""How long a step and a run took: the one computation behind ``status``, ``show`` and ``report``.

Time spent waiting for a person is not time the change took:

* a step paused for approval is recorded as an attempt that ends as it starts,
  and the attempt that runs after ``runbook approve`` and ``--resume`` is a
  second one; a step took the sum of its attempts, never first start to last end
  (which counted the whole pause: 59.9 s in the report against 0.2 s in status);
* a run is active from each ``run_started`` (the first run and every resume) to
  its ``run_finished`` (or its last event, when the process died), less the time
  a question waited at a terminal (``waited`` on the ``approved`` event, or on the
  refusal when the answer was no).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


def attempt_seconds(attempt: Any) -> float | None:
    """An attempt's own duration; None while it runs (or when it never ended)."""
    if attempt.started_at is None or attempt.finished_at is None:
        return None
    return max((attempt.finished_at - attempt.started_at).total_seconds(), 0.0)


def step_seconds(attempts: Iterable[Any]) -> float | None:
    """What a step took: the sum of its ended attempts (a paused or refused record is an instant)."""
    spans = [s for s in map(attempt_seconds, attempts) if s is not None]
    return sum(spans) if spans else None


@dataclass
class ActiveTime:
    """A run's wall-clock spans of activity and the waits for an answer inside them."""

    spans: list[tuple[datetime, datetime]] = field(default_factory=list)
    waits: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum((end - start).total_seconds() for start, end in self.spans) - self.waited

    @property
    def waited(self) -> float:
        return sum(_overlap(wait, span) for wait in self.waits for span in self.spans)

    @property
    def paused(self) -> float:
        """Wall-clock time between the spans (a run waiting for ``runbook approve`` and a resume)."""
        if not self.spans:
            return 0.0
        wall = (self.spans[-1][1] - self.spans[0][0]).total_seconds()
        return max(wall - sum((end - start).total_seconds() for start, end in self.spans), 0.0)

    def offset(self, moment: datetime) -> float:
        """Active seconds from the run's start to ``moment``: where a bar starts on a timeline."""
        until = (datetime.min.replace(tzinfo=moment.tzinfo), moment)
        active = sum(_overlap(span, until) for span in self.spans)
        waited = sum(_overlap(wait, until) for wait in self.waits)
        return max(active - waited, 0.0)


def run_active_time(run: Any, events: Sequence[Any]) -> ActiveTime:
    """The run's active spans, from its events; a store without them falls back to the run's own times."""
    active = ActiveTime()
    start: datetime | None = None
    last: datetime | None = None
    for event in events:
        if event.event == "run_started":
            if start is not None and last is not None:
                active.spans.append((start, last))  # a process that died without finishing
            start = event.at
        elif isinstance(event.detail, dict) and event.detail.get("waited"):
            waited = float(event.detail["waited"])
            active.waits.append((event.at - timedelta(seconds=waited), event.at))
        last = event.at
        if event.event == "run_finished" and start is not None:
            active.spans.append((start, event.at))
            start = None
    if start is not None and last is not None:
        active.spans.append((start, last))
    if not active.spans and run.started_at is not None:
        end = run.finished_at or last
        if end is not None:
            active.spans.append((run.started_at, end))
    return active


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    return max((min(a[1], b[1]) - max(a[0], b[0])).total_seconds(), 0.0)
