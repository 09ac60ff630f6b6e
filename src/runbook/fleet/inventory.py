"""Hosts and groups of an environment, and which of them a step's ``on:`` names.

An environment lists its hosts inline (``hosts:`` and ``groups:``) or points
at an inventory file (``inventory: FILE``, relative to the runbook) in
Ansible's INI or YAML format, so a team's existing inventory works as it is.
``ansible_host``, ``ansible_port`` and ``ansible_user`` become the host's
address, port and user; every other variable is one of the host's ``vars``
(a group's vars first, the host's own over them).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.errors import RunbookError

ALL = "all"
_RANGE = re.compile(r"\[(\d+):(\d+)\]")


class InventoryError(RunbookError):
    """An inventory that cannot be read, or an ``on:`` naming no known host or group."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    def template_value(self) -> dict[str, Any]:
        """``host`` in templates: its name, the address ssh connects to, its vars."""
        return {"name": self.name, "address": self.address or self.name, "port": self.port, "user": self.user, "vars": dict(self.vars)}


@dataclass
class Inventory:
    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.hosts)

    def select(self, on: str | list[str], where: str = "on") -> list[Host]:
        """The hosts ``on`` names (group or host names), in inventory order, each once."""
        names = [on] if isinstance(on, str) else list(on)
        chosen: set[str] = set()
        for name in names:
            chosen.update(self._expand(name, where, ()))
        return [host for host_name, host in self.hosts.items() if host_name in chosen]

    def _expand(self, name: str, where: str, seen: tuple[str, ...]) -> Iterable[str]:
        if name == ALL and ALL not in self.groups:
            return list(self.hosts)
        if name in self.groups:
            if name in seen:
                raise InventoryError(f"{where}: group {name!r} contains itself ({' -> '.join((*seen, name))})")
            members: list[str] = []
            for member in self.groups[name]:
                members.extend(self._expand(member, where, (*seen, name)))
            return members
        if name in self.hosts:
            return [name]
        known = ", ".join(sorted(self.groups) + sorted(self.hosts)) or "none: the environment has no hosts"
        raise InventoryError(f"{where}: {name!r} is neither a host nor a group of the inventory (known: {known})")


def from_environment(hosts: Mapping[str, Any] | list[str], groups: Mapping[str, list[str]], inventory: str | None, base: Path) -> Inventory:
    """The environment's inventory: its file when it names one, then its inline hosts and groups."""
    found = read_inventory_file(base / inventory) if inventory else Inventory()
    items = {name: None for name in hosts} if isinstance(hosts, list) else dict(hosts)
    for name, spec in items.items():
        found.hosts[name] = _host(name, spec or {}, {})
    for group, members in groups.items():
        found.groups.setdefault(group, [])
        found.groups[group] += [m for m in members if m not in found.groups[group]]
    for group, members in found.groups.items():
        for member in members:
            if member not in found.hosts and member not in found.groups:
                raise InventoryError(f"groups.{group}: {member!r} is neither a host nor a group")
    return found


def _host(name: str, spec: Mapping[str, Any], group_vars: Mapping[str, Any]) -> Host:
    values = {**group_vars, **spec}
    address = values.pop("address", None) or values.pop("ansible_host", None)
    port = values.pop("port", None) or values.pop("ansible_port", None)
    user = values.pop("user", None) or values.pop("ansible_user", None)
    own_vars = values.pop("vars", None) or {}
    if not isinstance(own_vars, Mapping):
        raise InventoryError(f"hosts.{name}.vars: expected a mapping")
    try:
        port_number = int(port) if port is not None else None
    except (TypeError, ValueError):
        raise InventoryError(f"hosts.{name}: port {port!r} is not a number") from None
    return Host(name, str(address) if address else None, port_number, str(user) if user else None, {**values, **own_vars})


def read_inventory_file(path: Path) -> Inventory:
    try:
        text = path.read_text()
    except OSError as err:
        raise InventoryError(f"inventory {path}: {err.strerror or err}") from None
    if path.suffix in (".yaml", ".yml") or text.lstrip().startswith(("all:", "---")):
        return _from_yaml(text, path)
    return _from_ini(text, path)


