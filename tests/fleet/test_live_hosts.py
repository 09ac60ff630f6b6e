"""The live view shows one line per host of a fleet step, instead of their interleaved output."""

from __future__ import annotations

import io

from rich.console import Console

from runbook.render.live import LiveReporter


def test_one_live_line_per_host() -> None:
    out = io.StringIO()
    reporter = LiveReporter([("deploy", "Deploy", None)], console=Console(file=out, width=100, color_system=None))
    reporter("step_started", {"run_id": "r1", "step": "deploy", "title": "Deploy", "attempt": 1})
    for n in range(3):
        reporter("output", {"run_id": "r1", "step": "deploy", "line": f"app1| line {n}"})
        reporter("progress", {"run_id": "r1", "step": "deploy", "hosts": {"app1": f"running: line {n}"}})
    reporter("progress", {"run_id": "r1", "step": "deploy", "hosts": {"app2": "passed (0.40s)", "db10": "running (batch 1)"}})
    reporter.console.print(reporter._render())
    text = out.getvalue()
    assert "│ app1  running: line 2" in text
    assert "│ app2  passed (0.40s)" in text and "│ db10  running (batch 1)" in text
    assert "line 0" not in text
    reporter.close()
