"""``--log-format json``: the structured log through structlog's chain (eventlog.py), and that
nothing imports structlog when nothing logs (``plan``, a console run)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runbook.eventlog import JsonLog, MaskSecrets, level_of
from runbook.masking import Masker
from tests.experience.conftest import Scratch


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_mask_processor_masks_every_value() -> None:
    """A plain callable in structlog's contract: nested values, keys left alone."""
    processor = MaskSecrets(Masker(["hunter22"]))
    out = processor(None, "info", {"event": "output", "line": "pw=hunter22", "tail": ["a hunter22 b"], "nested": {"x": "hunter22"}})
    assert out == {"event": "output", "line": "pw=***", "tail": ["a *** b"], "nested": {"x": "***"}}


@pytest.mark.parametrize(
    ("name", "fields", "level"),
    [
        ("step_finished", {"status": "failed"}, "error"),
        ("step_finished", {"status": "passed"}, "info"),
        ("step_finished", {"status": "refused"}, "warning"),
        ("failure_help", {}, "error"),
        ("run_finished", {"status": "failed"}, "error"),
        ("run_finished", {"status": "rollback_failed"}, "error"),
        ("run_finished", {"status": "awaiting_approval"}, "info"),
        ("run_finished", {"status": "interrupted"}, "warning"),
        ("warning", {}, "warning"),
        ("error", {}, "error"),
        ("check", {"ok": False, "on_fail": "halt"}, "warning"),
        ("check", {"ok": False, "on_fail": "warn"}, "info"),
        ("output", {}, "info"),
    ],
)
def test_levels(name: str, fields: dict[str, object], level: str) -> None:
    """A failed step or run is an error; a refusal, interruption or failed check a warning."""
    assert level_of(name, fields) == level


def test_run_and_step_context_is_bound() -> None:
    """run_id on every line from the start; step and attempt on what a step's attempt logs,
    its failure help included; a masker given to the log masks what skipped the journal."""
    stream = io.StringIO()
    log = JsonLog(stream, masker=Masker(["s3cret-x"]))
    log("run_started", {"run_id": "R1", "runbook": "rb", "env": "default"})
    log("step_started", {"run_id": "R1", "step": "a", "attempt": 2, "title": "A"})
    log("output", {"run_id": "R1", "step": "a", "line": "token s3cret-x"})
    log("step_finished", {"run_id": "R1", "step": "a", "status": "failed", "event": "clash"})
    log("failure_help", {"run_id": "R1", "step": "a", "tail": ["x"]})
    log("warning", {"run_id": "R1", "step": "b", "message": "other step"})
    log("run_finished", {"run_id": "R1", "status": "failed"})
    lines = _lines(stream)
    assert [line["event"] for line in lines] == ["run_started", "step_started", "output", "step_finished", "failure_help", "warning", "run_finished"]
    assert all(line["run_id"] == "R1" and line["timestamp"] for line in lines)
    assert [line.get("attempt") for line in lines] == [None, 2, 2, 2, 2, None, None]
    assert lines[2]["line"] == "token ***"
    assert lines[3]["level"] == "error" and lines[3]["detail_event"] == "clash"
    assert lines[5]["step"] == "b"


def test_failed_run_logs_errors_end_to_end(scratch: Scratch) -> None:
    """A real run: the failed step and the run end are errors, output lines carry their attempt,
    a secret var printed by a step stays masked."""
    scratch.write(
        "failing.yaml",
        """\
        name: failing
        vars:
          token: {default: tok-9f8e7d6c, secret: true}
        steps:
          - id: go
            kind: command
            run: "echo using {{ vars.token }}; exit 2"
            irreversible: true
            retries: 1
        """,
    )
    result = scratch.runbook("run", "failing.yaml", "--log-format", "json")
    assert result.returncode == 1, result.stderr
    assert "tok-9f8e7d6c" not in result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    outputs = [(line["attempt"], line["line"]) for line in lines if line["event"] == "output"]
    assert outputs == [(1, "using ***"), (2, "using ***")]
    finished = [(line["attempt"], line["level"]) for line in lines if line["event"] == "step_finished"]
    assert finished == [(1, "error"), (2, "error")]
    assert lines[-1]["event"] == "run_finished" and lines[-1]["level"] == "error"


_WHO_IMPORTED = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('imported:', sorted(m for m in ('structlog', 'runbook.eventlog', 'runbook.render.report') if m in sys.modules), file=sys.stderr))\n"
    "from runbook.cli import main\n"
    "main()\n"
)


def _imported(scratch: Scratch, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _WHO_IMPORTED, *args], cwd=scratch.root, env=scratch.env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    return next(line for line in result.stderr.splitlines() if line.startswith("imported:"))


def test_structlog_is_imported_only_for_a_json_log(scratch: Scratch) -> None:
    """`plan` and a console run start without structlog (236 modules); a JSON log loads it."""
    scratch.write("tiny.yaml", "name: tiny\nsteps:\n  - id: a\n    kind: command\n    run: 'true'\n    irreversible: true\n")
    assert _imported(scratch, "plan", "tiny.yaml") == "imported: []"
    assert _imported(scratch, "run", "tiny.yaml") == "imported: []"
    assert _imported(scratch, "run", "tiny.yaml", "--log-format", "json") == "imported: ['runbook.eventlog', 'structlog']"


def test_every_event_name_is_documented() -> None:
    """docs/ci.md's JSON log section names every event the engine knows."""
    from runbook.status import EventName

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "ci.md").read_text()
    section = doc[doc.index("## The JSON log"):]
    assert [e.value for e in EventName if f"`{e.value}`" not in section] == []
