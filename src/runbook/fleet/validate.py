"""What the loader refuses about fleet keys (``on``, ``serial``, ``max_fail``, ``parallel``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from typing import TYPE_CHECKING

from runbook.model import Runbook
from runbook.yamlsource import KeyPath

if TYPE_CHECKING:
    from runbook.fleet.inventory import Host
    from runbook.planner import Plan

# Kinds that run on a host over ssh: a shell command and the checks that look at a host.
STEP_KINDS_ON_HOSTS = frozenset({"command"})
CHECK_KINDS_ON_HOSTS = frozenset({"command", "file_exists", "file_fresh"})


def fleet_problems(runbook: Runbook, step_path: Callable[[int], KeyPath]) -> Iterator[tuple[KeyPath, str]]:
    for i, step in enumerate(runbook.steps):
        path = step_path(i)
        if step.on is None:
            for key in ("serial", "parallel"):
                if getattr(step, key) is not None:
                    yield (*path, key), f"'{key}' belongs to a step that runs on hosts ('on:')"
            if _reads_host(step.model_dump(include={"title", "params", "rollback", "dry_run", "confirm", "outputs"})):
                yield path, "its templates read 'host', which only a step with 'on:' has (rendered once per host)"
        elif step.kind not in STEP_KINDS_ON_HOSTS:
            yield (*path, "on"), f"a {step.kind!r} step runs where runbook runs; only {', '.join(sorted(STEP_KINDS_ON_HOSTS))} steps run on hosts"
        if step.on is not None and step.rollback is not None and step.rollback.kind not in STEP_KINDS_ON_HOSTS:
            yield (*path, "rollback"), "the rollback of a step on hosts runs on those hosts: it must be a command"
        if step.concurrent:
            if step.kind not in STEP_KINDS_ON_HOSTS or step.confirm:
                yield (*path, "concurrent"), "only command steps without 'confirm' run side by side"
            partners = _concurrent_group(runbook, i)
            for need in step.needs:
                if need in partners:
                    yield (*path, "needs"), f"needs {need!r}, which runs at the same time (concurrent): give one of them concurrent: false"
        for role in ("preconditions", "gates"):
            for j, check in enumerate(getattr(step, role)):
                if check.on is not None and check.check not in CHECK_KINDS_ON_HOSTS:
                    yield (*path, role, j, "on"), f"a {check.check!r} check cannot run on hosts; these can: {', '.join(sorted(CHECK_KINDS_ON_HOSTS))}"
                if check.on is None and _reads_host(check.model_dump(include={"name", "params"})):
                    yield (*path, role, j), "its templates read 'host', which only a check with 'on:' has (rendered once per host)"


def _concurrent_group(runbook: Runbook, index: int) -> set[str]:
    """Ids of the adjacent concurrent steps around ``index`` (its group)."""
    steps = runbook.steps
    low = index
    while low > 0 and steps[low - 1].concurrent:
        low -= 1
    high = index
    while high + 1 < len(steps) and steps[high + 1].concurrent:
        high += 1
    return {s.id for s in steps[low : high + 1]}


def resolve_hosts(plan: Plan) -> dict[str, list[Host]]:
    """Step id -> the hosts its ``on:`` names in the plan's environment (raises InventoryError)."""
    from runbook.fleet.context import fleet_of

    fleet = fleet_of(plan)
    resolved = {}
    for planned in plan.steps:
        if planned.step.on is not None:
            resolved[planned.id] = fleet.hosts(planned.step.on, f"steps.{planned.id}.on")
            # Kept with the planned step for the plan's renderers (render/plan.py).
            planned.__dict__["_fleet_hosts"] = resolved[planned.id]
            if not resolved[planned.id]:
                from runbook.fleet.inventory import InventoryError

                raise InventoryError(f"steps.{planned.id}.on: {planned.step.on!r} names no host")
        for role in ("preconditions", "gates"):
            for rendered in getattr(planned, role):
                if rendered.check.on is not None:
                    hosts = fleet.hosts(rendered.check.on, f"steps.{planned.id}.{role}.on")
                    rendered.__dict__["_fleet_hosts"] = hosts
    return resolved


def _reads_host(data: object) -> bool:
    """Whether a template among ``data``'s strings reads the name ``host``."""
    from runbook.templating import TemplateFailed, analyze, is_template

    if isinstance(data, dict):
        return any(_reads_host(v) for v in data.values())
    if isinstance(data, list):
        return any(_reads_host(v) for v in data)
    if isinstance(data, str) and is_template(data):
        try:
            return any(ref.parts[0] == "host" for ref in analyze(data).references)
        except TemplateFailed:
            return False  # reported where templates are checked
    return False
