"""docs/cli.md documents every event name the engine emits, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.reporting import log_level
from runbook.status import EventName

DOC = Path(__file__).parents[2] / "docs" / "cli.md"


def test_every_event_name_is_documented_once() -> None:
    text = DOC.read_text()
    table = text[text.index("| event | when | fields |") :]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert sorted(documented) == sorted(e.value for e in EventName)


def test_levels_as_documented() -> None:
    assert log_level("step_finished", {"status": "failed"}) == "error"
    assert log_level("run_finished", {"status": "rollback_failed"}) == "error"
    assert log_level("error", {}) == "error"
    assert log_level("step_finished", {"status": "refused"}) == "warning"
    assert log_level("warning", {}) == "warning"
    assert log_level("step_finished", {"status": "passed"}) == "info"
