"""One step, start to end: needs -> when -> render -> preconditions -> confirm ->
attempts -> gates -> outputs recorded.

``StepRunner`` is the only code that executes a step body: the main loop, named
rollback options and rollbacks all come here, so retries, masking, logs,
supervision and the journal are the same on every path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from runbook.connections import Connections, describe_db_error
from runbook.engine.approvals import Approvals
from runbook.engine.checks import CheckRunner
from runbook.engine.context import Renderer, StepState, StepStates
from runbook.engine.journal import Journal
from runbook.engine.outcome import Stop
from runbook.engine.steplog import AttemptLog, StoredLog
from runbook.safefile import AppendLog
from runbook.errors import ExitCode, RunbookError
from runbook.planner import PlannedStep, RenderedBody
from runbook.process import ProcessSupervisor
from runbook.status import EventName, RunStatus, StepStatus
from runbook.steps import StepContext, StepOutcome, get_step_kind
from runbook.steps.base import LiveControl
from runbook.templating import TemplateFailed, render_data

Mode = Literal["step", "dry_run", "rollback"]


class StepRunner:
    def __init__(
        self,
        *,
        journal: Journal,
        renderer: Renderer,
        checks: CheckRunner,
        approvals: Approvals,
        states: StepStates,
        supervisor: ProcessSupervisor,
        connections: Connections,
        workdir: Path,
        process_env: Mapping[str, str],
        log_root: Path | None = None,
        dry_run: bool,
        before_first_action: Callable[[], None] = lambda: None,
    ) -> None:
        self.journal = journal
        self.renderer = renderer
        self.checks = checks
        self.approvals = approvals
        self.states = states
        self.supervisor = supervisor
        self.connections = connections
        # Steps' relative paths resolve against workdir; the local logs live under log_root (default: workdir).
        self.workdir = workdir
        self.log_root = log_root or workdir
        self.logs_dir = self.log_root / ".runbook" / "logs"
        self.process_env = process_env
        self.dry_run = dry_run
        self.dry_run_problems: list[str] = []
        # Why a step that did not pass in this run did not count from an earlier one either.
        self.need_notes: dict[str, str] = {}
        self._before_first_action = before_first_action
        # Set by the session while it holds the lock (engine/control.py).
        self.control: LiveControl | None = None

    # ------------------------------------------------------------ the step

    def run(self, planned: PlannedStep, *, record_id: str | None = None) -> None:
        """Run one step of the plan; returns when it passed or was skipped, raises Stop otherwise."""
        step = planned.step
        if self.states.passed(planned.id):
            self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=StepStatus.PASSED, reason="passed earlier", record=False)
            return
        self.check_needs(planned)
        if step.when and not self.renderer.condition(step.when, f"steps.{step.id}.when"):
            self.record(planned, StepStatus.SKIPPED, f"when: {step.when} is false")
            return
        rendered = self.renderer.step(planned)
        if not self.preconditions(rendered):
            return
        # A policy the run pinned at its start holds even if the file no longer asks (approvals.py).
        if (rendered.needs_confirmation or self.approvals.policy(step) is not None) and not self.dry_run:
            self.approvals.confirm(rendered)
        if self.dry_run:
            self._dry_run(rendered)
            return
        outcome = self.execute(rendered, rendered.body, mode="step")
        if outcome is not None:
            self._failed(rendered, outcome)

    def check_needs(self, planned: PlannedStep) -> None:
        # In a dry run, a step that would have run stands in for one that passed.
        satisfied = (StepStatus.PASSED, StepStatus.DRY_RUN) if self.dry_run else (StepStatus.PASSED,)
        for need in planned.step.needs:
            status = self.states.status(need)
            if status not in satisfied:
                why = f"needs {need!r} to have passed first; it is {status or 'not run'} in run {self.journal.run_id}"
                if need in self.need_notes:
                    why += f", and it does not count from an earlier run: {self.need_notes[need]}"
                self.record(planned, StepStatus.REFUSED, why)
                raise Stop(RunStatus.REFUSED, ExitCode.REFUSED, step=planned.id, reason=f"run {need!r} first, or continue the run in which it passed")

    def record(self, planned: PlannedStep, status: StepStatus, reason: str) -> None:
        self.journal.record_step(planned.id, status, planned.fingerprint, reason)
        self.states[planned.id] = StepState(status)
        self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=status, reason=reason)

    def preconditions(self, planned: PlannedStep) -> bool:
        """True when the step may go on; False when a precondition skipped it."""
        for check in planned.preconditions:
            result = self.checks.evaluate(check, planned.id, "precondition")
            if result.ok:
                continue
            mode = check.check.on_fail
            if result.error is not None:
                # An error is not a false condition: skipping on it would hide an outage.
                why = f"precondition {check.label!r} could not be checked: {result.error}"
                if mode == "warn" or self.dry_run:
                    self.journal.warning(why, step=planned.id)
                    continue
                self.record(planned, StepStatus.FAILED, why)
                raise Stop(RunStatus.FAILED, ExitCode.STEP_FAILED, step=planned.id, reason=why)
            why = f"precondition {check.label!r} failed: observed {result.observed}, expected {result.expected}"
            if result.observed == "no file" and result.detail:
                why += f": {result.detail}"  # which path, resolved against what
            if mode == "warn":
                self.journal.warning(why, step=planned.id)
            elif self.dry_run:
                self.journal.warning(f"would be refused: {why}", step=planned.id)
            elif mode == "skip":
                self.record(planned, StepStatus.SKIPPED, why)
                return False
            else:
                self.record(planned, StepStatus.REFUSED, why)
                raise Stop(RunStatus.REFUSED, ExitCode.REFUSED, step=planned.id, reason=f"make {check.label!r} hold, then resume")
        return True

    def _dry_run(self, planned: PlannedStep) -> None:
        form = planned.dry_run
        if form == "safe" or isinstance(form, RenderedBody):
            body = form if isinstance(form, RenderedBody) else planned.body
            outcome = self.execute(planned, body, mode="dry_run")
            if outcome is not None:
                # A preview that cannot run yet (it reads what an earlier step would create)
                # is worth reporting, not worth stopping the rest of the preview for.
                self.states[planned.id] = StepState(StepStatus.DRY_RUN, outcome.outputs)
                self.dry_run_problems.append(planned.id)
                self.journal.warning(f"could not be previewed: {outcome.error}", step=planned.id)
            return
        self.journal.record_step(planned.id, StepStatus.DRY_RUN, planned.fingerprint, "would run")
        self.states[planned.id] = StepState(StepStatus.DRY_RUN)
        what = planned.body.description if form != "skip" else "(skipped in dry runs)"
        if planned.step.on is not None and form != "skip":
            from runbook.fleet.rollout import would_run_on_hosts

            what = would_run_on_hosts(self, planned)
        self.journal.emit(EventName.WOULD_RUN, step=planned.id, what=what)

    def _failed(self, planned: PlannedStep, outcome: StepOutcome) -> None:
        text = "\n".join(outcome.tail) + "\n" + (outcome.error or "")
        hints = [{"pattern": p, "advice": a.strip()} for p, a in planned.step.hints.items() if _matches(p, text)]
        self.journal.emit(EventName.FAILURE_HELP, step=planned.id, tail=outcome.tail[-20:], hints=hints, error=outcome.error)
        if outcome.refused:
            raise Stop(RunStatus.REFUSED, ExitCode.REFUSED, step=planned.id, reason=outcome.error)
        raise Stop(RunStatus.FAILED, ExitCode.STEP_FAILED, step=planned.id, reason=outcome.error)

    # ------------------------------------------------------------ attempts

    def execute(self, planned: PlannedStep, body: RenderedBody, *, mode: Mode, record_id: str | None = None) -> StepOutcome | None:
        """Attempts with retries. Returns None when the body passed, else the last failing outcome."""
        step_id = record_id or planned.id
        retries = planned.step.retries
        delay, attempts = retries.delay, retries.count + 1
        outcome = StepOutcome(False, error="not run")
        if mode != "dry_run":
            self._before_first_action()
        for try_no in range(1, attempts + 1):
            outcome = self._attempt(planned, body, mode, step_id)
            if outcome.ok:
                return None
            if outcome.refused or outcome.final:
                # Refused before it acted (a backfill's key has no index), or an answer that
                # will not change (an HTTP 4xx): retrying changes nothing.
                return outcome
            if try_no < attempts:
                self.journal.notice(f"retrying {step_id} in {delay:g}s (attempt {try_no + 1} of {attempts})")
                interruptible_sleep(self.supervisor, delay)
                delay *= retries.backoff
        return outcome

    def _attempt(self, planned: PlannedStep, body: RenderedBody, mode: Mode, step_id: str) -> StepOutcome:
        attempt = self.journal.start_attempt(step_id, planned.fingerprint, rollback=mode == "rollback")
        started = time.monotonic()
        title = f"rollback: {body.title or planned.title}" if mode == "rollback" else planned.title
        self.journal.emit(EventName.STEP_STARTED, step=step_id, title=title, attempt=attempt, kind=body.kind, what=body.description)
        log_path = self.logs_dir / self.journal.run_id / (f"{step_id}.rollback.{attempt}.log" if mode == "rollback" else f"{step_id}.{attempt}.log")
        checks: list[dict[str, Any]] = []
        log = self._attempt_log(step_id, attempt, log_path)
        try:
            ctx = self._step_context(planned, body, attempt, log, step_id)
        except RunbookError as err:
            # Refused before the body ran (a planted symlink in the log's path).
            self.journal.finish_attempt(step_id, attempt, StepStatus.FAILED, error=err.message)
            raise
        try:
            outcome = self._act(planned, body, ctx, mode)
            if mode != "rollback" and not (outcome.interrupted or self.supervisor.stop_requested):
                outcome = self._after_action(planned, outcome, mode, checks, attempt)
        except RunbookError as err:
            # The step acted; whatever fails now fails this attempt, and the run stays resumable.
            outcome = StepOutcome(False, error=err.message)
        except Stop as stop:
            # A gate's check saw the signal (CheckRunner); any other stop passes through.
            if stop.status != RunStatus.INTERRUPTED:
                log.close()
                raise
            outcome = StepOutcome(False, error="interrupted", interrupted=True)
        except BaseException as err:
            log.close()
            self.journal.finish_attempt(step_id, attempt, StepStatus.FAILED, error=f"internal error: {err!r}", log_path=str(log_path))
            raise
        # Every stored chunk is committed before the attempt's end is: `logs --follow` stops at that end.
        log.close()
        if outcome.interrupted or self.supervisor.stop_requested:
            # Whether the command, a gate or nothing in particular was running: the
            # attempt is interrupted and runs again on --resume.
            self.journal.finish_attempt(step_id, attempt, StepStatus.INTERRUPTED, error="interrupted by signal", log_path=str(log_path))
            self.states[step_id] = StepState(StepStatus.INTERRUPTED)
            self.journal.emit(EventName.STEP_FINISHED, step=step_id, status=StepStatus.INTERRUPTED, duration=round(time.monotonic() - started, 3))
            raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED, step=step_id)
        if outcome.ok:
            status = {"step": StepStatus.PASSED, "dry_run": StepStatus.DRY_RUN, "rollback": StepStatus.ROLLED_BACK}[mode]
        else:
            status = StepStatus.REFUSED if outcome.refused and mode == "step" else StepStatus.FAILED
        outputs = self.journal.finish_attempt(
            step_id, attempt, status, outputs=outcome.outputs, error=outcome.error, checks=checks, log_path=str(log_path)
        )
        if mode != "rollback":
            self.states[step_id] = StepState(status, outputs or {})
        self.journal.emit(
            EventName.STEP_FINISHED,
            step=step_id,
            status=status,
            attempt=attempt,
            duration=round(time.monotonic() - started, 3),
            reason=outcome.error,
            summary=outcome.summary,
        )
        return outcome

    def _act(self, planned: PlannedStep, body: RenderedBody, ctx: StepContext, mode: Mode) -> StepOutcome:
        try:
            if planned.step.on is not None:
                # On hosts over ssh (runbook.fleet): rendered and run once per host.
                from runbook.fleet.rollout import run_on_fleet

                return run_on_fleet(self, planned, ctx, mode)
            return get_step_kind(body.kind).run(body.params, ctx)
        except RunbookError as err:
            return StepOutcome(False, error=self.journal.masker.mask(err.message))
        except Exception as err:  # a kind's unexpected error is this step's failure, reported in one line
            return StepOutcome(False, error=describe_db_error(err, self.journal.masker))

    def _after_action(self, planned: PlannedStep, outcome: StepOutcome, mode: Mode, checks: list[dict[str, Any]], attempt: int) -> StepOutcome:
        """Declared outputs, then the gates, observed next to expected."""
        if outcome.summary and "summary" not in outcome.outputs:
            # Later steps quote it (a confirmation shows the dry run's summary).
            outcome.outputs["summary"] = outcome.summary
        if not outcome.ok:
            return outcome
        outcome = declared_outputs(self.renderer, planned, outcome)
        if not outcome.ok:
            return outcome
        for check in self.renderer.gates(planned, outcome.outputs):
            result = self.checks.evaluate(check, planned.id, "gate", attempt=attempt)
            checks.append({"name": check.label, **result.as_dict()})
            if result.ok:
                continue
            seen = f"error: {result.error}" if result.error else f"observed {result.observed}, expected {result.expected}"
            if mode == "dry_run":
                # A dry-run form does not make the change its gates look for; say what they saw.
                self.journal.warning(f"gate {check.label!r} would not hold yet (dry run): {seen}", step=planned.id)
            elif check.check.on_fail == "warn":
                self.journal.warning(f"gate {check.label!r} failed (on_fail: warn): {seen}", step=planned.id)
            else:
                return StepOutcome(False, outcome.outputs, f"gate {check.label!r} failed: {seen}", outcome.tail)
        return outcome

    def _attempt_log(self, step_id: str, attempt: int, log_path: Path) -> AttemptLog:
        stored = StoredLog(
            self.journal.store, self.journal.run_id, step_id, attempt, local_path=log_path, warn=lambda message: self.journal.warning(message, step=step_id)
        )
        return AttemptLog(AppendLog(log_path, self.log_root), stored)

    def _step_context(self, planned: PlannedStep, body: RenderedBody, attempt: int, log: AttemptLog, step_id: str) -> StepContext:
        log.local.open()
        masker = self.journal.masker
        timeout = body.timeout or planned.step.timeout

        def output(line: str) -> None:
            masked = masker.mask(line)
            log.write(masked)
            self.journal.emit(EventName.OUTPUT, step=step_id, line=masked, record=False)

        return StepContext(
            run_id=self.journal.run_id,
            step_id=step_id,
            workdir=self.workdir,
            env=self.process_env,
            masker=masker,
            connections=self.connections,
            output=output,
            checkpoints=self.journal.checkpoints(step_id),
            attempt=attempt,
            timeout=timeout,
            dry_run=self.dry_run,
            log_path=log.local.path,
            supervisor=self.supervisor,
            progress=lambda event: self.journal.emit(EventName.PROGRESS, step=step_id, record=False, **event),
            on_process_start=lambda pgid: self.journal.process_started(step_id, attempt, pgid, timeout),
            runbook_dir=self.renderer.plan.loaded.path.parent,
            control=self.control,
        )

def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text, re.I) is not None
    except re.error:
        return pattern.lower() in text.lower()


def declared_outputs(renderer: Renderer, planned: PlannedStep, outcome: StepOutcome) -> StepOutcome:
    """The step's ``outputs:`` rendered over what its kind returned (``result``)."""
    if not planned.step.outputs:
        return outcome
    context = renderer.context(result=outcome.outputs)
    try:
        declared = render_data(dict(planned.step.outputs), context, f"steps.{planned.id}.outputs")
    except TemplateFailed as err:
        return StepOutcome(False, outcome.outputs, err.message, outcome.tail)
    return StepOutcome(True, {**outcome.outputs, **declared}, None, outcome.tail, outcome.summary)


def interruptible_sleep(supervisor: ProcessSupervisor, seconds: float) -> None:
    """Sleep between attempts, waking early when a stop (a signal) was requested."""
    deadline = time.monotonic() + seconds
    while not supervisor.stop_requested and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
    if supervisor.stop_requested:
        raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED)
