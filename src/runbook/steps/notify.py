"""``kind: notify`` - send a message (an announcement) to console, file or webhook channels."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from runbook.model import Channel
from runbook.steps.base import StepContext, StepOutcome


class NotifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1)
    subject: str | None = None
    channels: list[Channel] = [Channel(type="console")]


class NotifyStep:
    name: ClassVar[str] = "notify"
    Params: ClassVar[type[BaseModel]] = NotifyParams
    changes_data: ClassVar[bool] = False
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: NotifyParams) -> str:
        where = ", ".join(c.type for c in params.channels)
        first_line = (params.message.strip().splitlines() or [""])[0]
        return f"notify ({where}): {params.subject or first_line}"

    def run(self, params: NotifyParams, ctx: StepContext) -> StepOutcome:
        from runbook.notify import Dispatcher

        warnings: list[str] = []

        def console(title: str | None, body: str) -> None:
            for line in ([title] if title else []) + body.rstrip().splitlines():
                ctx.output(line)

        dispatcher = Dispatcher(ctx.masker, ctx.workdir, console, warnings.append, ctx.runbook_dir)
        dispatcher.send(params.channels, params.subject, params.message)
        dispatcher.drain()
        for warning in warnings:
            ctx.output(f"warning: {warning}")
        # A notification that did not arrive must not stop a deployment.
        return StepOutcome(True, {"delivered": not warnings, "warnings": warnings})


KIND = NotifyStep()
