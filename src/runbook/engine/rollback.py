"""Rollbacks: undoing passed steps newest first, or running a named rollback option.

``runbook rollback RUN`` is a run of its own, linked to its parent by
``params.rollback_of``: it shows what it will do, asks (or takes --yes),
holds the environment's lock with a heartbeat like any run, and executes
every body through the session's StepRunner (masking, retries, logs,
supervision). The parent's status is never rewritten: each step undone is
appended to the parent's record as rolled back, and a complete rollback
releases the parent's hold on the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.engine import resume
from runbook.engine.context import StepState, StepStates
from runbook.engine.outcome import RunResult, Stop
from runbook.engine.session import Session
from runbook.engine.whereabouts import differences
from runbook.errors import ExitCode, Refused, RunbookError, UsageError
from runbook.planner import Plan, PlannedStep, RenderedBody, render_body
from runbook.state import new_run_id
from runbook.state.store import RunRecord
from runbook.status import EventName, RunStatus, StepStatus
from runbook.templating import TemplateFailed

_STATUS_OF_STOP = {RunStatus.FAILED: RunStatus.ROLLBACK_FAILED}


@dataclass
class UndoReport:
    ok: bool = True
    done: list[str] = field(default_factory=list)
    not_done: list[tuple[str, str]] = field(default_factory=list)


def undo_order(plan: Plan, states: StepStates, *, failed_step: str | None = None, to_step: str | None = None) -> list[PlannedStep]:
    """Passed steps (and the one that failed), newest first, stopping before ``to_step``
    (which stays in place)."""
    order = []
    for planned in reversed(plan.steps):
        if planned.id == to_step:
            break
        if states.passed(planned.id) or planned.id == failed_step:
            order.append(planned)
    return order


def _rollback_body(session: Session, planned: PlannedStep) -> RenderedBody | None:
    if planned.step.rollback is None:
        return None
    try:
        return render_body(planned.step.rollback, session.renderer.context(), f"steps[{planned.index}] ({planned.id}).rollback", session.plan.resolved.masker)
    except TemplateFailed as err:
        raise RunbookError(str(err)) from err


def undo(session: Session, order: list[PlannedStep], *, parent: str | None = None) -> UndoReport:
    report = UndoReport()
    journal = session.journal
    for position, planned in enumerate(order):
        body = _rollback_body(session, planned)
        if body is None:
            why = "irreversible" if planned.step.irreversible else "no rollback declared"
            journal.emit(EventName.ROLLBACK_SKIPPED, step=planned.id, reason=why)
            report.not_done.append((planned.id, why))
            continue
        session.check_still_holding()
        outcome = session.steps.execute(planned, body, mode="rollback")
        if outcome is not None:
            journal.emit(EventName.FAILURE_HELP, step=planned.id, tail=outcome.tail[-20:], hints=[], error=outcome.error)
            report.ok = False
            report.not_done.append((planned.id, f"its rollback failed: {outcome.error}"))
            report.not_done += [(later.id, "not reached: an earlier rollback failed") for later in order[position + 1 :]]
            break
        journal.record_step(planned.id, StepStatus.ROLLED_BACK, planned.fingerprint, "rolled back")
        session.states[planned.id] = StepState(StepStatus.ROLLED_BACK)
        if parent is not None:
            session.store.record_step(parent, planned.id, status=str(StepStatus.ROLLED_BACK), fingerprint=planned.fingerprint, reason=f"rolled back by run {session.run_id}")
        report.done.append(planned.id)
    journal.notice("rolled back: " + (", ".join(report.done) or "nothing"))
    if report.not_done:
        journal.notice("not rolled back: " + "; ".join(f"{step} ({why})" for step, why in report.not_done))
    return report


def run_option(session: Session, option_id: str) -> None:
    """Run a named rollback option's steps in order (the seed's Option 1/2/3), each
    with its needs, when, preconditions, confirmation, retries and gates."""
    for planned in _option_steps(session, option_id):
        session.check_still_holding()
        session.steps.run(planned)


def _option_steps(session: Session, option_id: str) -> list[PlannedStep]:
    option = next(o for o in session.plan.runbook.rollback if o.id == option_id)
    steps = []
    for i, step in enumerate(option.steps):
        # Recorded under "<option>.<step>" so they never mix with the run's own steps.
        renamed = step.model_copy(update={"id": f"{option_id}.{step.id}", "needs": [f"{option_id}.{n}" for n in step.needs]})
        steps.append(PlannedStep.placeholder(renamed, i))
    return steps


def rollback_run(session: Session, parent: RunRecord, *, to_step: str | None = None, option: str | None = None, preview: bool = False) -> RunResult:
    plan, journal, store = session.plan, session.journal, session.store
    if to_step is not None and to_step not in {p.id for p in plan.steps}:
        raise UsageError(f"--to {to_step}: no such step in {plan.runbook.name}", hint=f"its steps: {', '.join(p.id for p in plan.steps)}")
    if option is not None and option not in {o.id for o in plan.runbook.rollback}:
        known = ", ".join(o.id for o in plan.runbook.rollback) or "none"
        raise UsageError(f"no rollback option {option!r}; the runbook has: {known}")
    recorded = resume.load_states(store, parent.run_id, session.states)
    order = [] if option else undo_order(plan, session.states, to_step=to_step)
    for line in differences(parent, host=store.host, workdir=session.workdir, base=session.base_dir):
        journal.warning(line)
    lines = _describe(session, parent, order, option)
    changed = resume.changed_since_run(order, {k: a.fingerprint for k, a in recorded.items()})
    if changed:
        names = ", ".join(p.id for p in changed)
        lines.append(f"changed since run {parent.run_id} ran them: {names} (their rollback is the one in the file now)")
        if not (preview or session.options.accept_changes):
            for line in lines:
                journal.notice(line)
            raise Refused(
                f"the definition of step(s) {names} changed since run {parent.run_id} ran them: the rollback in the file may not undo what was done",
                hint=f"review the change (runbook show {parent.run_id}), then add --accept-changes to roll back with the file as it is now",
            )
    for line in lines:
        journal.notice(line)
    if preview:
        journal.notice("dry run: nothing was rolled back")
        return RunResult(parent.run_id, RunStatus(parent.status), int(ExitCode.OK))
    if not order and option is None:
        raise Refused(f"run {parent.run_id} has nothing to roll back", hint="runbook show " + parent.run_id + " lists its steps")
    _confirm(session, lines)
    run_id = new_run_id()
    with session.holding(run_id, claim=lambda: _claim(session, parent)):
        session.bind(run_id)
        store.create_run(
            run_id=run_id,
            runbook=plan.runbook.name,
            env=plan.env,
            path=str(plan.loaded.path),
            fingerprint=session.fingerprint,
            dry_run=False,
            actor=session.options.actor,
            params={"rollback_of": parent.run_id, "to": to_step, "option": option},
            workdir=str(session.workdir),
        )
        journal.emit(EventName.ROLLBACK_STARTED, parent=parent.run_id, to=to_step, option=option)
        session.acted = True
        try:
            if option:
                run_option(session, option)
                ok = True
            else:
                ok = undo(session, order, parent=parent.run_id).ok
            status = RunStatus.ROLLED_BACK if ok else RunStatus.ROLLBACK_FAILED
        except Stop as stop:
            status = _STATUS_OF_STOP.get(stop.status, stop.status)
        except RunbookError as err:
            err.message = journal.masker.mask(err.message)
            journal.emit(EventName.ERROR, message=str(err))
            session.finish(RunStatus.ROLLBACK_FAILED, finished=False, next_steps=[f"try again: runbook rollback {parent.run_id}"])
            raise
        if status == RunStatus.ROLLED_BACK and option is None and to_step is None:
            # Everything undone: the parent no longer owns the environment.
            store.mark_finished(parent.run_id)
            store.append_event(parent.run_id, str(EventName.ROLLED_BACK_BY), detail={"run": run_id})
        nxt = [] if status == RunStatus.ROLLED_BACK else [f"try again: runbook rollback {parent.run_id}"]
        return session.finish(status, finished=status == RunStatus.ROLLED_BACK, next_steps=nxt)


def _describe(session: Session, parent: RunRecord, order: list[PlannedStep], option: str | None) -> list[str]:
    if option is not None:
        lines = [f"rollback option {option!r} for run {parent.run_id} will run, in this order:"]
        for n, planned in enumerate(_option_steps(session, option), 1):
            rendered = session.renderer.step(planned)
            lines.append(f"  {n}. [{planned.id}] {rendered.title}: {_one_line(rendered.body.description)}")
        return lines
    lines = [f"rollback of run {parent.run_id} ({parent.status}) will run, in this order:"]
    n = 0
    kept = []
    for planned in order:
        body = _rollback_body(session, planned)
        if body is None:
            kept.append(f"{planned.id} ({'irreversible' if planned.step.irreversible else 'no rollback declared'})")
            continue
        n += 1
        lines.append(f"  {n}. [{planned.id}] {body.title or planned.title}: {_one_line(body.description)}")
    if n == 0:
        lines.append("  (nothing: no step that passed declares a rollback)")
    untouched = [p.id for p in session.plan.steps if session.states.status(p.id) in (StepStatus.FAILED, StepStatus.INTERRUPTED)]
    kept += [f"{step_id} (it did not pass; undo by hand or with a rollback option)" for step_id in untouched]
    if kept:
        lines.append("not rolled back: " + "; ".join(kept))
    return lines


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] + (f" (+{len(lines) - 1} lines)" if len(lines) > 1 else "") if lines else ""


def _confirm(session: Session, lines: list[str]) -> None:
    opts = session.options
    if opts.yes:
        return
    if opts.prompt is None:
        raise Refused("a rollback changes the environment: confirm at a terminal, or pass --yes", hint="--dry-run shows what it would run")
    if not opts.prompt(session.journal.masker.mask("\n".join(lines + ["Roll back now?"]))):
        raise Refused("rollback not confirmed; nothing was run")


def _claim(session: Session, parent: RunRecord) -> None:
    """A rollback may take the environment from its parent, or from an unfinished earlier
    rollback of the same parent (superseded by this one), never from another run."""
    owner = session.store.owner_run(session.plan.runbook.name, session.plan.env)
    if owner is None or owner.run_id == parent.run_id:
        return
    if (owner.params or {}).get("rollback_of") == parent.run_id:
        session.store.mark_finished(owner.run_id)
        return
    raise Refused(
        f"run {owner.run_id} ({owner.status}) owns {session.plan.runbook.name} in {session.plan.env}, not run {parent.run_id}",
        hint=f"finish or abandon it first: runbook abandon {owner.run_id} --reason TEXT",
    )
