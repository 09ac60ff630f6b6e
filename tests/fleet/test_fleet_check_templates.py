"""A check with ``on:`` renders its templates once per host, with ``host``."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.fleet.test_fleet_run import _cli, _runbook

pytestmark = pytest.mark.slow


def _checked_step(marker: str) -> str:
    return f"""  - id: deploy
    kind: command
    irreversible: true
    run: "true"
    preconditions:
      - check: command
        name: marker of {{{{ host.name }}}}
        on: all_hosts
        run: test -e "$RUNBOOK_HOST_DIR"/{{{{ host.name }}}}.{marker}
      - check: file_exists
        on: all_hosts
        path: "{{{{ host.vars.state }}}}/{{{{ host.name }}}}.{marker}"
"""


def test_a_check_on_hosts_sees_each_host(tmp_path: Path, fleet) -> None:
    marker = f"m{uuid.uuid4().hex[:8]}"
    hosts = "\n" + "".join(f"      {h.name}: {{vars: {{state: {h.state_dir}}}}}\n" for h in fleet.hosts)
    runbook = _runbook(tmp_path, fleet, _checked_step(marker), hosts=hosts)
    for host in fleet.hosts:
        (host.state_dir / f"{host.name}.{marker}").touch()
    try:
        passed = _cli(tmp_path, "run", str(runbook), "--yes")
        assert passed.returncode == 0, passed.stdout + passed.stderr
        # Another host's marker does not count: each host is asked about its own name.
        missing = fleet.hosts[2]
        (missing.state_dir / f"{missing.name}.{marker}").rename(fleet.hosts[0].state_dir / f"other.{marker}")
        refused = _cli(tmp_path, "run", str(runbook), "--yes")
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert f"on {missing.name}" in refused.stdout
    finally:
        for host in fleet.hosts:
            for path in host.state_dir.glob(f"*.{marker}"):
                path.unlink()


def test_a_check_without_on_may_not_read_host(tmp_path: Path, fleet) -> None:
    step = """  - id: deploy
    kind: command
    irreversible: true
    run: "true"
    preconditions:
      - check: command
        run: echo {{ host.name }}
"""
    result = _cli(tmp_path, "run", str(_runbook(tmp_path, fleet, step)), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "only a check with 'on:' has" in result.stdout + result.stderr
