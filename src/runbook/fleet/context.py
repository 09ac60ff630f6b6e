"""The fleet of a run: the environment's inventory and one ssh transport, made on first use."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.errors import RunbookError
from runbook.fleet.inventory import Host, Inventory, from_environment
from runbook.fleet.ssh import SshTransport, ssh_config_path

if TYPE_CHECKING:
    from runbook.loader import LoadedRunbook
    from runbook.model import Runbook
    from runbook.planner import Plan, PlannedStep


@dataclass
class Fleet:
    inventory: Inventory
    ssh_config: str | None
    _transport: SshTransport | None = None

    @property
    def transport(self) -> SshTransport:
        if self._transport is None:
            self._transport = SshTransport(self.ssh_config)
        return self._transport

    def hosts(self, on: str | list[str], where: str) -> list[Host]:
        return self.inventory.select(on, where)


def fleet_of(plan: Plan) -> Fleet:
    """The plan's fleet (read once per plan: its inventory file, its ssh config)."""
    cached = plan.__dict__.get("_fleet")
    if cached is None:
        cached = _fleet(plan.runbook, plan.env, plan.loaded.path.parent)
        plan.__dict__["_fleet"] = cached
    return cached


def _fleet(runbook: Runbook, env: str, base: Path) -> Fleet:
    environment = runbook.environments.get(env)
    if environment is None:
        return Fleet(Inventory(), ssh_config_path(None, base))
    inventory = from_environment(environment.hosts, environment.groups, environment.inventory, base)
    return Fleet(inventory, ssh_config_path(environment.ssh_config, base))


def connect_early(loaded: LoadedRunbook, env: str, skip: Collection[str]) -> SshTransport | None:
    """When a fresh run's first step runs on hosts, begin their master connections now, in
    the background, while the run prepares (imports, state store, lock, run record); that
    step's connect takes each over, its outcome (a failure too) being the step's. Only a
    connection: nothing runs on a host before its step does. None when there is nothing to
    begin (or the inventory is wrong, which the plan then reports)."""
    steps = [step for step in loaded.runbook.steps if step.id not in skip]
    if not steps or steps[0].on is None:
        return None
    try:
        fleet = _fleet(loaded.runbook, env, loaded.path.parent)
        hosts = fleet.hosts(steps[0].on, f"steps.{steps[0].id}.on")
    except RunbookError:
        return None
    fleet.transport.connect_early(hosts)
    return fleet.transport


def adopt(plan: Plan, transport: SshTransport) -> None:
    """The plan's fleet uses ``transport`` (begun by connect_early for the same environment)."""
    fleet = fleet_of(plan)
    if fleet._transport is None and fleet.ssh_config == transport.config:
        fleet._transport = transport
    else:
        transport.close()


def fleet_of_step(planned: PlannedStep) -> tuple[list[Host], str]:
    """The hosts resolved for a planned fleet step, and its rollout in words (", serial 2, ...")."""
    step = planned.step
    hosts: list[Host] = planned.__dict__.get("_fleet_hosts", [])
    parts = [f"{key} {value}" for key, value in (("serial", step.serial), ("parallel", step.parallel)) if value is not None]
    if step.max_fail:
        parts.append(f"max_fail {step.max_fail}")
    return hosts, "".join(f", {p}" for p in parts)
