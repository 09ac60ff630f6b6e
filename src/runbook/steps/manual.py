"""``kind: manual`` - an instruction a person carries out and then confirms.

The engine asks for the confirmation (or pauses the run for ``runbook
approve``) before ``run`` is called, so reaching ``run`` means a named person
said it is done.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from runbook.steps.base import StepContext, StepOutcome


class ManualParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str


class ManualStep:
    name: ClassVar[str] = "manual"
    Params: ClassVar[type[BaseModel]] = ManualParams
    changes_data: ClassVar[bool] = False
    needs_confirmation: ClassVar[bool] = True

    def describe(self, params: ManualParams) -> str:
        return params.instruction.strip()

    def run(self, params: ManualParams, ctx: StepContext) -> StepOutcome:
        ctx.output(f"confirmed done: {params.instruction.strip().splitlines()[0]}")
        return StepOutcome(True)


KIND = ManualStep()
