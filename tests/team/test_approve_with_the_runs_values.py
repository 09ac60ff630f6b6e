"""``runbook approve`` plans the step with the run's own values, not the approver's.

Before: a run whose secret came from the starter's environment (or ``--var``) could
not be approved by anyone without that secret (exit 2, ``var 'tok' is required``,
with a hint to pass ``--var``, which ``approve`` does not take); and a var read from
the starter's OS environment was planned with the approver's, so the approval was
recorded for another fingerprint: ``approved``, and the resume paused again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

RUNBOOK = """\
name: a
vars:
  tok: {secret: true, env: TOK, required: true}
  target: {env: TARGET, default: staging-db}
steps:
  - id: deploy
    kind: command
    irreversible: true
    confirm: "Deploy?"
    run: ["echo", "deploying to {{ vars.target }} with {{ vars.tok }}"]
"""


def _runbook(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_") and k not in ("TOK", "TARGET")}
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_an_approver_without_the_starters_environment_approves_what_the_run_will_do(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "a.yaml").write_text(textwrap.dedent(RUNBOOK))
    starter = {"TOK": "s3cr3t-Value-77", "TARGET": "prod-db"}
    paused = _runbook(tmp_path, "run", "a", "--plain", env=starter)
    assert paused.returncode == 4, paused.stdout + paused.stderr
    (run,) = json.loads(_runbook(tmp_path, "history", "--format", "json").stdout)["runs"]
    approved = _runbook(tmp_path, "approve", run["id"], "deploy")  # neither TOK nor TARGET here
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "s3cr3t" not in approved.stdout + approved.stderr
    resumed = _runbook(tmp_path, "run", "a", "--resume", "--plain", env=starter)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "deploying to prod-db with ***" in resumed.stdout, resumed.stdout
