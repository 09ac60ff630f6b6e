"""Adjacent ``concurrent`` steps run at the same time and are joined before the next step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Each waits (up to 10 s) for the other to have started: run one after the other, the first fails.
WAIT_FOR = 'touch {me}.started; for i in $(seq 200); do [ -e {other}.started ] && break; sleep 0.05; done; [ -e {other}.started ] && [ ! -e {me}.fail ]'


def _runbook(tmp_path: Path, needs_partner: bool = False) -> Path:
    path = tmp_path / "side.yaml"
    path.write_text(
        f"""name: side
steps:
  - id: api
    kind: command
    concurrent: true
    run: '{WAIT_FOR.format(me="api", other="celery")}'
    irreversible: true
  - id: celery
    kind: command
    concurrent: true
    {"needs: api" if needs_partner else ""}
    run: '{WAIT_FOR.format(me="celery", other="api")}'
    irreversible: true
  - id: verify
    kind: command
    needs: [api, celery]
    run: echo joined >> verify.log
    irreversible: true
"""
    )
    return path


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbook", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_concurrent_steps_overlap_and_are_joined(tmp_path: Path) -> None:
    result = _cli(tmp_path, "run", str(_runbook(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "verify.log").read_text() == "joined\n"


@pytest.mark.slow
def test_a_failed_member_lets_the_other_finish_then_stops_and_resume_reruns_only_it(tmp_path: Path) -> None:
    runbook = _runbook(tmp_path)
    (tmp_path / "celery.fail").touch()
    first = _cli(tmp_path, "run", str(runbook))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "✔ [api] passed" in first.stdout and not (tmp_path / "verify.log").exists()
    (tmp_path / "celery.fail").unlink()
    resumed = _cli(tmp_path, "run", str(runbook), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "[api] passed: passed earlier" in resumed.stdout or "passed earlier" in resumed.stdout


def test_a_concurrent_step_may_not_need_its_partner(tmp_path: Path) -> None:
    result = _cli(tmp_path, "validate", str(_runbook(tmp_path, needs_partner=True)))
    assert result.returncode == 2
    assert "runs at the same time (concurrent)" in result.stdout + result.stderr
