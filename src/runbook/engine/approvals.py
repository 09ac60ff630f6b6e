"""Confirmations and approvals: who said yes to a step, and how.

A step that needs confirmation goes on when its approvals are in
(approval_policy.py: one by anyone, or what its ``approval:`` policy
requires), for this very definition (same fingerprint). The operator's own
``--yes``, ``--approve STEP`` or answer at a terminal counts as one approval
by the OS user running the run, when the policy lets that user approve.
Otherwise, at a terminal or with ``--wait``, the run polls the store until
the approvals arrive (``runbook approve`` from any machine), a rejection
ends it (``runbook reject``: failed, exit 1) or ``--wait-timeout`` passes;
with neither, it stops awaiting approval (exit 4) and keeps owning its
environment. A step without a policy at a terminal is asked, as before.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from runbook import approval_policy
from runbook.approval_policy import Standing
from runbook.engine.journal import Journal
from runbook.engine.outcome import Stop
from runbook.errors import ExitCode, Interrupted, Refused
from runbook.identity import Identity
from runbook.model import ApprovalPolicy, ApprovalSettings, Runbook, Step
from runbook.planner import PlannedStep
from runbook.process import ProcessSupervisor
from runbook.state import StateStore
from runbook.status import EventName, RunStatus, StepStatus

# How often a waiting run reads the store for approvals.
POLL_SECONDS = 1.0


class Approvals:
    def __init__(
        self,
        journal: Journal,
        *,
        yes: bool,
        approve: frozenset[str],
        prompt: Callable[[str], bool] | None,
        actor: str,
        resume_command: Callable[[], str],
        identity: Identity,
        runbook: Runbook,
        env: str,
        supervisor: ProcessSupervisor,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> None:
        self.journal = journal
        self.yes = yes
        self.approve = approve
        self.prompt = prompt
        self.actor = actor
        self.resume_command = resume_command
        self.identity = identity
        self.runbook = runbook
        self.env = env
        self.supervisor = supervisor
        self.wait = wait
        self.wait_timeout = wait_timeout
        self._told_stale: set[str] = set()
        self._pinned: Any = None
        self._pinned_for: str | None = None

    def _recorded(self) -> Any:
        """The policies the run pinned at its start (run.py), read once per run."""
        run_id = self.journal.run_id
        if self._pinned_for != run_id:
            record = self.journal.store.get_run(run_id)
            self._pinned, self._pinned_for = ((record.params or {}).get("approval") if record is not None else None), run_id
        return self._pinned

    @property
    def settings(self) -> ApprovalSettings:
        pinned = approval_policy.from_pinned(self._recorded(), "")
        return pinned[1] if pinned is not None else self.runbook.approvals

    def policy(self, step: Step) -> ApprovalPolicy | None:
        """The step's policy as the run pinned it at its start; the file's for a run from before pinning."""
        pinned = approval_policy.from_pinned(self._recorded(), step.id)
        return pinned[0] if pinned is not None else approval_policy.policy_for(self.runbook, self.env, step)

    def confirm(self, planned: PlannedStep, *, question: str | None = None) -> None:
        """Returns when the step may go on; raises Stop when the answer is no, a rejection, or must wait."""
        policy = self.policy(planned.step)
        if self.yes or planned.id in self.approve:
            self._own_approval(planned, policy, "--yes" if self.yes else f"--approve {planned.id}")
        standing = self._standing(planned, policy)
        if standing.satisfied:
            return self._approved(planned, standing, "runbook approve")
        if standing.rejection is not None:
            self._rejected(planned, standing)
        question = question or confirmation_text(planned)
        if policy is None and self.prompt is not None:
            asked = time.monotonic()
            yes = self._ask(question, planned.id)
            # The operator's time at the question is not the change's: reports leave it out of "took".
            waited = round(time.monotonic() - asked, 3)
            if yes:
                self._record(planned, self.identity.user, "interactive")
                self.journal.emit(EventName.APPROVED, step=planned.id, by=str(self.identity), how="interactive", waited=waited)
                return
            self.journal.record_step(planned.id, StepStatus.REFUSED, planned.fingerprint, "the operator answered no")
            self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=StepStatus.REFUSED, reason="the operator answered no", waited=waited)
            raise Stop(RunStatus.REFUSED, ExitCode.REFUSED, step=planned.id, reason=f"run again and answer yes, or approve it: --approve {planned.id}")
        if self.prompt is not None or self.wait:
            asked = time.monotonic()
            standing = self._wait(planned, policy, standing)
            if standing.satisfied:
                return self._approved(planned, standing, "runbook approve", waited=round(time.monotonic() - asked, 3))
        reason = "no terminal to ask; approve it to continue" if standing.missing == 1 else f"{standing.missing} more approvals needed"
        self.journal.record_step(planned.id, StepStatus.AWAITING_APPROVAL, planned.fingerprint, reason)
        self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=StepStatus.AWAITING_APPROVAL, reason=reason)
        self.journal.emit(
            EventName.AWAITING_APPROVAL,
            step=planned.id,
            question=question,
            approve=f"runbook approve {self.journal.run_id} {planned.id}",
            resume=self.resume_command(),
        )
        raise Stop(RunStatus.AWAITING_APPROVAL, ExitCode.AWAITING_APPROVAL, step=planned.id)

    # ------------------------------------------------------------ the store's record

    def _standing(self, planned: PlannedStep, policy: ApprovalPolicy | None) -> Standing:
        decisions = self.journal.store.decisions(self.journal.run_id, planned.id)
        stale = [d for d in decisions if d.decision == approval_policy.APPROVED and d.fingerprint != planned.fingerprint]
        if stale and planned.id not in self._told_stale:
            self._told_stale.add(planned.id)
            names = ", ".join(sorted({d.by for d in stale}))
            self.journal.notice(f"the approval of {planned.id!r} by {names} is void: the step changed since")
        return approval_policy.standing(
            decisions, policy=policy, settings=self.settings, fingerprint=planned.fingerprint, starter=self.starter()
        )

    def starter(self) -> str | None:
        """The OS user who started the run (recorded at its start)."""
        return started_by(self.journal.store, self.journal.run_id)

    def _record(self, planned: PlannedStep, by: str, how: str) -> None:
        self.journal.store.record_approval(
            self.journal.run_id, planned.id, by=by, comment=how, fingerprint=planned.fingerprint, os_user=self.identity.user
        )

    def _own_approval(self, planned: PlannedStep, policy: ApprovalPolicy | None, how: str) -> None:
        why_not = approval_policy.refusal(policy, self.settings, self.identity.user, self.starter())
        if why_not is not None:
            self.journal.notice(f"{how} does not approve {planned.id!r}: {why_not}")
            return
        self._record(planned, self.identity.user, how)

    def _approved(self, planned: PlannedStep, standing: Standing, how: str, *, waited: float | None = None) -> None:
        # A wait for approvers is not the change's time: reports leave ``waited`` out of "took".
        extra: dict[str, Any] = {} if waited is None else {"waited": waited}
        self.journal.emit(EventName.APPROVED, step=planned.id, by=", ".join(standing.approved_by), how=how, **extra)

    def _rejected(self, planned: PlannedStep, standing: Standing) -> None:
        rejection = standing.rejection
        assert rejection is not None
        why = f"rejected by {rejection.by}: {rejection.comment}"
        self.journal.record_step(planned.id, StepStatus.REFUSED, planned.fingerprint, why)
        self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=StepStatus.REFUSED, reason=why)
        self.journal.notice(f"{planned.id!r} was {why}; the run resumes only after a new approval: runbook approve {self.journal.run_id} {planned.id}")
        # Failed, not refused: a refusal before anything acted would end the run for good.
        raise Stop(RunStatus.FAILED, ExitCode.STEP_FAILED, reason=why)

    # ------------------------------------------------------------ waiting and asking

    def _wait(self, planned: PlannedStep, policy: ApprovalPolicy | None, standing: Standing) -> Standing:
        """Poll the store until the approvals are in, a rejection, a stop, or the wait's timeout."""
        run_id = self.journal.run_id
        allowed = approval_policy.approvers(policy, self.settings) if policy is not None else None
        who = f" from {', '.join(sorted(allowed))}" if allowed else ""
        not_starter = f" (not {self.starter()}, who started the run)" if policy is not None and policy.not_by else ""
        self.journal.notice(
            f"waiting for {standing.missing} approval(s) of {planned.id!r}{who}{not_starter}, from any machine sharing the state store: "
            f"runbook approve {run_id} {planned.id}   (or: runbook reject {run_id} {planned.id} --reason TEXT)"
        )
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        seen = set(standing.approved_by)
        while True:
            if self.supervisor.stop_requested:
                raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED, step=planned.id)
            standing = self._standing(planned, policy)
            for name in standing.approved_by:
                if name not in seen:
                    seen.add(name)
                    self.journal.notice(f"{planned.id!r} approved by {name}" + (f"; {standing.missing} more needed" if standing.missing else ""))
            if standing.rejection is not None:
                self._rejected(planned, standing)
            if standing.satisfied or (deadline is not None and time.monotonic() >= deadline):
                return standing
            wake = self.supervisor.wake_fd
            if wake is not None:
                select.select([wake], [], [], POLL_SECONDS)
            else:
                time.sleep(POLL_SECONDS)

    def _ask(self, question: str, step_id: str) -> bool:
        assert self.prompt is not None
        try:
            return self.prompt(self.journal.masker.mask(question))
        except Interrupted:
            # A signal while the operator reads: no answer, and the step has not started,
            # so --resume asks again.
            raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED, step=step_id) from None

    def confirm_environment(self, env: str, runbook: str, *, protected: bool) -> None:
        """A protected environment asks once, before a new run takes it."""
        if not protected or self.yes:
            return
        question = f"{env} is a protected environment. Run {runbook} against {env}?"
        if self.prompt is not None and self.prompt(question):
            self.journal.emit(EventName.APPROVED, step="environment", by=self.actor, how="interactive")
            return
        raise Refused(
            f"environment {env!r} is protected: confirm at a terminal or pass --yes",
            hint="--yes approves every confirmation of this run; use it only when you mean that",
        )


