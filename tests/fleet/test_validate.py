"""What validate and plan refuse about fleet keys, before anything connects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BASE = """name: v
environments:
  prod:
    hosts: [db1, app1]
    groups: {app: [app1]}
steps:
"""


def _cli(tmp_path: Path, steps: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "v.yaml"
    path.write_text(BASE + steps)
    return subprocess.run([sys.executable, "-m", "runbook", *args, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("  - {id: a, kind: command, run: 'echo {{ host.name }}', irreversible: true}\n", "only a step with 'on:' has"),
        ("  - {id: a, kind: sql, on: app, connection: x, sql: select 1, irreversible: true}\n", "only command steps run on hosts"),
        ("  - {id: a, kind: command, serial: 2, run: 'true', irreversible: true}\n", "'serial' belongs to a step that runs on hosts"),
        ("  - {id: a, kind: command, run: 'true', irreversible: true, gates: [{check: sql_value, on: app, connection: x, query: select 1, expect: '== 1'}]}\n", "cannot run on hosts"),
    ],
)
def test_validate_refuses(tmp_path: Path, steps: str, message: str) -> None:
    result = _cli(tmp_path, steps, "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout + result.stderr


def test_plan_refuses_an_unknown_host_and_lists_resolved_hosts(tmp_path: Path) -> None:
    bad = _cli(tmp_path, "  - {id: a, kind: command, on: web, run: 'true', irreversible: true}\n", "plan", "--env", "prod")
    assert bad.returncode == 2
    assert "'web' is neither a host nor a group of the inventory (known: app, app1, db1)" in bad.stderr
    good = _cli(
        tmp_path,
        "  - {id: a, kind: command, on: [app, db1], serial: 1, run: 'echo {{ host.name }}', irreversible: true,"
        " preconditions: [{check: file_exists, on: db1, path: /backups/x}]}\n",
        "plan", "--env", "prod",
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "on: db1, app1 (2 hosts, serial 1)" in good.stdout
    assert "echo <host.name>" in good.stdout
    assert "a file matches /backups/x (on db1)" in good.stdout
