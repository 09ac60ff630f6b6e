"""What the commands that touch no state import: `runbook plan` and `--help` load
neither the state store's SQLAlchemy nor the drivers, alembic, the live view's rich
or the JSON log's structlog (bench/startup_bench.py measures the time they save).

Each command runs in a fresh interpreter under ``python -X importtime``, which names
every module imported, however deep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "psycopg", "alembic", "rich", "structlog")


def imported(*args: str) -> set[str]:
    """The top-level packages ``runbook ARGS`` imports, run from the repository's root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "runbook", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert lines, "python -X importtime printed nothing"
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "subscriber-fk.yaml"],  # the demo runbook, found by bare name in ./runbooks/
        ["plan", "subscriber-fk.yaml", "--format", "json"],
        ["plan", "subscriber-fk-fleet.yaml", "--env", "fleet"],  # hosts and inventory resolved
        ["--help"],
    ],
    ids=" ".join,
)
def test_commands_that_touch_no_state_import_no_heavy_package(args: list[str]) -> None:
    modules = imported(*args)
    assert "runbook" in modules
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_plan_saved_to_a_file_imports_no_heavy_package(tmp_path: Path) -> None:
    """`plan -o FILE` writes the runbook's fingerprint and the var values' record:
    neither needs the engine's session or the state store (it did once, through
    `runbook.engine`'s package import, doubling the command's time)."""
    out = tmp_path / "plan.json"
    modules = imported("plan", "subscriber-fk.yaml", "-o", str(out))
    assert out.is_file()
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
