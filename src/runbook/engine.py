"""The engine: executes a plan in enforced order, journalling every transition.

Call tree of ``Engine.run``::

    run
    ├── _open_run            new run, or the one to resume; lock + heartbeat
    ├── _recover             steps left 'running' by a dead process -> interrupted
    ├── _verify_history      fingerprints unchanged, gates of passed steps still hold
    ├── _run_step (each)     needs -> when -> render -> preconditions -> confirm
    │   ├── _execute         attempts with retries: journal 'running' -> act -> record
    │   └── _gates           observed next to expected
    ├── _success_criteria
    └── _finish              run status, lock released, next command printed

Every transition is written to the state store *before* the engine acts on
it, so a SIGKILL at any instant leaves a store from which ``--resume``
continues: a step found 'running' is re-run, nothing that passed runs again.
Outcomes are values (``StepOutcome``, ``CheckResult``); only operator errors
are raised, and they carry their exit code.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.checks import CheckContext, CheckResult, get_check_kind
from runbook.connections import Connections, describe_db_error
from runbook.errors import ExitCode, Refused, RunbookError
from runbook.notify import Dispatcher, render_message
from runbook.planner import Plan, PlannedStep, RenderedBody, RenderedCheck, plan_step, template_context
from runbook.process import ProcessSupervisor
from runbook.reporting import Event
from runbook.state import StateStore
from runbook.steps import StepContext, StepOutcome, get_step_kind
from runbook.templating import Placeholder, TemplateFailed, evaluate, render_data

DONE = "passed"


@dataclass
class RunOptions:
    yes: bool = False
    approve: frozenset[str] = frozenset()
    dry_run: bool = False
    resume: bool = False
    resume_run_id: str | None = None
    from_step: str | None = None
    only: tuple[str, ...] = ()
    accept_changes: bool = False
    # Asks the operator a yes/no question; None when there is no terminal.
    prompt: Callable[[str], bool] | None = None
    actor: str = ""
    # --var values as given, recorded so that --resume, approve and rollback reuse them.
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    status: str
    exit_code: int


@dataclass
class _StepState:
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)


class _Stop(Exception):
    """Ends the run loop with a final status and exit code (not an operator error)."""

    def __init__(self, status: str, code: ExitCode) -> None:
        super().__init__(status)
        self.status = status
        self.code = code


class Engine:
    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        emit: Callable[[str, Event], None],
        options: RunOptions,
        workdir: Path,
    ) -> None:
        self.plan = plan
        self.store = store
        self._emit = emit
        self.options = options
        self.workdir = workdir
        self.masker = plan.resolved.masker
        self.runbook = plan.runbook
        self.env = plan.env
        self.run_id = ""
        self.states: dict[str, _StepState] = {}
        self.dry_run_problems: list[str] = []
        self.supervisor = ProcessSupervisor()
        self.connections = Connections(dict(self.runbook.connections), self.masker, self._render_text)
        self.process_env = dict(os.environ)
        self.logs_dir = workdir / ".runbook" / "logs"
        self.dispatcher = Dispatcher(
            self.masker,
            workdir,
            console=lambda title, body: self.emit("notification", title=title, body=body, record=False),
            warn=lambda message: self.emit("warning", message=message),
        )

    # ------------------------------------------------------------ events

    def emit(self, event_name: str, /, *, step: str | None = None, record: bool = True, **data: Any) -> None:
        """Journal the event (masked) in the store, then tell the reporters."""
        event = self.masker.mask_data({"run_id": self.run_id, **({"step": step} if step else {}), **data})
        assert isinstance(event, dict)
        if record and self.run_id:
            detail = {k: v for k, v in event.items() if k not in ("run_id", "step")}
            self.store.append_event(self.run_id, event_name, step_id=step, detail=detail)
        self._emit(event_name, event)

    def notice(self, message: str) -> None:
        self.emit("notice", message=message, record=False)

    # ------------------------------------------------------------ main loop

    def run(self) -> RunResult:
        self._open_run()
        started = time.monotonic()
        self.supervisor.install()
        heartbeat = None if self.options.dry_run else self.store.start_heartbeat(self.runbook.name, self.env, self.run_id)
        try:
            try:
                self._recover()
                self._verify_history()
                for planned in self._selected_steps():
                    if self.supervisor.stop_requested:
                        raise _Stop("interrupted", ExitCode.INTERRUPTED)
                    if heartbeat is not None and heartbeat.lost:
                        # The lock was broken (unlock --force) or taken over: another run may
                        # hold it now, so not one more step of this one.
                        assert heartbeat.error is not None
                        raise heartbeat.error
                    self._run_step(planned)
                self._success_criteria()
                status, code = ("passed", ExitCode.OK)
            except _Stop as stop:
                status, code = stop.status, stop.code
            except RunbookError as err:
                # Messages may quote rendered values; the CLI prints them after this.
                err.message = self.masker.mask(err.message)
                self.emit("error", message=str(err))
                status, code = ("refused" if err.exit_code == ExitCode.REFUSED else "failed"), err.exit_code
                self._finish(status, started)
                raise
            except Exception:
                # A bug must not leave the run looking alive; record it, then let the CLI report it.
                self._finish("failed", started)
                raise
            self._finish(status, started)
            return RunResult(self.run_id, status, int(code))
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            self.supervisor.uninstall()
            self.connections.dispose()
            if not self.options.dry_run:
                self.store.release_lock(self.runbook.name, self.env, self.run_id)

    # ------------------------------------------------------------ opening a run

    def _open_run(self) -> None:
        from runbook.state import new_run_id

        name, env, opts = self.runbook.name, self.env, self.options
        resumed = None
        if opts.resume:
            resumed = self.store.get_run(opts.resume_run_id) if opts.resume_run_id else self.store.latest_run(name, env, unfinished=True)
            if resumed is None:
                what = f"run {opts.resume_run_id}" if opts.resume_run_id else f"an unfinished run of {name} in {env}"
                raise Refused(f"--resume: there is no {what} to resume", hint=f"start one with: {self.command_line()}")
            if resumed.runbook != name or resumed.env != env:
                raise Refused(f"run {resumed.run_id} belongs to {resumed.runbook} in {resumed.env}, not {name} in {env}")
            if resumed.status == "passed":
                raise Refused(f"run {resumed.run_id} already passed; nothing to resume")
            if resumed.dry_run and not opts.dry_run:
                raise Refused(f"run {resumed.run_id} was a dry run; start a real run instead")
        # Refusals that need no state come first, so they leave no run and no lock behind.
        self._selected_steps(check=False)
        if resumed is None:
            self._confirm_protected_environment()
        run_id = resumed.run_id if resumed else new_run_id()
        if not opts.dry_run:
            self.store.acquire_lock(name, env, run_id)
        self.run_id = run_id
        if resumed is None:
            self.store.create_run(
                run_id=run_id,
                runbook=name,
                env=env,
                path=str(self.plan.loaded.path),
                fingerprint=self.runbook_fingerprint(),
                dry_run=opts.dry_run,
                actor=opts.actor,
                params=self._masked_vars(),
            )
        else:
            self.store.set_run_status(run_id, "running")
            for step_id, attempt in self.store.step_states(run_id).items():
                self.states[step_id] = _StepState(attempt.status, dict(attempt.outputs or {}))
        self.emit("run_started", runbook=name, env=env, dry_run=opts.dry_run, resumed=resumed is not None, actor=opts.actor, pid=os.getpid())
        if resumed is None:
            self._notify("start")
        if not resumed and (opts.from_step or opts.only):
            self._carry_from_latest()

    def _confirm_protected_environment(self) -> None:
        environment = self.runbook.environments.get(self.env)
        if environment is None or not environment.protected or self.options.dry_run or self.options.yes:
            return
        question = f"{self.env} is a protected environment. Run {self.runbook.name} against {self.env}?"
        if self.options.prompt is not None and self.options.prompt(question):
            self.emit("approved", step="environment", by=self.options.actor, how="interactive")
            return
        raise Refused(
            f"environment {self.env!r} is protected: confirm at a terminal or pass --yes",
            hint="--yes approves every confirmation of this run; use it only when you mean that",
        )

    def runbook_fingerprint(self) -> str:
        """The runbook's version: its definition as written, the same in every
        environment (so production can ask whether this version passed staging)."""
        import hashlib

        return hashlib.sha256(self.runbook.model_dump_json().encode()).hexdigest()[:16]

    def _masked_vars(self) -> dict[str, Any]:
        """What the run record keeps of its vars: values (secrets as ***) and the
        non-secret --var overrides; a secret must be given again to resume."""
        secret = self.plan.resolved.secret_vars
        values = {k: ("***" if k in secret and v is not None else v) for k, v in self.plan.resolved.vars.items()}
        overrides = {k: v for k, v in self.options.overrides.items() if k not in secret}
        masked = self.masker.mask_data({"vars": values, "overrides": overrides})
        assert isinstance(masked, dict)
        return masked

    def _carry_from_latest(self) -> None:
        """--from / --only: steps that passed in the latest real run count here too."""
        latest = self.store.latest_run(self.runbook.name, self.env, dry_run=False)
        if latest is None or latest.run_id == self.run_id:
            candidates = [r for r in self.store.list_runs(self.runbook.name, self.env, limit=2) if r.run_id != self.run_id and not r.dry_run]
            latest = candidates[0] if candidates else None
        if latest is None:
            return
        selected = {p.id for p in self._selected_steps(check=False)}
        for step_id, attempt in self.store.step_states(latest.run_id).items():
            if attempt.status != DONE or step_id not in self._ids() or step_id in selected:
                continue
            if attempt.fingerprint != self.plan.step(step_id).fingerprint:
                continue
            n = self.store.start_attempt(self.run_id, step_id, fingerprint=attempt.fingerprint)
            self.store.finish_attempt(self.run_id, step_id, n, status=DONE, outputs=attempt.outputs, error=f"carried over from run {latest.run_id}")
            self.states[step_id] = _StepState(DONE, dict(attempt.outputs or {}))
        self.notice(f"steps passed in run {latest.run_id} count for this run (their gates are re-checked)")

    def _ids(self) -> set[str]:
        return {s.id for s in self.plan.steps}

    # ------------------------------------------------------------ recovery and history

    def _recover(self) -> None:
        for step_id, state in list(self.states.items()):
            if state.status == "running":
                attempt = self.store.step_states(self.run_id)[step_id]
                self._stop_leftovers(step_id, attempt.attempt)
                self.store.mark_interrupted(self.run_id, step_id, attempt.attempt)
                state.status = "interrupted"
                self.emit("step_recovered", step=step_id, attempt=attempt.attempt, message=f"step {step_id!r} was interrupted (its process {attempt.pid} on {attempt.host} is gone); it will run again")
                self.notice(f"step {step_id!r} was interrupted (process {attempt.pid} is gone); re-running it")

    def _stop_leftovers(self, step_id: str, attempt: int) -> None:
        """A killed run's command leads its own session and outlives it; stop it before
        the step runs again, so two copies never run at once."""
        from runbook.process import stop_group

        for event in self.store.events(self.run_id):
            detail = event.detail or {}
            if event.event != "process_started" or event.step_id != step_id or detail.get("attempt") != attempt:
                continue
            if detail.get("host") != self.store.host:
                self.notice(f"step {step_id!r} ran on {detail.get('host')}; make sure its process group {detail.get('pgid')} is gone there")
            elif stop_group(int(detail["pgid"])):
                message = f"stopped process group {detail['pgid']} of step {step_id!r}, left running by the killed run"
                self.emit("leftover_stopped", step=step_id, pgid=detail["pgid"], message=message)
                self.notice(message)

    def _verify_history(self) -> None:
        passed = [p for p in self.plan.steps if self.states.get(p.id, _StepState("")).status == DONE]
        if not passed:
            return
        recorded = self.store.step_states(self.run_id)
        changed = [p for p in passed if recorded[p.id].fingerprint != p.fingerprint]
        if changed:
            names = ", ".join(p.id for p in changed)
            if not self.options.accept_changes:
                raise Refused(
                    f"the definition of passed step(s) {names} changed since they ran",
                    hint="review the change; --accept-changes re-runs the changed steps",
                )
            for p in changed:
                self.states[p.id].status = "changed"
                self.emit("step_changed", step=p.id, message="definition changed; it will run again (--accept-changes)")
        for planned in passed:
            if planned in changed or not planned.gates:
                continue
            rendered = self._render(planned)
            for check in rendered.gates:
                result = self._evaluate(check, planned.id, "gate (re-check)")
                if not result.ok:
                    raise Refused(
                        f"step {planned.id!r} passed earlier but its gate {check.label!r} no longer holds "
                        f"({result.shortfall})",
                        hint="find out what changed since; the run cannot safely go on",
                    )

    def _selected_steps(self, *, check: bool = True) -> list[PlannedStep]:
        steps = self.plan.steps
        if self.options.from_step:
            start = self._index_of(self.options.from_step, "--from")
            for earlier in steps[:start] if check else []:
                if self.states.get(earlier.id, _StepState("")).status != DONE:
                    raise Refused(
                        f"--from {self.options.from_step}: earlier step {earlier.id!r} has not passed in the latest run of {self.runbook.name} in {self.env}",
                        hint=f"run it first: {self.command_line()}",
                    )
            steps = steps[start:]
        if self.options.only:
            for step_id in self.options.only:
                self._index_of(step_id, "--only")
            steps = [s for s in steps if s.id in self.options.only]
        return steps

    def _index_of(self, step_id: str, flag: str) -> int:
        for i, planned in enumerate(self.plan.steps):
            if planned.id == step_id:
                return i
        import difflib

        close = difflib.get_close_matches(step_id, [s.id for s in self.plan.steps], n=1)
        raise RunbookError(f"{flag} {step_id}: no such step" + (f"; did you mean {close[0]!r}?" if close else ""))

    # ------------------------------------------------------------ one step

    def _run_step(self, planned: PlannedStep) -> None:
        step = planned.step
        state = self.states.get(step.id)
        if state is not None and state.status == DONE:
            self.emit("step_finished", step=step.id, status=DONE, reason="passed earlier", record=False)
            return
        self._check_needs(planned)
        context = self._context()
        if step.when:
            try:
                go = bool(evaluate(step.when, context, f"steps.{step.id}.when"))
            except TemplateFailed as err:
                raise RunbookError(str(err)) from err
            if not go:
                self._record(planned, "skipped", f"when: {step.when} is false")
                return
        rendered = self._render(planned)
        if not self._preconditions(rendered):
            return
        if rendered.needs_confirmation and not self._confirmed(rendered):
            return
        if self.options.dry_run:
            self._dry_run(rendered)
            return
        outcome = self._execute(rendered, rendered.body, kind="step")
        if outcome is None:
            return
        self._after_failure(rendered, outcome)

    def _check_needs(self, planned: PlannedStep) -> None:
        # In a dry run, a step that would have run stands in for one that passed.
        satisfied = (DONE, "dry_run") if self.options.dry_run else (DONE,)
        for need in planned.step.needs:
            state = self.states.get(need)
            if state is None or state.status not in satisfied:
                status = state.status if state else "not run"
                self._record(planned, "refused", f"needs {need!r} to have passed first; it is {status} in run {self.run_id}")
                raise _Stop("refused", ExitCode.REFUSED)

    def _record(self, planned: PlannedStep, status: str, reason: str) -> None:
        self.store.record_step(self.run_id, planned.id, status=status, fingerprint=planned.fingerprint, reason=self.masker.mask(reason))
        self.states[planned.id] = _StepState(status)
        self.emit("step_finished", step=planned.id, status=status, reason=reason)

    def _context(self, pending: str | None = None) -> dict[str, Any]:
        # A view, not a copy: copying every step's state here made each step O(steps), a run O(steps²).
        results = _StepResults(self.states, pending)
        return template_context(self.plan.loaded, self.plan.resolved, step_results=results, run_id=self.run_id, dry_run=self.options.dry_run)

    def _render(self, planned: PlannedStep) -> PlannedStep:
        try:
            rendered = plan_step(planned.step, planned.index, self._context(pending=planned.id), self.masker)
        except TemplateFailed as err:
            raise RunbookError(str(err)) from err
        if planned.fingerprint:
            # The definition's fingerprint is the plan's: rendered now, it would also hash
            # {{ run.id }}, which the plan shows as "<run id>", and --resume (comparing with
            # the plan) would call every step using it changed.
            rendered.fingerprint = planned.fingerprint
        return rendered

    def _render_text(self, text: str) -> str:
        from runbook.templating import render

        return render(text, self._context())

    # ------------------------------------------------------------ checks

    def _pause(self, seconds: float) -> None:
        _pause_step(seconds, lambda: self.supervisor.stop_requested)
        if self.supervisor.stop_requested:
            raise _Stop("interrupted", ExitCode.INTERRUPTED)

    def _check_context(self, timeout: float | None) -> CheckContext:
        return CheckContext(
            workdir=self.workdir,
            runbook_dir=self.plan.loaded.path.parent,
            env=self.process_env,
            masker=self.masker,
            connections=self.connections,
            timeout=timeout,
            state=self.store,
            runbook=self.runbook.name,
            fingerprint=self.runbook_fingerprint(),
        )

    def _evaluate(self, check: RenderedCheck, step_id: str, role: str, label: str | None = None) -> CheckResult:
        kind = get_check_kind(check.check.check)
        try:
            result = kind.evaluate(check.params, self._check_context(check.check.timeout))
        except RunbookError as err:
            result = CheckResult.errored(self.masker.mask(err.message))
        except Exception as err:  # a driver or network error is a failed check, not a crash
            result = CheckResult.errored(describe_db_error(err, self.masker))
        self.emit(
            "check",
            step=step_id,
            role=role,
            name=label or check.label,
            ok=result.ok,
            on_fail=check.check.on_fail,
            observed=result.observed,
            expected=result.expected,
            detail=result.detail,
            applicable=result.applicable,
            error=result.error,
        )
        return result

    def _preconditions(self, planned: PlannedStep) -> bool:
        for check in planned.preconditions:
            result = self._evaluate(check, planned.id, "precondition")
            if result.ok:
                continue
            why = f"precondition {check.label!r} failed: {result.shortfall}"
            mode = check.check.on_fail
            if mode == "warn":
                self.emit("warning", step=planned.id, message=why)
            elif self.options.dry_run:
                self.emit("warning", step=planned.id, message=f"would be refused: {why}")
            elif mode == "skip":
                self._record(planned, "skipped", why)
                return False
            else:
                self._record(planned, "refused", why)
                raise _Stop("refused", ExitCode.REFUSED)
        return True

    # ------------------------------------------------------------ confirmation

    def _confirmed(self, planned: PlannedStep) -> bool:
        opts = self.options
        if opts.dry_run:
            return True
        if opts.yes or planned.id in opts.approve:
            how = "--yes" if opts.yes else f"--approve {planned.id}"
            self.store.record_approval(self.run_id, planned.id, by=opts.actor, comment=how, fingerprint=planned.fingerprint)
            self.emit("approved", step=planned.id, by=opts.actor, how=how)
            return True
        approval = self.store.approval(self.run_id, planned.id)
        if approval is not None:
            if approval.fingerprint == planned.fingerprint:
                self.emit("approved", step=planned.id, by=approval.by, how="runbook approve", comment=approval.comment)
                return True
            self.notice(f"the approval of {planned.id!r} by {approval.by} is void: the step changed since")
        question = self._confirmation_text(planned)
        if opts.prompt is not None:
            if opts.prompt(self.masker.mask(question)):
                self.store.record_approval(self.run_id, planned.id, by=opts.actor, comment="interactive", fingerprint=planned.fingerprint)
                self.emit("approved", step=planned.id, by=opts.actor, how="interactive")
                return True
            self._record(planned, "refused", "the operator answered no")
            raise _Stop("refused", ExitCode.REFUSED)
        self._record(planned, "awaiting_approval", "no terminal to ask; approve it to continue")
        self.emit(
            "awaiting_approval",
            step=planned.id,
            question=question,
            approve=f"runbook approve {self.run_id} {planned.id} --by NAME",
            resume=self.command_line(resume=True),
        )
        raise _Stop("awaiting_approval", ExitCode.AWAITING_APPROVAL)

    def _confirmation_text(self, planned: PlannedStep) -> str:
        lines = [f"Step {planned.id!r}: {planned.title}"]
        if planned.confirm:
            lines.append(planned.confirm.strip())
        lines.append("It will run:")
        lines += [f"    {line}" for line in planned.body.description.splitlines()]
        return "\n".join(lines)

    # ------------------------------------------------------------ dry run

    def _dry_run(self, planned: PlannedStep) -> None:
        form = planned.dry_run
        if form == "safe" or isinstance(form, RenderedBody):
            body = form if isinstance(form, RenderedBody) else planned.body
            outcome = self._execute(planned, body, kind="dry_run")
            if outcome is not None:
                # A preview that cannot run yet (it reads what an earlier step would create)
                # is worth reporting, not worth stopping the rest of the preview for.
                self.states[planned.id] = _StepState("dry_run", outcome.outputs)
                self.dry_run_problems.append(planned.id)
                self.emit("warning", step=planned.id, message=f"could not be previewed: {outcome.error}")
            return
        self.store.record_step(self.run_id, planned.id, status="dry_run", fingerprint=planned.fingerprint, reason="would run")
        self.states[planned.id] = _StepState("dry_run")
        self.emit("would_run", step=planned.id, what=planned.body.description if form != "skip" else "(skipped in dry runs)")

    # ------------------------------------------------------------ execution

    def _execute(self, planned: PlannedStep, body: RenderedBody, *, kind: str) -> StepOutcome | None:
        """Attempts with retries. Returns None when the step passed, else the failing outcome."""
        step = planned.step
        kind_impl = get_step_kind(body.kind)
        delay = step.retries.delay
        attempts = step.retries.count + 1
        outcome = StepOutcome(False, error="not run")
        for try_no in range(1, attempts + 1):
            attempt = self.store.start_attempt(self.run_id, step.id, fingerprint=planned.fingerprint)
            started = time.monotonic()
            self.emit("step_started", step=step.id, title=planned.title, attempt=attempt, kind=body.kind, what=body.description)
            log_path = self.logs_dir / self.run_id / f"{step.id}.{attempt}.log"
            ctx = self._step_context(planned, body, attempt, log_path)
            try:
                outcome = kind_impl.run(body.params, ctx)
            except RunbookError as err:
                outcome = StepOutcome(False, error=self.masker.mask(err.message))
            except Exception as err:  # a kind's unexpected error is this step's failure, reported in one line
                outcome = StepOutcome(False, error=describe_db_error(err, self.masker))
            if outcome.interrupted or self.supervisor.stop_requested:
                self.store.finish_attempt(self.run_id, step.id, attempt, status="interrupted", error="interrupted by signal", log_path=str(log_path))
                self.states[step.id] = _StepState("interrupted")
                self.emit("step_finished", step=step.id, status="interrupted", duration=time.monotonic() - started)
                raise _Stop("interrupted", ExitCode.INTERRUPTED)
            checks: list[dict[str, Any]] = []
            if outcome.summary and "summary" not in outcome.outputs:
                # Later steps quote it (a confirmation shows the dry run's summary).
                outcome.outputs["summary"] = outcome.summary
            if outcome.ok:
                outcome = self._declared_outputs(planned, outcome)
            if outcome.ok:
                rendered_gates = self._render_gates(planned, outcome)
                for check in rendered_gates:
                    result = self._evaluate(check, step.id, "gate")
                    checks.append({"name": check.label, **result.as_dict()})
                    if not result.ok and kind == "dry_run":
                        # A dry-run form does not make the change its gates look for; say what they saw.
                        self.emit("warning", step=step.id, message=f"gate {check.label!r} would not hold yet (dry run): {result.shortfall}")
                    elif not result.ok and check.check.on_fail == "warn":
                        self.emit("warning", step=step.id, message=f"gate {check.label!r} failed (on_fail: warn): {result.shortfall}")
                    elif not result.ok:
                        outcome = StepOutcome(
                            False, outcome.outputs, f"gate {check.label!r} failed: {result.shortfall}", outcome.tail
                        )
                        break
            status = ("dry_run" if kind == "dry_run" else DONE) if outcome.ok else "failed"
            outputs = self.masker.mask_data(outcome.outputs)
            assert isinstance(outputs, dict)
            masked_checks = self.masker.mask_data(checks)
            assert isinstance(masked_checks, list)
            self.store.finish_attempt(
                self.run_id,
                step.id,
                attempt,
                status=status,
                outputs=outputs,
                error=self.masker.mask(outcome.error) if outcome.error else None,
                checks=masked_checks,
                log_path=str(log_path),
            )
            self.states[step.id] = _StepState(status, outputs)
            self.emit(
                "step_finished",
                step=step.id,
                status=status,
                attempt=attempt,
                duration=round(time.monotonic() - started, 3),
                reason=outcome.error,
                summary=outcome.summary,
            )
            if outcome.ok:
                return None
            if try_no < attempts:
                self.notice(f"retrying {step.id} in {delay:g}s (attempt {try_no + 1} of {attempts})")
                self._pause(delay)
                delay *= step.retries.backoff
        return outcome

    def _step_context(self, planned: PlannedStep, body: RenderedBody, attempt: int, log_path: Path) -> StepContext:
        step_id = planned.id
        log = _LogSink(log_path, self.workdir)
        log.open()

        def output(line: str) -> None:
            masked = self.masker.mask(line)
            log.write(masked)
            self.emit("output", step=step_id, line=masked, record=False)

        return StepContext(
            run_id=self.run_id,
            step_id=step_id,
            workdir=self.workdir,
            runbook_dir=self.plan.loaded.path.parent,
            env=self.process_env,
            masker=self.masker,
            connections=self.connections,
            output=output,
            checkpoints=_Checkpoints(self.store, self.run_id, step_id),
            attempt=attempt,
            timeout=body.timeout or planned.step.timeout,
            dry_run=self.options.dry_run,
            log_path=log_path,
            supervisor=self.supervisor,
            progress=lambda event: self.emit("progress", step=step_id, record=False, **event),
            on_process_start=lambda pgid: self.store.append_event(
                self.run_id, "process_started", step_id=step_id, detail={"pgid": pgid, "host": self.store.host, "attempt": attempt}
            ),
        )

    def _declared_outputs(self, planned: PlannedStep, outcome: StepOutcome) -> StepOutcome:
        if not planned.step.outputs:
            return outcome
        context = {**self._context(), "result": outcome.outputs}
        try:
            declared = render_data(dict(planned.step.outputs), context, f"steps.{planned.id}.outputs")
        except TemplateFailed as err:
            return StepOutcome(False, outcome.outputs, err.message, outcome.tail)
        return StepOutcome(True, {**outcome.outputs, **declared}, None, outcome.tail, outcome.summary)

    def _render_gates(self, planned: PlannedStep, outcome: StepOutcome) -> list[RenderedCheck]:
        # Gates may read this step's own outputs (steps.<id>.outputs.x).
        self.states[planned.id] = _StepState("running", outcome.outputs)
        try:
            return plan_step(planned.step, planned.index, self._context(), self.masker).gates
        except TemplateFailed as err:
            raise RunbookError(str(err)) from err

    def _after_failure(self, planned: PlannedStep, outcome: StepOutcome) -> None:
        text = "\n".join(outcome.tail) + "\n" + (outcome.error or "")
        hints = [{"pattern": p, "advice": a.strip()} for p, a in planned.step.hints.items() if _matches(p, text)]
        self.emit("failure_help", step=planned.id, tail=outcome.tail[-20:], hints=hints, error=outcome.error)
        if (planned.step.on_failure or self.runbook.on_failure) == "rollback" and not self.options.dry_run:
            self.notice("on_failure: rollback — undoing the failed step and the steps that passed, newest first")
            self.roll_back(failed_step=planned.id)
        raise _Stop("failed", ExitCode.STEP_FAILED)

    # ------------------------------------------------------------ rollback

    def rollback_run(self, *, to_step: str | None = None, option: str | None = None) -> RunResult:
        """``runbook rollback RUN``: undo a recorded run (or run a named rollback option)."""
        run = self.store.get_run(self.run_id)
        if run is None:
            raise RunbookError(f"no run {self.run_id!r} in the state store")
        if to_step is not None:
            self._index_of(to_step, "--to")
        if option is not None and option not in {o.id for o in self.runbook.rollback}:
            known = ", ".join(o.id for o in self.runbook.rollback) or "none"
            raise RunbookError(f"no rollback option {option!r}; the runbook has: {known}")
        self.store.acquire_lock(self.runbook.name, self.env, self.run_id)
        started = time.monotonic()
        self.supervisor.install()
        try:
            for step_id, attempt in self.store.step_states(self.run_id).items():
                self.states[step_id] = _StepState(attempt.status, dict(attempt.outputs or {}))
            self._recover()
            self.store.set_run_status(self.run_id, "running")
            self.emit("rollback_started", to=to_step, option=option)
            try:
                ok = self.run_option(option) if option else self.roll_back(to_step=to_step)
                status, code = ("rolled_back", ExitCode.OK) if ok else ("rollback_failed", ExitCode.STEP_FAILED)
            except _Stop as stop:
                status, code = stop.status, stop.code
            self._finish(status, started)
            return RunResult(self.run_id, status, int(code))
        finally:
            self.supervisor.uninstall()
            self.connections.dispose()
            self.store.release_lock(self.runbook.name, self.env, self.run_id)

    def roll_back(self, *, failed_step: str | None = None, to_step: str | None = None) -> bool:
        """Run the rollback of the failed step, then those of passed steps, newest first,
        stopping after ``to_step`` (which stays in place). False if one failed."""
        if to_step is not None:
            self._index_of(to_step, "--to")
        order = [p for p in reversed(self.plan.steps) if self.states.get(p.id, _StepState("")).status == DONE or p.id == failed_step]
        ok = True
        for planned in order:
            if planned.id == to_step:
                break
            rendered = self._render(planned)
            if rendered.rollback is None:
                why = "irreversible" if planned.step.irreversible else "no rollback declared"
                self.emit("rollback_skipped", step=planned.id, reason=why)
                continue
            if self._execute_rollback(rendered, rendered.rollback, planned.id) is not None:
                ok = False
                break
            self.store.record_step(self.run_id, planned.id, status="rolled_back", fingerprint=planned.fingerprint, reason="rolled back")
            self.states[planned.id] = _StepState("rolled_back")
        return ok

    def run_option(self, option_id: str) -> bool:
        """Run a named rollback option's steps in order (the seed's Option 1/2/3)."""
        options = {o.id: o for o in self.runbook.rollback}
        if option_id not in options:
            raise RunbookError(f"no rollback option {option_id!r}; the runbook has: {', '.join(options) or 'none'}")
        for i, step in enumerate(options[option_id].steps):
            # Recorded under "<option>.<step>" so they never mix with the run's own steps.
            step = step.model_copy(update={"id": f"{option_id}.{step.id}", "needs": [f"{option_id}.{n}" for n in step.needs]})
            planned = self._render(PlannedStep.placeholder(step, i))
            self._check_needs(planned)
            if step.when and not bool(evaluate(step.when, self._context(), f"{step.id}.when")):
                self._record(planned, "skipped", f"when: {step.when} is false")
                continue
            if not self._preconditions(planned):
                continue
            if planned.needs_confirmation and not self._confirmed(planned):
                return False
            if self._execute(planned, planned.body, kind="step") is not None:
                return False
        return True

    def _execute_rollback(self, planned: PlannedStep, body: RenderedBody, record_id: str) -> StepOutcome | None:
        attempt = self.store.start_attempt(self.run_id, record_id, fingerprint=planned.fingerprint, kind="rollback")
        started = time.monotonic()
        self.emit("rollback_step_started", step=record_id, title=body.title or planned.title, what=body.description)
        log_path = self.logs_dir / self.run_id / f"{record_id.replace('/', '.')}.rollback.{attempt}.log"
        try:
            outcome = get_step_kind(body.kind).run(body.params, self._step_context(planned, body, attempt, log_path))
        except RunbookError as err:
            outcome = StepOutcome(False, error=self.masker.mask(err.message))
        except Exception as err:
            outcome = StepOutcome(False, error=describe_db_error(err, self.masker))
        status = "rolled_back" if outcome.ok else "failed"
        self.store.finish_attempt(self.run_id, record_id, attempt, status=status, error=outcome.error, log_path=str(log_path))
        self.emit("step_finished", step=record_id, status=status, duration=round(time.monotonic() - started, 3), reason=outcome.error)
        if outcome.interrupted:
            raise _Stop("interrupted", ExitCode.INTERRUPTED)
        if not outcome.ok:
            self.emit("failure_help", step=record_id, tail=outcome.tail[-20:], hints=[], error=outcome.error)
            return outcome
        return None

    # ------------------------------------------------------------ the end

    def _success_criteria(self) -> None:
        failed = []
        for i, criterion in enumerate(self.runbook.success_criteria):
            if criterion.check is None:
                self.emit("criterion", description=criterion.description, ok=None)
                continue
            from runbook.planner import render_check

            try:
                check = render_check(criterion.check, self._context(), f"success_criteria[{i}]")
            except TemplateFailed as err:
                raise RunbookError(str(err)) from err
            result = self._evaluate(check, "success", "criterion", label=criterion.description)
            self.emit("criterion", description=criterion.description, ok=result.ok, observed=result.observed, error=result.error)
            if not result.ok:
                failed.append(criterion.description)
        if self.dry_run_problems:
            self.notice(f"dry run: {len(self.dry_run_problems)} step(s) could not be previewed: {', '.join(self.dry_run_problems)}")
        if failed and not self.options.dry_run:
            self.notice("success criteria not met: " + "; ".join(failed))
            raise _Stop("failed", ExitCode.STEP_FAILED)

    def _finish(self, status: str, started: float) -> None:
        self.store.set_run_status(self.run_id, status, finished=status in ("passed", "rolled_back", "rollback_failed") or self.options.dry_run)
        nxt: list[str] = []
        if status in ("failed", "interrupted", "refused", "awaiting_approval") and not self.options.dry_run:
            nxt.append(f"resume: {self.command_line(resume=True)}")
            if status == "failed":
                nxt.append(f"roll back: runbook rollback {self.run_id}")
        self.emit("run_finished", status=status, duration=round(time.monotonic() - started, 3), next=nxt)
        notification = {"passed": "success", "awaiting_approval": "awaiting_approval", "rolled_back": "rollback"}.get(status, "failure")
        self._notify(notification)
        self.dispatcher.drain()

    def _notify(self, event: str) -> None:
        """Send the runbook's message for ``event``; a notification problem is only a warning."""
        message = self.runbook.notifications.messages.get(event)  # type: ignore[call-overload]
        if message is None or self.options.dry_run:
            return
        try:
            title, body = render_message(message, self._render_text)
            channels = [
                c.model_copy(update={"path": self._render_text(c.path) if c.path else None, "url": self._render_text(c.url) if c.url else None})
                for c in self.runbook.notifications.channels
            ]
        except TemplateFailed as err:
            self.emit("warning", message=f"notification {event!r} not sent: {err}")
            return
        self.dispatcher.send(channels, title, body, event)
        self.emit("notified", notification=event, title=title, channels=[c.type for c in channels])

    def command_line(self, *, resume: bool = False) -> str:
        parts = ["runbook", "run", runbook_argument(self.plan.loaded.path)]
        if self.plan.env != "default":
            parts += ["--env", self.plan.env]
        if resume:
            parts.append("--resume")
        return shlex.join(parts)


