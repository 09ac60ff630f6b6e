"""The live view of ``runbook run`` on a real terminal (a pty), and plain lines elsewhere."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Callable

from rich.console import Console

from runbook.render.live import LiveReporter
from tests.experience.conftest import Scratch, Terminal, plain

LIVE = """\
name: live
connections:
  app: sqlite:///app.db
steps:
  - id: prepare
    title: Prepare the ground
    kind: command
    run: echo ready
    estimate: 5s
  - id: slow
    title: Print lines slowly
    kind: command
    run: "for i in 1 2 3 4 5 6 7; do echo line $i; sleep 0.15; done"
    estimate: 1s
    gates:
      - check: command
        name: the lines were printed
        run: "true"
  - id: fill
    title: Backfill t.v
    kind: backfill
    connection: app
    table: t
    key: id
    where: v IS NULL
    update: UPDATE t SET v = id WHERE id BETWEEN :lo AND :hi AND v IS NULL
    batch_size: 100
    min_batch: 100
    max_batch: 100
    throttle: 0.03
    estimate: 30s
  - id: apply
    title: Apply the change
    kind: command
    run: touch applied.marker
    confirm: Apply it now?
    estimate: 10s
"""


def _live_project(scratch: Scratch) -> None:
    scratch.write("live.yaml", LIVE)
    with sqlite3.connect(scratch.root / "app.db") as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        db.executemany("INSERT INTO t (id) VALUES (?)", [(i,) for i in range(1, 2001)])


def test_live_view_shows_steps_times_output_progress_and_asks_through_the_pty(scratch: Scratch, terminal: Callable[..., Terminal]) -> None:
    """Answering y at the confirmation runs the step; the table was drawn in place and ends with a summary."""
    _live_project(scratch)
    term = terminal("run", "live.yaml")
    before = term.expect("Proceed? [y/N]")
    # The table, redrawn in place (line erase), not the plain reporter's lines.
    assert "\x1b[2K" in term.text
    assert "→ [prepare]" not in before
    assert re.search(r"✔ +prepare +Prepare the ground +\d+\.\ds / 5s", before), before
    assert re.search(r"prepare.*\n.*slow +Print lines slowly", before), "steps are listed in plan order"
    # The slow step's last output lines while it ran, and its time past its 1s estimate.
    assert "│ line 3" in before and "│ line 7" in before
    assert re.search(r"slow +Print lines slowly +[1-9]\.\ds / 1s", before), before
    assert "✔ gate the lines were printed: observed exit 0" in before
    # The backfill's progress from its progress events: a bar, rows, rate and ETA.
    assert re.search(r"━+.* [\d,]+/2,000 rows +[\d,]+ rows/s", before), before
    assert "ETA" in before
    # The question is whole on screen, not overdrawn by the table.
    assert "Step 'apply': Apply the change\nApply it now?\nIt will run:\n    touch applied.marker\nProceed? [y/N]" in before
    term.send("y\n")
    assert term.finish() == 0, plain(term.text)
    after = plain(term.text)[len(before):]
    assert (scratch.root / "applied.marker").exists()
    run_id = scratch.latest_run_id()
    assert f"✔ run {run_id} passed in " in after
    assert re.search(r"✔ +apply +Apply the change +\d+\.\ds / 10s", after), after
    assert "approved by " in after and "(interactive)" in after
    assert "2,000 rows at " in after, "the finished backfill keeps its count and rate"
    # The time the question waited for the answer is recorded, and left out of the run's time.
    report = json.loads(scratch.runbook("report", run_id, "--format", "json").stdout)
    assert report["run"]["waited_s"] > 0


def test_answering_no_refuses_with_exit_3_and_the_resume_command(scratch: Scratch, terminal: Callable[..., Terminal]) -> None:
    scratch.write(
        "live.yaml",
        """\
        name: live
        steps:
          - id: apply
            title: Apply the change
            kind: command
            run: touch applied.marker
            confirm: Apply it now?
        """,
    )
    term = terminal("run", "live.yaml")
    term.expect("Proceed? [y/N]")
    term.send("n\n")
    assert term.finish() == 3, plain(term.text)
    out = plain(term.text)
    assert not (scratch.root / "applied.marker").exists()
    run_id = scratch.latest_run_id()
    assert f"⛔ run {run_id} refused in " in out
    assert "the operator answered no" in out
    # Nothing acted: the run owns nothing; the next step says how it would be allowed.
    assert "run again and answer yes, or approve it: --approve apply" in out


def test_a_failed_step_ends_with_its_output_and_the_resume_and_rollback_commands(scratch: Scratch, terminal: Callable[..., Terminal]) -> None:
    scratch.write(
        "broken.yaml",
        """\
        name: broken
        steps:
          - id: first
            kind: command
            run: echo fine
          - id: second
            title: Fail loudly
            kind: command
            run: "echo the disk is full; exit 1"
            estimate: 2s
            hints:
              "disk is full": free some space, then resume
        """,
    )
    term = terminal("run", "broken.yaml")
    assert term.finish() == 1, plain(term.text)
    out = plain(term.text)
    run_id = scratch.latest_run_id()
    assert "last output of [second]:" in out and "| the disk is full" in out
    assert "hint (disk is full): free some space, then resume" in out
    assert re.search(r"✘ +second +Fail loudly +\d+\.\ds / 2s\n +failed: exited with status 1", out), out
    summary = out[out.index(f"✘ run {run_id} failed in "):]
    assert "resume: runbook run broken.yaml --resume" in summary
    assert f"roll back: runbook rollback {run_id}" in summary


def test_without_a_terminal_the_run_prints_plain_lines(scratch: Scratch) -> None:
    scratch.write("plain.yaml", "name: plain\nsteps:\n  - id: only\n    kind: command\n    run: echo hello\n")
    result = scratch.runbook("run", "plain.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "→ [only]" in result.stdout and "  [only] hello" in result.stdout
    assert "\x1b[" not in result.stdout


def test_the_table_keeps_the_last_five_output_lines_and_shows_the_backfill_rate() -> None:
    """The reporter fed events directly, rendered by a real rich console into a string."""
    out = io.StringIO()
    reporter = LiveReporter([("fill", "Backfill rows", 60.0), ("after", "Afterwards", None)], console=Console(file=out, width=100, color_system=None))
    reporter("step_started", {"run_id": "r1", "step": "fill", "title": "Backfill rows", "attempt": 1})
    for n in range(1, 9):
        reporter("output", {"run_id": "r1", "step": "fill", "line": f"batch {n}"})
    reporter("progress", {"run_id": "r1", "step": "fill", "done": 4000, "total": 10000, "rate": 2500.0, "eta_s": 2.4})
    reporter.console.print(reporter._render())
    text = out.getvalue()
    assert "batch 3" not in text and all(f"│ batch {n}" in text for n in range(4, 9))
    assert "4,000/10,000 rows  2,500 rows/s  ETA 2s" in text
    assert re.search(r"after +Afterwards +–", text), "a pending step without an estimate"
