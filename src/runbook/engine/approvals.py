"""Confirmations and approvals: who said yes to a step, and how.

A step that needs confirmation goes on when --yes or --approve STEP was
given, when ``runbook approve`` recorded an approval for this very definition
(same fingerprint), or when the operator answers yes at a terminal. With no
terminal the run pauses (exit 4) and keeps owning its environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runbook.engine.journal import Journal
from runbook.engine.outcome import Stop
from runbook.errors import ExitCode, Interrupted, Refused
from runbook.planner import PlannedStep
from runbook.status import EventName, RunStatus, StepStatus


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
    ) -> None:
        self.journal = journal
        self.yes = yes
        self.approve = approve
        self.prompt = prompt
        self.actor = actor
        self.resume_command = resume_command

    def confirm(self, planned: PlannedStep, *, question: str | None = None) -> None:
        """Returns when the step may go on; raises Stop when the answer is no or must wait."""
        store, run_id = self.journal.store, self.journal.run_id
        if self.yes or planned.id in self.approve:
            how = "--yes" if self.yes else f"--approve {planned.id}"
            store.record_approval(run_id, planned.id, by=self.actor, comment=how, fingerprint=planned.fingerprint)
            self.journal.emit(EventName.APPROVED, step=planned.id, by=self.actor, how=how)
            return
        approval = store.approval(run_id, planned.id)
        if approval is not None:
            if approval.fingerprint == planned.fingerprint:
                self.journal.emit(EventName.APPROVED, step=planned.id, by=approval.by, how="runbook approve", comment=approval.comment)
                return
            self.journal.notice(f"the approval of {planned.id!r} by {approval.by} is void: the step changed since")
        question = question or confirmation_text(planned)
        if self.prompt is not None:
            asked = time.monotonic()
            yes = self._ask(question, planned.id)
            # The operator's time at the question is not the change's: reports leave it out of "took".
            waited = round(time.monotonic() - asked, 3)
            if yes:
                store.record_approval(run_id, planned.id, by=self.actor, comment="interactive", fingerprint=planned.fingerprint)
                self.journal.emit(EventName.APPROVED, step=planned.id, by=self.actor, how="interactive", waited=waited)
                return
            self.journal.record_step(planned.id, StepStatus.REFUSED, planned.fingerprint, "the operator answered no")
            self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=StepStatus.REFUSED, reason="the operator answered no", waited=waited)
            raise Stop(RunStatus.REFUSED, ExitCode.REFUSED, step=planned.id, reason=f"run again and answer yes, or approve it: --approve {planned.id}")
        reason = "no terminal to ask; approve it to continue"
        self.journal.record_step(planned.id, StepStatus.AWAITING_APPROVAL, planned.fingerprint, reason)
        self.journal.emit(EventName.STEP_FINISHED, step=planned.id, status=StepStatus.AWAITING_APPROVAL, reason=reason)
        self.journal.emit(
            EventName.AWAITING_APPROVAL,
            step=planned.id,
            question=question,
            approve=f"runbook approve {run_id} {planned.id} --by NAME",
            resume=self.resume_command(),
        )
        raise Stop(RunStatus.AWAITING_APPROVAL, ExitCode.AWAITING_APPROVAL, step=planned.id)

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


def confirmation_text(planned: PlannedStep) -> str:
    lines = [f"Step {planned.id!r}: {planned.title}"]
    if planned.confirm:
        lines.append(planned.confirm.strip())
    lines.append("It will run:")
    lines += [f"    {line}" for line in planned.body.description.splitlines()]
    return "\n".join(lines)