def runbook_argument(path: Path) -> str:
    """How to name the runbook on a command line from here: its bare name when
    ./runbooks/ finds it, else its path."""
    try:
        if path.resolve() == (Path.cwd() / "runbooks" / path.name).resolve():
            return path.name
        return os.path.relpath(path)
    except (OSError, ValueError):
        return str(path)


def _pause_step(seconds: float, stop: Callable[[], bool]) -> None:
    """Sleep, waking early when a stop (SIGINT/SIGTERM) was requested."""
    deadline = time.monotonic() + seconds
    while not stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


def _matches(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text, re.I) is not None
    except re.error:
        return pattern.lower() in text.lower()


class _StepResults(Mapping[str, Any]):
    """``steps.<id>`` for templates: a read-only view of the engine's step states.

    The step being rendered (``pending``) shows as a placeholder until it has
    passed: before a step runs, its gates can only name its outputs, not read them.
    """

    def __init__(self, states: dict[str, _StepState], pending: str | None) -> None:
        self._states = states
        self._pending = pending if pending is not None and getattr(states.get(pending), "status", None) != DONE else None

    def __getitem__(self, key: str) -> Any:
        if key == self._pending:
            return Placeholder(f"steps.{key}")
        state = self._states[key]
        if state.status == "dry_run" and not state.outputs:
            # Only described in a dry run: its outputs do not exist, so they stay symbolic.
            return Placeholder(f"steps.{key}")
        return {"status": state.status, "outputs": state.outputs}

    def __iter__(self) -> Iterator[str]:
        yield from self._states
        if self._pending is not None and self._pending not in self._states:
            yield self._pending

    def __len__(self) -> int:
        return len(self._states) + (self._pending is not None and self._pending not in self._states)


