"""build_report and the wording every format shares (headline, timing), on hand-made records."""

from __future__ import annotations

from runbook.render.report import build_report, headline, timing
from tests.experience.test_durations import Attempt, Event, Run, at

ESTIMATES = {"a": ("A", 60.0), "b": ("B", None), "c": ("C", 5.0)}


def test_failed_run() -> None:
    """The failed step with its tail, hints, tries and log; c never ran; no "finished -"."""
    attempts = [
        Attempt("a", "passed", at(0), at(1)),
        Attempt("b", "failed", at(1), at(2), error="exit 3", log_path="/l/b.1.log"),
        Attempt("b", "failed", at(2), at(3), error="exit 3", log_path="/l/b.2.log"),
    ]
    events = [
        Event("run_started", at(0)),
        Event("failure_help", at(3), {"tail": ["boom"], "hints": [{"pattern": "boom", "advice": "look"}]}, step_id="b"),
        Event("run_finished", at(3), {"status": "failed", "next": ["resume: runbook run x.yaml --resume"]}),
    ]
    report = build_report(Run(status="failed"), attempts, [], events, ESTIMATES)
    assert headline(report) == "Failed at step b"
    failure = report.failure
    assert failure is not None and (failure.tail, failure.attempts, failure.log_path) == (["boom"], 2, "/l/b.2.log")
    assert [r.step_id for r in report.not_run] == ["c"]
    assert report.next_steps == ["resume: runbook run x.yaml --resume"]
    assert timing(report) == "started 2026-11-28 12:00:00 UTC, last activity 2026-11-28 12:00:03 UTC (not finished), took 3s"


def test_paused_then_passed_run() -> None:
    """A paused record is no try; the run's time leaves out the pause and says how long it was."""
    attempts = [
        Attempt("a", "passed", at(0), at(1)),
        Attempt("b", "awaiting_approval", at(1), at(1)),
        Attempt("b", "passed", at(100), at(100.5)),
        Attempt("c", "passed", at(100.5), at(101)),
    ]
    events = [
        Event("run_started", at(0)),
        Event("run_finished", at(1), {"status": "awaiting_approval", "next": ["resume: x"]}),
        Event("run_started", at(100)),
        Event("run_finished", at(101), {"status": "passed", "next": []}),
    ]
    report = build_report(Run(status="passed", finished_at=at(101)), attempts, [], events, ESTIMATES)
    b = next(r for r in report.steps if r.step_id == "b")
    assert (b.attempts, b.seconds, b.offset) == (1, 0.5, 1.0)
    assert headline(report) == "Passed"
    assert timing(report) == "started 2026-11-28 12:00:00 UTC, finished 2026-11-28 12:01:41 UTC, took 2s (not counting 1m39s paused)"


def test_paused_run_names_the_step_and_the_commands() -> None:
    attempts = [Attempt("a", "passed", at(0), at(1)), Attempt("b", "awaiting_approval", at(1), at(1))]
    detail = {"question": "Deploy?", "approve": "runbook approve R b --by NAME", "resume": "runbook run x.yaml --resume"}
    events = [Event("run_started", at(0)), Event("awaiting_approval", at(1), detail, step_id="b"), Event("run_finished", at(1), {"status": "awaiting_approval"})]
    report = build_report(Run(status="awaiting_approval"), attempts, [], events, ESTIMATES)
    assert headline(report) == "Paused: awaiting approval of step b"
    assert report.pause is not None and report.pause.approve == "runbook approve R b --by NAME"


def test_dead_run_shows_interrupted() -> None:
    """A run whose process is gone (status given as interrupted): its running step is interrupted."""
    attempts = [Attempt("a", "passed", at(0), at(1)), Attempt("b", "running", at(1), None)]
    events = [Event("run_started", at(0)), Event("step_started", at(1), step_id="b")]
    report = build_report(Run(status="running"), attempts, [], events, ESTIMATES, status="interrupted")
    assert headline(report) == "Interrupted at step b"
    assert [r.status for r in report.steps] == ["passed", "interrupted", "not run"]
