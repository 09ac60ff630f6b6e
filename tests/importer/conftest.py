"""Helpers for the importer tests: the CLI in process, in a scratch working directory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner, Result

from runbook.cli import main

ROOT = Path(__file__).resolve().parents[2]
CHECKLISTS = Path(__file__).resolve().parent / "checklists"
# The imported runbooks that run SQL read their database URL from DATABASE_URL.
PLAN_ENV = {"DATABASE_URL": "sqlite:///plan.db"}
SEED = ROOT / "examples" / "checklists" / "deployment-checklist-subscriber-fk.md"


@dataclass
class Workspace:
    root: Path

    def runbook(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)

    def imported(self, checklist: Path, *args: str) -> tuple[Path, Result]:
        """Import ``checklist`` into runbooks/NAME.yaml; the path and the CLI result."""
        out = self.root / "runbooks" / f"{checklist.stem}.yaml"
        result = self.runbook("import", str(checklist), "-o", str(out), *args)
        assert result.exit_code == 0, result.output
        return out, result

    def plan_json(self, path: Path, *args: str) -> dict:
        result = self.runbook("plan", str(path), "--format", "json", *args, env=PLAN_ENV)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.chdir(tmp_path)
    for name in ("RUNBOOK_STEPS_DIR", "RUNBOOK_PATH", "RUNBOOK_STATE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "runbooks").mkdir()
    yield Workspace(tmp_path)


EXPLAIN_ROW = re.compile(r"^\s*(\d+)(?:-(\d+))?\s")


def explained_lines(explain: str) -> set[int]:
    """The source lines an --explain listing accounts for."""
    found: set[int] = set()
    for row in explain.splitlines()[1:]:
        match = EXPLAIN_ROW.match(row)
        assert match, f"not an explain row: {row!r}"
        first = int(match[1])
        found.update(range(first, int(match[2] or first) + 1))
    return found


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def explain_block(output: str) -> str:
    """The --explain listing in a command's output (it starts at its header line)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["lines", "source", "became"])
    return "\n".join(lines[start:])
