"""What templates see while a run goes on, and rendering against it.

The engine renders each step just before it runs, against the outputs of the
steps that passed so far; ``StepStates`` holds those, ``Renderer`` turns a
step, its gates alone, a check or a text into rendered values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.errors import RunbookError
from runbook.model import Check
from runbook.planner import Plan, PlannedStep, RenderedCheck, plan_step, render_check, template_context
from runbook.status import StepStatus
from runbook.templating import Placeholder, TemplateFailed, evaluate, render


@dataclass
class StepState:
    status: StepStatus
    outputs: dict[str, Any] = field(default_factory=dict)


class StepStates(dict[str, StepState]):
    """Step id -> its latest state in this run."""

    def status(self, step_id: str) -> StepStatus | None:
        state = self.get(step_id)
        return state.status if state is not None else None

    def passed(self, step_id: str) -> bool:
        return self.status(step_id) == StepStatus.PASSED

    def described_only(self, step_id: str) -> bool:
        """A dry run only described the step: its outputs do not exist (templates see a placeholder)."""
        state = self.get(step_id)
        return state is not None and state.status == StepStatus.DRY_RUN and not state.outputs


class StepResultsView(Mapping[str, Any]):
    """``steps.<id>`` for templates: a read-only view of the step states.

    The step being rendered (``pending``) shows as a placeholder until it has
    passed: before a step runs, its gates can only name its outputs, not read them.
    """

    def __init__(self, states: StepStates, pending: str | None) -> None:
        self._states = states
        self._pending = pending if pending is not None and not states.passed(pending) else None

    def __getitem__(self, key: str) -> Any:
        if key == self._pending:
            return Placeholder(f"steps.{key}")
        state = self._states[key]
        if self._states.described_only(key):
            return Placeholder(f"steps.{key}")
        return {"status": str(state.status), "outputs": state.outputs}

    def __iter__(self) -> Iterator[str]:
        yield from self._states
        if self._pending is not None and self._pending not in self._states:
            yield self._pending

    def __len__(self) -> int:
        return len(self._states) + (self._pending is not None and self._pending not in self._states)


class Renderer:
    """Renders parts of the plan against the run's current values; template errors
    become operator errors (exit 2) naming where they are."""

    def __init__(self, plan: Plan, states: StepStates, *, dry_run: bool) -> None:
        self.plan = plan
        self.states = states
        self.dry_run = dry_run
        self.run_id = ""

    def context(self, pending: str | None = None, **extra: Any) -> dict[str, Any]:
        # A view, not a copy: copying every step's state here made each step O(steps), a run O(steps²).
        results = StepResultsView(self.states, pending)
        context = template_context(self.plan.loaded, self.plan.resolved, step_results=results, run_id=self.run_id, dry_run=self.dry_run)
        return {**context, **extra}

    def step(self, planned: PlannedStep) -> PlannedStep:
        try:
            # The plan's fingerprint: rendered now, {{ run.id }} would differ from the plan's
            # "<run id>" and --resume (comparing with the plan) would call the step changed.
            return plan_step(planned.step, planned.index, self.context(pending=planned.id), self.plan.resolved.masker, planned.fingerprint)
        except TemplateFailed as err:
            raise RunbookError(str(err)) from err

    def gates(self, planned: PlannedStep, outputs: Mapping[str, Any]) -> list[RenderedCheck]:
        """The step's gates alone, reading its own outputs (``steps.<id>.outputs.x``).

        Only the gates: a template error in the step's rollback or confirmation has
        nothing to do with whether the step's change holds."""
        # Recorded as running with its outputs until the attempt's status is known.
        self.states[planned.id] = StepState(StepStatus.RUNNING, dict(outputs))
        context = self.context()
        where = f"steps[{planned.index}] ({planned.id})"
        return [self.check(c, f"{where}.gates[{i}]", context) for i, c in enumerate(planned.step.gates)]

    def check(self, check: Check, where: str, context: Mapping[str, Any] | None = None) -> RenderedCheck:
        try:
            return render_check(check, self.context() if context is None else context, where, self.plan.resolved.masker)
        except TemplateFailed as err:
            raise RunbookError(str(err)) from err

    def text(self, text: str, where: str = "") -> str:
        return render(text, self.context(), where)

    def condition(self, expression: str, where: str) -> bool:
        try:
            return bool(evaluate(expression, self.context(), where))
        except TemplateFailed as err:
            raise RunbookError(str(err)) from err
