"""Evaluating one rendered check and journalling what it observed.

A driver or network error is a failed check with the error as its detail,
never a crash; the check context is built once per run (hashing the runbook
for every check made each check cost O(runbook)). A check runs under the
run's process supervisor, like a step: a signal before or during it stops the
run as interrupted instead of passing a verdict on what it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from runbook.checks import CheckContext, CheckResult, get_check_kind
from runbook.connections import describe_db_error
from runbook.engine.journal import Journal
from runbook.engine.outcome import Stop
from runbook.errors import ExitCode, RunbookError
from runbook.planner import RenderedCheck
from runbook.status import EventName, RunStatus

if TYPE_CHECKING:
    from runbook.fleet.context import Fleet


class CheckRunner:
    def __init__(self, journal: Journal, context: CheckContext, fleet: Callable[[], Fleet] | None = None) -> None:
        self.journal = journal
        self.context = context
        # The run's hosts, for checks with ``on:`` (runbook.fleet).
        self.fleet = fleet

    def evaluate(self, check: RenderedCheck, step_id: str, role: str, label: str | None = None, *, attempt: int | None = None) -> CheckResult:
        """The check's result, journalled; raises Stop (interrupted) when a signal asked
        the run to stop. ``attempt``: the step attempt a gate belongs to, recorded with
        the process group of a command the check starts (so --resume stops it)."""
        self._stop_if_requested()
        kind = get_check_kind(check.check.check)

        def journal_process(pgid: int) -> None:
            # The check kind's own default applies when the check sets none; no deadline
            # is then recorded and a takeover from another host refuses rather than guess.
            self.journal.process_started(step_id, attempt, pgid, check.check.timeout)

        context = replace(self.context, timeout=check.check.timeout, on_process_start=journal_process)
        try:
            if check.check.on is not None and self.fleet is not None:
                from runbook.fleet.checks import evaluate_on_hosts

                result = evaluate_on_hosts(check, context, self.fleet())
            else:
                result = kind.evaluate(check.params, context)
        except RunbookError as err:
            result = CheckResult.errored(self.journal.masker.mask(err.message))
        except Exception as err:  # a driver or network error is a failed check, not a crash
            result = CheckResult.errored(describe_db_error(err, self.journal.masker))
        # What a check saw while the run was being stopped is no verdict (a command
        # check stopped half-way reads as failed): the run ends interrupted instead.
        self._stop_if_requested(result.interrupted)
        self.journal.emit(
            EventName.CHECK,
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

    def _stop_if_requested(self, interrupted: bool = False) -> None:
        supervisor = self.context.supervisor
        if interrupted or (supervisor is not None and supervisor.stop_requested):
            raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED)
