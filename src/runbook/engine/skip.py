"""``run --skip STEP``: leave steps out of this run, as Ansible's ``--skip-tags`` does.

A skipped step is not run and not recorded; the steps that do run see it as
never run. So a step that runs may not ``need`` a skipped one: that is refused
before anything starts (exit 3), naming both, unless the step that needs it is
skipped too. ``needs`` are direct: skipping ``backup`` refuses a run of
``migrate`` that needs it, and skipping both lets ``verify``, which needs
``migrate``, be refused in its turn unless it is skipped as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runbook.errors import Refused
from runbook.planner import PlannedStep


def without_skipped(steps: list[PlannedStep], skip: Sequence[str], index_of: Callable[[str], int]) -> list[PlannedStep]:
    """``steps`` less the skipped ones; ``index_of`` refuses an unknown step id (with a suggestion)."""
    for step_id in skip:
        index_of(step_id)
    skipped = frozenset(skip)
    kept = [s for s in steps if s.id not in skipped]
    blocked = [(s.id, need) for s in kept for need in s.step.needs if need in skipped]
    if blocked:
        pairs = "; ".join(f"{step} needs {need}" for step, need in blocked)
        also = " ".join(f"--skip {step}" for step in dict.fromkeys(step for step, _ in blocked))
        raise Refused(f"--skip: {pairs}, and it would run without it", hint=f"skip those too ({also}), or do not skip what they need")
    return kept
