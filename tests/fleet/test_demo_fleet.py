"""The fleet demo end to end: subscriber-fk-fleet.yaml on db1, app1 and app2 (real sshd hosts)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fleet_demo_runs_the_change_on_the_hosts(tmp_path: Path, fleet) -> None:
    for part in ("runbooks", "steps", "examples/isp", "examples/fleet"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("var", "__pycache__"))
    result = subprocess.run(
        [sys.executable, str(tmp_path / "examples" / "fleet" / "demo.py"), "--root", str(tmp_path), "--ssh-config", str(fleet.ssh_config), "--rows", "300"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "on: app1, app2 (2 hosts, parallel 2)" in out
    for host in ("db1", "app1", "app2"):
        assert f"{host}| passed" in out
    assert '"version": "v2"' in out