class _Checkpoints:
    def __init__(self, store: StateStore, run_id: str, step_id: str) -> None:
        self.store, self.run_id, self.step_id = store, run_id, step_id

    def load(self) -> dict[str, Any] | None:
        return self.store.load_checkpoint(self.run_id, self.step_id)

    def save(self, data: dict[str, Any]) -> None:
        self.store.save_checkpoint(self.run_id, self.step_id, data)


class _LogSink:
    """Appends masked lines to one attempt's log file, 0600 in 0700 directories.

    Opened before the step runs, walking down from the working directory one
    level at a time with O_NOFOLLOW, so a planted symbolic link anywhere on the
    way (.runbook, logs, the run's directory, the file) refuses the step before
    its command starts instead of redirecting its output."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        self._fd: int | None = None

    def open(self) -> None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            parts = self.path.parent.relative_to(self.root).parts
        except ValueError:
            parts = ()
        directory = os.open(self.root if parts else self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts:
                try:
                    os.mkdir(part, 0o700, dir_fd=directory)
                except FileExistsError:
                    pass
                try:
                    child = os.open(part, flags, dir_fd=directory)
                except OSError as err:
                    where = self.root.joinpath(*parts[: parts.index(part) + 1])
                    raise Refused(f"refusing to write step logs through {where}: it is a symlink or not a directory; remove it") from err
                os.close(directory)
                directory = child
            try:
                self._fd = os.open(self.path.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600, dir_fd=directory)
            except OSError as err:
                raise Refused(f"refusing to write the step log {self.path}: it is a symlink or unwritable ({err.strerror}); remove it") from err
        finally:
            os.close(directory)

    def write(self, line: str) -> None:
        if self._fd is None:
            self.open()
        assert self._fd is not None
        os.write(self._fd, (line + "\n").encode("utf-8", "replace"))

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def stdin_prompt(question: str) -> bool:
    """Ask on the terminal; anything but y/yes is a no."""
    sys.stdout.write(question + "\nProceed? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


__all__ = ["Engine", "RunOptions", "RunResult", "stdin_prompt"]
