"""The README's first command: the demo, in a copy of the project (its state,
application and database stay out of the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_shows_the_refusal_then_runs_the_whole_change(tmp_path: Path) -> None:
    for part in ("runbooks", "steps", "examples"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("var", "__pycache__", ".runbook"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ISP_"))}
    result = subprocess.run(
        [sys.executable, "examples/isp/demo.py", "--rows", "2000"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    refusal, full_run = out.index("--only deploy"), out.index("Now the whole change")
    assert refusal < full_run and "refused" in out[refusal:full_run] and '"version": "v1"' in out[refusal:full_run]
    assert "passed in" in out[full_run:] and "Next, try:" in out
    run_id = out.split("runbook show ")[1].split()[0]
    shown = subprocess.run([sys.executable, "-m", "runbook", "show", run_id], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