# ---------------------------------------------------------------- Ansible INI


def _expand_range(pattern: str) -> list[str]:
    """``web[01:03]`` -> web01, web02, web03 (Ansible's numeric ranges)."""
    match = _RANGE.search(pattern)
    if not match:
        return [pattern]
    low, high = match.group(1), match.group(2)
    width = len(low) if low.startswith("0") else 0
    return [
        name
        for number in range(int(low), int(high) + 1)
        for name in _expand_range(pattern[: match.start()] + str(number).zfill(width) + pattern[match.end() :])
    ]


def _ini_value(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return int(text) if text.isdigit() else text


def _from_ini(text: str, path: Path) -> Inventory:
    host_specs: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}
    children: dict[str, list[str]] = {}
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InventoryError(f"{path}:{number}: unclosed section {line!r}")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryError(f"{path}:{number}: unknown section kind {kind!r}")
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise InventoryError(f"{path}:{number}: expected NAME=VALUE in [{section}:vars]")
            group_vars.setdefault(section, {})[key.strip()] = _ini_value(value)
        elif kind == "children":
            children.setdefault(section, []).append(line)
        else:
            try:
                # Ansible splits a host line like a shell: key="two words" is one value.
                name, *assignments = shlex.split(line, comments=True)
            except ValueError as err:
                raise InventoryError(f"{path}:{number}: {err}") from None
            spec: dict[str, Any] = {}
            for assignment in assignments:
                key, sep, value = assignment.partition("=")
                if not sep:
                    raise InventoryError(f"{path}:{number}: expected NAME=VALUE after the host name, got {assignment!r}")
                spec[key] = _ini_value(value)
            for host in _expand_range(name):
                host_specs.setdefault(host, {}).update(spec)
                members.setdefault(section, []).append(host)
    return _assemble(host_specs, members, children, group_vars)


def _assemble(host_specs: dict[str, dict[str, Any]], members: dict[str, list[str]], children: dict[str, list[str]], group_vars: dict[str, dict[str, Any]]) -> Inventory:
    inventory = Inventory()
    for group in set(members) | set(children):
        if group != "ungrouped" or group in children:
            inventory.groups[group] = members.get(group, []) + children.get(group, [])
    # A host's vars: "all" first, then each group it is in (parents before children), then its own.
    for name, spec in host_specs.items():
        merged: dict[str, Any] = dict(group_vars.get(ALL, {}))
        for group in _groups_of(name, inventory.groups):
            merged.update(group_vars.get(group, {}))
        inventory.hosts[name] = _host(name, spec, merged)
    return inventory


def _groups_of(host: str, groups: Mapping[str, list[str]]) -> list[str]:
    direct = [g for g, members in groups.items() if host in members]
    ordered: list[str] = []
    for group in direct:
        parents = [p for p, members in groups.items() if group in members]
        ordered += [p for p in parents if p not in ordered] + ([group] if group not in ordered else [])
    return ordered


# ---------------------------------------------------------------- Ansible YAML


def _from_yaml(text: str, path: Path) -> Inventory:
    from runbook.errors import InvalidRunbook
    from runbook.yamlsource import load_yaml

    try:
        data = load_yaml(text, str(path)).data
    except InvalidRunbook as err:
        raise InventoryError(f"inventory {path}: {err}") from None
    if not isinstance(data, Mapping):
        raise InventoryError(f"inventory {path}: expected a mapping of groups (all: ...)")
    host_specs: dict[str, dict[str, Any]] = {}
    members: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}

    def walk(group: str, body: Any) -> None:
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise InventoryError(f"inventory {path}: group {group!r} must be a mapping (hosts, vars, children)")
        for host, spec in (body.get("hosts") or {}).items():
            host_specs.setdefault(str(host), {}).update(spec or {})
            members.setdefault(group, []).append(str(host))
        group_vars.setdefault(group, {}).update(body.get("vars") or {})
        for child, child_body in (body.get("children") or {}).items():
            children.setdefault(group, []).append(str(child))
            walk(str(child), child_body)

    for group, body in data.items():
        walk(str(group), body)
    return _assemble(host_specs, members, children, group_vars)
