"""Evaluating one rendered check and journalling what it observed.

A driver or network error is a failed check with the error as its detail,
never a crash; the check context is built once per run (hashing the runbook
for every check made each check cost O(runbook)).
"""

from __future__ import annotations

from dataclasses import replace

from runbook.checks import CheckContext, CheckResult, get_check_kind
from runbook.connections import describe_db_error
from runbook.engine.journal import Journal
from runbook.errors import RunbookError
from runbook.planner import RenderedCheck
from runbook.status import EventName


class CheckRunner:
    def __init__(self, journal: Journal, context: CheckContext) -> None:
        self.journal = journal
        self.context = context

    def evaluate(self, check: RenderedCheck, step_id: str, role: str, label: str | None = None) -> CheckResult:
        kind = get_check_kind(check.check.check)
        try:
            result = kind.evaluate(check.params, replace(self.context, timeout=check.check.timeout))
        except RunbookError as err:
            result = CheckResult.errored(self.journal.masker.mask(err.message))
        except Exception as err:  # a driver or network error is a failed check, not a crash
            result = CheckResult.errored(describe_db_error(err, self.journal.masker))
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
