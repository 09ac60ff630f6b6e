"""The fleet of a run: the environment's inventory and one ssh transport, made on first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runbook.fleet.inventory import Host, Inventory, from_environment
from runbook.fleet.ssh import SshTransport, ssh_config_path

if TYPE_CHECKING:
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
        environment = plan.runbook.environments.get(plan.env)
        base = plan.loaded.path.parent
        if environment is None:
            cached = Fleet(Inventory(), ssh_config_path(None, base))
        else:
            inventory = from_environment(environment.hosts, environment.groups, environment.inventory, base)
            cached = Fleet(inventory, ssh_config_path(environment.ssh_config, base))
        plan.__dict__["_fleet"] = cached
    return cached


def fleet_of_step(planned: PlannedStep) -> tuple[list[Host], str]:
    """The hosts resolved for a planned fleet step, and its rollout in words (", serial 2, ...")."""
    step = planned.step
    hosts: list[Host] = planned.__dict__.get("_fleet_hosts", [])
    parts = [f"{key} {value}" for key, value in (("serial", step.serial), ("parallel", step.parallel)) if value is not None]
    if step.max_fail:
        parts.append(f"max_fail {step.max_fail}")
    return hosts, "".join(f", {p}" for p in parts)
