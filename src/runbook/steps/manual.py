"""``kind: manual`` - an instruction a person carries out and then confirms.

The engine asks for the confirmation (or pauses the run for ``runbook
approve``) before ``run`` is called, so reaching ``run`` means a named person
said it is done.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from runbook.steps.base import StepContext, StepOutcome


class ManualParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str = Field(min_length=1)


class ManualStep:
    name: ClassVar[str] = "manual"
    Params: ClassVar[type[BaseModel]] = ManualParams
    changes_data: ClassVar[bool] = False
    needs_confirmation: ClassVar[bool] = True

    def describe(self, params: ManualParams) -> str:
        return params.instruction.strip()

    def run(self, params: ManualParams, ctx: StepContext) -> StepOutcome:
        first_line = (params.instruction.strip().splitlines() or [""])[0]
        ctx.output(f"confirmed done: {first_line}")
        return StepOutcome(True)


KIND = ManualStep()
