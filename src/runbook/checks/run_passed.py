"""``check: run_passed`` - this runbook already passed in another environment
(staging before production), optionally recently and for this very version.

"This version" is the runbook fingerprint the engine computes, so a runbook
edited after its staging run has to pass staging again. Dry runs never count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from runbook.checks.base import CheckContext, CheckResult
from runbook.model import Duration, format_duration

if TYPE_CHECKING:
    from runbook.state import RunRecord

# How far back the history is read; older passes do not vouch for today's run.
HISTORY_LIMIT = 50


class RunPassedParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str
    within: Duration | None = None
    same_version: bool = True


def _expected(params: RunPassedParams) -> str:
    text = f"a passed run in {params.env}"
    if params.same_version:
        text += " of this version"
    if params.within is not None:
        text += f" within {format_duration(params.within)}"
    return text


def _age(run: RunRecord, now: datetime) -> float:
    return max(0.0, (now - (run.finished_at or run.started_at)).total_seconds())


class RunPassedCheck:
    name: ClassVar[str] = "run_passed"
    Params: ClassVar[type[BaseModel]] = RunPassedParams
    read_only: ClassVar[bool] = True

    def describe(self, params: RunPassedParams) -> str:
        return _expected(params)

    def evaluate(self, params: RunPassedParams, ctx: CheckContext) -> CheckResult:
        expected = _expected(params)
        if ctx.state is None or ctx.runbook is None:
            why = "run_passed reads past runs from the state store, and none is open"
            return CheckResult(False, "no run history", expected, why)
        history = ctx.state.list_runs(ctx.runbook, params.env, limit=HISTORY_LIMIT)
        passed = [r for r in history if r.status == "passed" and not r.dry_run]
        if not passed:
            return CheckResult(False, f"no passed run in {params.env}", expected)
        candidates = passed
        if params.same_version:
            if ctx.fingerprint is None:
                return CheckResult(False, "no version", expected, "this run has no runbook fingerprint to compare")
            candidates = [r for r in passed if r.fingerprint == ctx.fingerprint]
            if not candidates:
                latest = passed[0]
                return CheckResult(
                    False,
                    "passed runs are of other versions",
                    expected,
                    f"latest passed run {latest.run_id} has fingerprint {latest.fingerprint[:12]}, "
                    f"this version is {ctx.fingerprint[:12]}",
                )
        newest = candidates[0]
        seconds = _age(newest, datetime.now(UTC))
        age = format_duration(seconds)
        if params.within is not None and seconds > params.within:
            return CheckResult(False, f"last passed {age} ago (run {newest.run_id})", expected)
        return CheckResult(True, f"run {newest.run_id} passed {age} ago", expected)


KIND = RunPassedCheck()