def started_by(store: StateStore, run_id: str) -> str | None:
    """The OS user recorded as the run's starter; for a run recorded before that, its actor's user."""
    record = store.get_run(run_id)
    if record is None:
        return None
    starter = (record.params or {}).get("starter")
    if isinstance(starter, dict) and isinstance(starter.get("user"), str):
        return str(starter["user"])
    return record.actor.split("@", 1)[0]


def refuse_rejected(store: StateStore, run_id: str, *, approving: frozenset[str] | None) -> None:
    """Before a resume takes the lock: a step whose latest decision is a rejection needs a
    new approval first. ``approving``: the steps this very command approves (--approve);
    None when it approves every step (--yes)."""
    if approving is None:
        return
    latest = {record.step_id: record for record in store.approvals(run_id)}
    for step_id, record in latest.items():
        if record.decision == approval_policy.REJECTED and step_id not in approving:
            raise Refused(
                f"step {step_id!r} of run {run_id} was rejected by {record.by} at {record.at:%Y-%m-%d %H:%M:%S} UTC: {record.comment}",
                hint=f"it resumes only after a new approval: runbook approve {run_id} {step_id}",
            )


def confirmation_text(planned: PlannedStep) -> str:
    lines = [f"Step {planned.id!r}: {planned.title}"]
    if planned.confirm:
        lines.append(planned.confirm.strip())
    lines.append("It will run:")
    lines += [f"    {line}" for line in planned.body.description.splitlines()]
    return "\n".join(lines)
