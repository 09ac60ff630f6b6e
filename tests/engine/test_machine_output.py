"""`--format json` of status, history, show, logs and report: each parses, and has every
key docs/machine-output.md shows for it, with ISO 8601 times and the format version."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import Project, in_process

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "machine-output.md"

RUNBOOK = """
name: machine
steps:
  - id: hello
    kind: command
    run: "echo one; echo two"
    irreversible: true
  - id: fails
    kind: command
    run: "echo about to fail; exit 3"
    irreversible: true
"""


def _documented() -> dict[str, Any]:
    """``<!-- json: NAME -->`` examples of the document, parsed (one JSON line for logs)."""
    found = {}
    for name, body in re.findall(r"<!-- json: (\w+) -->\n```json\n(.*?)\n```", DOC.read_text(), re.S):
        found[name] = json.loads(body.splitlines()[0] if name == "logs" else body)
    return found


def _keys_present(documented: Any, actual: Any, where: str) -> None:
    """Every key of the documented example is in the actual output, recursively (``…`` marks an elision)."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict), where
        for key, value in documented.items():
            if key == "…":
                continue
            assert key in actual, f"{where}.{key} is documented but missing"
            _keys_present(value, actual[key], f"{where}.{key}")
    elif isinstance(documented, list) and documented and actual:
        _keys_present(documented[0], actual[0], f"{where}[0]")


def _is_iso(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None and "T" in value


@pytest.fixture
def machine(sqlite_project: Project) -> tuple[Project, str]:
    project = in_process(sqlite_project)
    project.write("machine.yaml", RUNBOOK)
    assert project.runbook("run", "machine.yaml").returncode == 1
    run_id = json.loads(project.runbook("history", "--format", "json").stdout)["runs"][0]["id"]
    return project, run_id


def test_each_json_output_has_the_documented_keys(machine: tuple[Project, str]) -> None:
    project, run_id = machine
    documented = _documented()
    assert set(documented) == {"history", "show", "report", "logs"}
    outputs = {
        "history": json.loads(project.runbook("history", "--format", "json").stdout),
        "show": json.loads(project.runbook("show", run_id, "--format", "json", "--events").stdout),
        "report": json.loads(project.runbook("report", run_id, "--format", "json").stdout),
        "logs": json.loads(project.runbook("logs", run_id, "fails", "--format", "json").stdout.splitlines()[0]),
    }
    for name, output in outputs.items():
        assert output["format"] == 1, name
        _keys_present(documented[name], output, name)
    status = json.loads(project.runbook("status", "--format", "json").stdout)
    assert status["run"]["id"] == run_id and status.keys() == outputs["show"].keys() - {"events"}
    assert outputs["show"]["events"] and {"id", "event", "at", "detail"} <= set(outputs["show"]["events"][0])


def test_times_are_iso_8601_and_the_report_has_attempts_tails_and_commands(machine: tuple[Project, str]) -> None:
    project, run_id = machine
    report = json.loads(project.runbook("report", run_id, "--format", "json").stdout)
    assert _is_iso(report["run"]["started_at"]) and report["run"]["finished_at"] is None
    assert all(_is_iso(a["started_at"]) and _is_iso(a["finished_at"]) for a in report["attempts"])
    failed = next(s for s in report["steps"] if s["id"] == "fails")
    assert failed["error"] == "exited with status 3" and failed["output_tail"] == ["about to fail"]
    assert failed["outputs"]["exit_code"] == 3
    assert [(a["step"], a["status"], a["error"]) for a in report["attempts"]] == [("hello", "passed", None), ("fails", "failed", "exited with status 3")]
    assert report["commands"] == {"resume": "runbook run machine.yaml --resume", "rollback": f"runbook rollback {run_id}"}


def test_status_json_with_no_run_recorded(sqlite_project: Project) -> None:
    out = in_process(sqlite_project).runbook("status", "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout) == {"format": 1, "run": None}


BACKFILL = """
name: filled
connections:
  app: "sqlite:///app.db"
steps:
  - id: fill
    kind: backfill
    connection: app
    table: items
    key: id
    where: total IS NULL
    update: UPDATE items SET total = id * 2 WHERE id BETWEEN :lo AND :hi AND total IS NULL
    batch_size: 10
    min_batch: 10
    report: reports/fill.csv
    irreversible: true
"""


def test_the_json_report_carries_a_backfills_outputs_and_its_report_lands_in_the_project(sqlite_project: Project) -> None:
    """batches, max_batch_ms and the counts in the step's outputs; the relative report path resolves
    against the project directory."""
    import sqlite3

    project = in_process(sqlite_project)
    with sqlite3.connect(project.root / "app.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, total INTEGER)")
        db.executemany("INSERT INTO items (id) VALUES (?)", [(i,) for i in range(1, 51)])
    project.write("filled.yaml", BACKFILL)
    ran = project.runbook("run", "filled.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = json.loads(project.runbook("history", "--format", "json").stdout)["runs"][0]["id"]
    (step,) = json.loads(project.runbook("report", run_id, "--format", "json").stdout)["steps"]
    outputs = step["outputs"]
    assert outputs["batches"] >= 1 and outputs["updated"] == 50 and outputs["total"] == 50
    assert isinstance(outputs["max_batch_ms"], float) and outputs["report"] == str(project.root / "reports" / "fill.csv")
