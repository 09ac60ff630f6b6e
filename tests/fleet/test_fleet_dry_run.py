"""``--dry-run`` of a step with ``on:`` mirrors a local step's dry run, host by host."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.fleet.test_fleet_run import _cli, _count, _runbook, _step

pytestmark = pytest.mark.slow


def test_a_step_not_marked_safe_lists_what_each_host_would_run(tmp_path: Path, fleet) -> None:
    name = f"dry-{uuid.uuid4().hex[:8]}"
    result = _cli(tmp_path, "run", str(_runbook(tmp_path, fleet, _step(name))), "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {h.name: _count(h, name) for h in fleet.hosts} == {h.name: 0 for h in fleet.hosts}
    assert f"on {len(fleet.hosts)} host(s):" in result.stdout
    for host in fleet.hosts:
        assert f"{host.name}| echo ran" in result.stdout


def test_a_step_marked_safe_runs_on_every_host(tmp_path: Path, fleet) -> None:
    name = f"dry-{uuid.uuid4().hex[:8]}"
    result = _cli(tmp_path, "run", str(_runbook(tmp_path, fleet, _step(name, "    dry_run: safe\n"))), "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {h.name: _count(h, name) for h in fleet.hosts} == {h.name: 1 for h in fleet.hosts}


def test_a_dry_run_body_runs_on_every_host_instead(tmp_path: Path, fleet) -> None:
    name = f"dry-{uuid.uuid4().hex[:8]}"
    body = f'    dry_run:\n      kind: command\n      run: echo previewed >> "$RUNBOOK_HOST_DIR/{name}.preview"\n'
    result = _cli(tmp_path, "run", str(_runbook(tmp_path, fleet, _step(name, body))), "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {h.name: (_count(h, name), _count(h, f"{name}.preview")) for h in fleet.hosts} == {h.name: (0, 1) for h in fleet.hosts}
