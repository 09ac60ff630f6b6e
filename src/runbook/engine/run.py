"""``runbook run``: the main loop, a thin strategy over the session's step runner.

Call tree::

    run_plan
    ├── _open              the run to resume (the one owning the environment) or a new one
    ├── session.holding    lock + heartbeat + signals + connections
    │   ├── _claim         refuse when another unfinished run owns the environment
    │   ├── leftovers      settle what earlier holders left running (stop, wait or refuse)
    │   ├── resume.*       recover, carry over, verify (fingerprints, frontier gates)
    │   ├── steps.run      for each selected step
    │   └── _criteria      the runbook's success criteria
    └── session.finish     status, notifications, next commands

Every transition is written to the state store *before* the engine acts on
it, so a SIGKILL at any instant leaves a store from which ``--resume``
continues: a step found 'running' is re-run, nothing that passed runs again.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict
from typing import Any

from runbook import approval_policy
from runbook.datatree import strings
from runbook.engine import resume, values
from runbook.engine.approvals import refuse_rejected
from runbook.engine.outcome import RunResult, Stop
from runbook.engine.rollback import undo, undo_order
from runbook.engine.session import Session
from runbook.engine.skip import without_skipped
from runbook.engine.whereabouts import differences
from runbook.errors import ExitCode, Refused, RunbookError, UsageError
from runbook.fleet import side_by_side
from runbook.planner import PlannedStep
from runbook.state import new_run_id
from runbook.state.store import RunRecord
from runbook.status import EventName, RunStatus, StepStatus
from runbook.templating import is_template, reads


def run_plan(session: Session) -> RunResult:
    opts, plan = session.options, session.plan
    resumed = _resumable(session) if opts.resume else None
    if resumed is not None:
        refuse_rejected(session.store, resumed.run_id, approving=None if opts.yes else opts.approve)
    # Refusals that need no state come first, so they leave no run and no lock behind.
    select_steps(session, check=False)
    if resumed is None and not opts.dry_run:
        environment = plan.runbook.environments.get(plan.env)
        session.approvals.confirm_environment(plan.env, plan.runbook.name, protected=bool(environment and environment.protected))
    run_id = resumed.run_id if resumed else new_run_id()
    with session.holding(run_id, claim=lambda: _claim(session, run_id)):
        session.bind(run_id)
        if resumed is None:
            session.store.create_run(
                run_id=run_id,
                runbook=plan.runbook.name,
                env=plan.env,
                path=str(plan.loaded.path),
                fingerprint=session.fingerprint,
                dry_run=opts.dry_run,
                actor=opts.actor,
                params={
                    "values": values.record(plan.resolved, opts.overrides),
                    "starter": asdict(session.approvals.identity),
                    "approval": approval_policy.pinned(plan.runbook, plan.env),
                },
                workdir=str(session.workdir),
            )
        else:
            session.store.set_run_status(run_id, str(RunStatus.RUNNING))
        session.journal.emit(
            EventName.RUN_STARTED, runbook=plan.runbook.name, env=plan.env, dry_run=opts.dry_run, resumed=resumed is not None, actor=opts.actor, pid=os.getpid()
        )
        if opts.skip:
            session.journal.emit(EventName.NOTICE, message=f"skipped in this run (--skip): {', '.join(opts.skip)}")
        if resumed is not None:
            for line in differences(resumed, host=session.store.host, workdir=session.workdir, base=session.base_dir):
                session.journal.warning(line)
        return _loop(session, resumed)


def _loop(session: Session, resumed: RunRecord | None) -> RunResult:
    opts, plan = session.options, session.plan
    why_not: dict[str, str] = {}
    try:
        selected = select_steps(session, check=False)
        narrowed = selected if (opts.from_step or opts.only) else None
        if resumed is not None:
            recorded = resume.load_states(session.store, session.run_id, session.states)
            session.acted = any(a.kind == "step" and a.status in _ACTED for a in recorded.values())
            resume.recover(session.journal, session.states, recorded)
            fingerprints = {k: a.fingerprint for k, a in recorded.items()}
        else:
            if narrowed is not None:
                why_not = resume.carry_over(plan, session.states, session.journal, selected)
            fingerprints = {p.id: p.fingerprint for p in plan.steps}
        resume.verify(
            plan,
            session.states,
            fingerprints,
            selected=narrowed,
            accept_changes=opts.accept_changes,
            journal=session.journal,
            renderer=session.renderer,
            checks=session.checks,
        )
        session.steps.need_notes = why_not
        for group in side_by_side.groups(select_steps(session)):
            session.check_still_holding()
            # One step, or adjacent ``concurrent`` steps at once (runbook.fleet.side_by_side).
            side_by_side.run_group(group, session.steps.run)
        _criteria(session)
    except Stop as stop:
        return _stopped(session, stop)
    except RunbookError as err:
        # Messages may quote rendered values; the CLI prints them after this.
        err.message = session.journal.masker.mask(err.message)
        session.journal.emit(EventName.ERROR, message=str(err))
        status = RunStatus.REFUSED if err.exit_code == ExitCode.REFUSED else RunStatus.FAILED
        accept = isinstance(err, resume.ChangedSinceRun)
        session.finish(status, finished=not session.acted, next_steps=_next_steps(session, status, accept_changes=accept))
        raise
    except Exception:
        # A bug must not leave the run looking alive; record it, then let the CLI report it.
        session.finish(RunStatus.FAILED, finished=False)
        raise
    return _passed(session)


# A run with an attempt in one of these changed something (or may have).
_ACTED = frozenset({StepStatus.PASSED, StepStatus.FAILED, StepStatus.INTERRUPTED, StepStatus.RUNNING, StepStatus.ROLLED_BACK})


def _passed(session: Session) -> RunResult:
    problems = session.steps.dry_run_problems
    if session.options.dry_run and problems:
        result = session.finish(RunStatus.PASSED, finished=True)
        # Said last, so that nobody reads "passed" as "everything was previewed".
        session.journal.notice(f"dry run incomplete: {len(problems)} step(s) could not be previewed: {', '.join(problems)} (exit 5)")
        return RunResult(result.run_id, result.status, int(ExitCode.DRY_RUN_INCOMPLETE))
    return session.finish(RunStatus.PASSED, finished=True)


def _stopped(session: Session, stop: Stop) -> RunResult:
    opts = session.options
    if stop.status == RunStatus.FAILED and stop.step and not opts.dry_run and _rolls_back(session, stop.step):
        session.journal.notice("on_failure: rollback — undoing the failed step and the steps that passed, newest first")
        report = undo(session, undo_order(session.plan, session.states, failed_step=stop.step))
        if report.ok:
            # Everything undone: the environment is as before, the run no longer owns it.
            return session.finish(RunStatus.FAILED, finished=True, next_steps=[f"start again: {session.command_line()}"])
    finished = stop.status == RunStatus.REFUSED and not session.acted
    return session.finish(stop.status, finished=finished, next_steps=_next_steps(session, stop.status, stop.reason))


def _rolls_back(session: Session, step_id: str) -> bool:
    step = session.plan.step(step_id).step if step_id in {p.id for p in session.plan.steps} else None
    return step is not None and (step.on_failure or session.plan.runbook.on_failure) == "rollback"


def _next_steps(session: Session, status: RunStatus, reason: str | None = None, *, accept_changes: bool = False) -> list[str]:
    if session.options.dry_run:
        return []
    run_id = session.run_id
    out = []
    if status == RunStatus.REFUSED and reason:
        out.append(reason)
    if status in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.AWAITING_APPROVAL) or (status == RunStatus.REFUSED and session.acted):
        resume_line = session.command_line(resume=True)
        if accept_changes:
            # A plain --resume would be refused the same way: the changed steps run again with it.
            resume_line += " --accept-changes"
        out.append(f"resume: {resume_line}")
    if status == RunStatus.FAILED and session.acted:
        out.append(f"roll back: runbook rollback {run_id}")
    if session.acted and status != RunStatus.PASSED:
        out.append(f"or give up on it: runbook abandon {run_id} --reason TEXT")
    return out


def _outputs_not_known(session: Session, check: Any) -> list[str]:
    """The steps whose outputs ``check`` reads that a dry run only described (no outputs)."""
    if not session.options.dry_run:
        return []
    found: list[str] = []
    for _key, text in strings(check):
        if not is_template(text):
            continue
        for ref in reads(text):
            if len(ref.parts) > 2 and ref.parts[0] == "steps" and ref.parts[2] == "outputs":
                if session.states.described_only(ref.parts[1]) and ref.parts[1] not in found:
                    found.append(ref.parts[1])
    return found


def _criteria(session: Session) -> None:
    failed = []
    for i, criterion in enumerate(session.plan.runbook.success_criteria):
        if criterion.check is None:
            session.journal.emit(EventName.CRITERION, description=criterion.description, ok=None)
            continue
        unknown = _outputs_not_known(session, criterion.check.model_dump(mode="json"))
        if unknown:
            # A dry run only described these steps: a value read from them is the placeholder's
            # text, which `is not null` would pass and `== 0` fail. Neither is known yet.
            note = f"not known in a dry run: it reads the outputs of {', '.join(unknown)}, which a dry run only describes"
            session.journal.emit(
                EventName.CHECK, step="success", role="criterion", name=criterion.description, ok=True, applicable=False, detail=note
            )
            session.journal.emit(EventName.CRITERION, description=criterion.description, ok=None, observed=note)
            continue
        check = session.renderer.check(criterion.check, f"success_criteria[{i}]")
        result = session.checks.evaluate(check, "success", "criterion", label=criterion.description)
        session.journal.emit(EventName.CRITERION, description=criterion.description, ok=result.ok, observed=result.observed)
        if not result.ok:
            failed.append(criterion.description)
    if failed and not session.options.dry_run:
        session.journal.notice("success criteria not met: " + "; ".join(failed))
        raise Stop(RunStatus.FAILED, ExitCode.STEP_FAILED)
    if failed:
        session.journal.notice(f"success criteria not met yet (expected before the change is made): {len(failed)}")


# ------------------------------------------------------------ which run, which steps


def _resumable(session: Session) -> RunRecord:
    opts, plan, store = session.options, session.plan, session.store
    name, env = plan.runbook.name, plan.env
    if opts.resume_run_id:
        record = store.get_run(opts.resume_run_id)
        if record is None:
            raise Refused(f"--resume: there is no run {opts.resume_run_id} to resume", hint=f"start one with: {session.command_line()}")
    else:
        record = store.owner_run(name, env)
        if record is None:
            raise Refused(f"--resume: there is no unfinished run of {name} in {env} to resume", hint=f"start one with: {session.command_line()}")
    if record.runbook != name or record.env != env:
        raise Refused(f"run {record.run_id} belongs to {record.runbook} in {record.env}, not {name} in {env}")
    if (record.params or {}).get("rollback_of"):
        parent = record.params["rollback_of"]
        raise Refused(f"run {record.run_id} is a rollback of run {parent}", hint=f"continue it with: runbook rollback {parent}")
    if record.status == RunStatus.PASSED:
        raise Refused(f"run {record.run_id} already passed; nothing to resume")
    if record.finished_at is not None:
        raise Refused(f"run {record.run_id} is finished ({record.status}); it cannot be resumed", hint=f"start a new run: {session.command_line()}")
    if record.dry_run and not opts.dry_run:
        raise Refused(f"run {record.run_id} was a dry run; start a real run instead")
    return record


def _claim(session: Session, run_id: str) -> None:
    """Under the lock: an unfinished run owns its runbook and environment until it
    passes, is rolled back or is abandoned; a new run meanwhile is refused."""
    plan = session.plan
    owner = session.store.owner_run(plan.runbook.name, plan.env)
    if owner is None or owner.run_id == run_id:
        return
    parent = (owner.params or {}).get("rollback_of")
    what = f"a rollback of run {parent}" if parent else "a run"
    # An unfinished rollback is continued by rolling its parent back again, never by --resume.
    resume = f"runbook rollback {parent}" if parent else session.command_line(resume=True)
    raise Refused(
        f"{what} of {plan.runbook.name} in {plan.env} is unfinished: run {owner.run_id} ({owner.status}, started by {owner.actor} "
        f"at {owner.started_at:%Y-%m-%d %H:%M:%S} UTC) owns the environment",
        hint=f"continue it: {resume}   or give up on it: runbook abandon {owner.run_id} --reason TEXT",
    )


def select_steps(session: Session, *, check: bool = True) -> list[PlannedStep]:
    opts, steps = session.options, session.plan.steps
    if opts.from_step:
        start = _index_of(session, opts.from_step, "--from")
        for earlier in steps[:start] if check else []:
            if not session.states.passed(earlier.id):
                note = session.steps.need_notes.get(earlier.id, f"it is {session.states.status(earlier.id) or 'not run'} in run {session.run_id}")
                raise Refused(f"--from {opts.from_step}: earlier step {earlier.id!r} has not passed: {note}", hint=f"run it first: {session.command_line()}")
        steps = steps[start:]
    if opts.only:
        for step_id in opts.only:
            _index_of(session, step_id, "--only")
        steps = [s for s in steps if s.id in opts.only]
    if opts.skip:
        steps = without_skipped(steps, opts.skip, lambda step_id: _index_of(session, step_id, "--skip"))
    return steps


def _index_of(session: Session, step_id: str, flag: str) -> int:
    ids = [p.id for p in session.plan.steps]
    if step_id in ids:
        return ids.index(step_id)
    close = difflib.get_close_matches(step_id, ids, n=1)
    raise UsageError(
        f"{flag} {step_id}: no such step" + (f"; did you mean {close[0]!r}?" if close else ""),
        hint=f"the steps of {session.plan.runbook.name}: {', '.join(ids)}",
    )
