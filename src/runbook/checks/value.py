"""``check: value`` - compare a rendered value (usually a step output) with ``expect``.

Gates read what a step reported without running anything again, e.g.
``value: "{{ steps.billing.outputs.json.failed }}"`` with ``expect: "== 0"``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from runbook.checks.base import CheckContext, CheckResult
from runbook.expect import ExpectationText, literal, parse_expectation


class ValueParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Any
    expect: ExpectationText


class ValueCheck:
    name: ClassVar[str] = "value"
    Params: ClassVar[type[BaseModel]] = ValueParams
    read_only: ClassVar[bool] = True

    def describe(self, params: ValueParams) -> str:
        return f"{params.value} {parse_expectation(params.expect)}"

    def evaluate(self, params: ValueParams, ctx: CheckContext) -> CheckResult:
        expectation = parse_expectation(params.expect)
        # Templates render to text; "0" should compare as the number it was.
        observed = literal(params.value) if isinstance(params.value, str) else params.value
        return CheckResult(expectation.holds(observed), str(observed), str(expectation))


KIND = ValueCheck()
