"""Independent steps side by side: adjacent steps marked ``concurrent: true`` run at once.

A group is a run of adjacent selected steps that all have ``concurrent: true`` (none
may need another of the group: the loader refuses it). Each step runs through the same
step runner as any other, in a thread of its own; the group is joined before the step
after it starts, so every later step (and any ``needs`` on a member) sees all of them
ended. When a member stops the run (it failed, was refused or interrupted), the others
still end their own way first (they are independent), then the most serious stop is
raised: interrupted, then failed, then refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from runbook.engine.outcome import Stop
from runbook.status import RunStatus

if TYPE_CHECKING:
    from runbook.planner import PlannedStep

_JOIN_POLL = 0.05
_SEVERITY = {RunStatus.INTERRUPTED: 0, RunStatus.FAILED: 1, RunStatus.REFUSED: 2}


def groups(steps: Iterable[PlannedStep]) -> Iterator[list[PlannedStep]]:
    """The selected steps in order, adjacent ``concurrent`` steps together."""
    group: list[PlannedStep] = []
    for planned in steps:
        if planned.step.concurrent:
            group.append(planned)
            continue
        if group:
            yield group
            group = []
        yield [planned]
    if group:
        yield group


def run_group(group: list[PlannedStep], run_one: Callable[[PlannedStep], None]) -> None:
    if len(group) == 1:
        run_one(group[0])
        return
    stops: list[Stop] = []
    errors: list[BaseException] = []

    def worker(planned: PlannedStep) -> None:
        try:
            run_one(planned)
        except Stop as stop:
            stops.append(stop)
        except BaseException as err:  # re-raised on the main thread below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(p,), name=f"step-{p.id}", daemon=True) for p in group]
    for thread in threads:
        thread.start()
    for thread in threads:
        # Joined in short waits: the main thread must stay free to run signal handlers.
        while thread.is_alive():
            thread.join(_JOIN_POLL)
    if errors:
        raise errors[0]
    if stops:
        raise min(stops, key=lambda s: _SEVERITY.get(s.status, 3))
