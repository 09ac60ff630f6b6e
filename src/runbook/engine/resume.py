"""What a resume recovers, re-verifies and carries over.

The rule for re-verification (docs/runbook-format.md, "Resuming"): the gates
of the *frontier* of what has been done are re-checked, that is of every
passed step that no other passed step needs, directly or transitively; plus
gates marked ``recheck: always``; never gates marked ``recheck: never``.
With ``--from``/``--only`` only the steps the selected steps need count.
A gate of an earlier step that a later step legitimately changed (a column
made NOT NULL, a backup older than its max_age) is therefore not re-checked,
while the newest change (the migration the deploy needs) always is.
"""

from __future__ import annotations

from collections.abc import Iterable

from runbook.engine.checks import CheckRunner
from runbook.engine.context import Renderer, StepState, StepStates
from runbook.engine.journal import Journal
from runbook.errors import Refused
from runbook.planner import Plan, PlannedStep
from runbook.state import StateStore
from runbook.state.store import AttemptRecord
from runbook.status import EventName, StepStatus


def load_states(store: StateStore, run_id: str, states: StepStates) -> dict[str, AttemptRecord]:
    recorded = store.step_states(run_id)
    for step_id, attempt in recorded.items():
        states[step_id] = StepState(StepStatus(attempt.status), dict(attempt.outputs or {}))
    return recorded


def recover(journal: Journal, states: StepStates, recorded: dict[str, AttemptRecord]) -> None:
    """Steps left 'running' by a dead process become interrupted and run again. What
    that process left running was settled when the lock was taken (leftovers.py):
    stopped, waited for, or the resume refused."""
    for step_id, state in list(states.items()):
        if state.status != StepStatus.RUNNING:
            continue
        attempt = recorded[step_id]
        journal.store.mark_interrupted(journal.run_id, step_id, attempt.attempt)
        state.status = StepStatus.INTERRUPTED
        message = f"step {step_id!r} was interrupted (its process {attempt.pid} on {attempt.host} is gone); it will run again"
        journal.emit(EventName.STEP_RECOVERED, step=step_id, attempt=attempt.attempt, message=message)
        journal.notice(message)


def needed_by(plan: Plan, step_ids: Iterable[str]) -> set[str]:
    """Every step that one of ``step_ids`` needs, directly or transitively."""
    needs = {p.id: p.step.needs for p in plan.steps}
    seen: set[str] = set()
    todo = [n for s in step_ids for n in needs.get(s, [])]
    while todo:
        step_id = todo.pop()
        if step_id not in seen:
            seen.add(step_id)
            todo.extend(needs.get(step_id, []))
    return seen


def gates_to_recheck(plan: Plan, passed: set[str], selected: list[PlannedStep] | None) -> list[tuple[PlannedStep, list[int]]]:
    """(step, indexes of its gates) to re-check before going on, in plan order."""
    frontier = passed - needed_by(plan, passed)
    relevant = passed if selected is None else passed & needed_by(plan, [p.id for p in selected])
    out = []
    for planned in plan.steps:
        if planned.id not in relevant:
            continue
        chosen = [
            i
            for i, gate in enumerate(planned.step.gates)
            if gate.recheck == "always" or (gate.recheck == "auto" and planned.id in frontier)
        ]
        if chosen:
            out.append((planned, chosen))
    return out


class ChangedSinceRun(Refused):
    """Passed steps' definitions differ from what the run recorded: the way on is
    ``--resume --accept-changes`` (which re-runs them), not a plain ``--resume``."""


def changed_since_run(steps: Iterable[PlannedStep], fingerprints: dict[str, str]) -> list[PlannedStep]:
    """The steps whose definition (as written, with the values it reads) differs from
    the one the run recorded when it ran them: a resume would not re-run what it
    thinks it re-runs, a rollback would not undo what was done."""
    return [p for p in steps if fingerprints.get(p.id) != p.fingerprint]


def verify(
    plan: Plan,
    states: StepStates,
    fingerprints: dict[str, str],
    *,
    selected: list[PlannedStep] | None,
    accept_changes: bool,
    journal: Journal,
    renderer: Renderer,
    checks: CheckRunner,
) -> None:
    """Passed steps whose definition changed stop the run (or run again with
    --accept-changes); the frontier's gates must still hold."""
    passed = [p for p in plan.steps if states.passed(p.id)]
    changed = changed_since_run(passed, fingerprints)
    if changed:
        names = ", ".join(p.id for p in changed)
        if not accept_changes:
            raise ChangedSinceRun(
                f"the definition of passed step(s) {names} changed since they ran",
                hint="review the change; --accept-changes re-runs the changed steps",
            )
        for planned in changed:
            del states[planned.id]
            journal.emit(EventName.STEP_CHANGED, step=planned.id, message="definition changed; it will run again (--accept-changes)")
    still_passed = {p.id for p in passed if p not in changed}
    for planned, indexes in gates_to_recheck(plan, still_passed, selected):
        where = f"steps[{planned.index}] ({planned.id})"
        for i in indexes:
            check = renderer.check(planned.step.gates[i], f"{where}.gates[{i}]")
            result = checks.evaluate(check, planned.id, "gate (re-check)")
            if result.ok:
                continue
            seen = f"error: {result.error}" if result.error else f"observed {result.observed}, expected {result.expected}"
            raise Refused(
                f"step {planned.id!r} passed earlier but its gate {check.label!r} no longer holds ({seen})",
                hint="find out what changed since (a migration reverted by hand?); the run cannot safely go on",
            )


def carry_over(plan: Plan, states: StepStates, journal: Journal, selected: list[PlannedStep]) -> dict[str, str]:
    """--from / --only on a new run: a step not selected counts as passed when its
    newest attempt in any earlier run of this runbook and environment passed with
    the same definition. Returns, per step that does not count, why not."""
    store = journal.store
    newest = store.latest_attempts(plan.runbook.name, plan.env, exclude_run=journal.run_id)
    chosen = {p.id for p in selected}
    why_not: dict[str, str] = {}
    carried: list[str] = []
    for planned in plan.steps:
        if planned.id in chosen:
            continue
        attempt = newest.get(planned.id)
        if attempt is None:
            why_not[planned.id] = "it never ran in an earlier run"
        elif attempt.status != StepStatus.PASSED:
            why_not[planned.id] = f"its newest attempt, in run {attempt.run_id}, is {attempt.status}"
        elif attempt.fingerprint != planned.fingerprint:
            why_not[planned.id] = f"its definition changed since it passed in run {attempt.run_id}"
        else:
            store.carry_attempt(journal.run_id, attempt)
            states[planned.id] = StepState(StepStatus.PASSED, dict(attempt.outputs or {}))
            carried.append(f"{planned.id} (run {attempt.run_id})")
    if carried:
        journal.notice("passed in earlier runs, counted here (the gates they need are re-checked): " + ", ".join(carried))
    return why_not
