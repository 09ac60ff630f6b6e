"""durations.py: what a step and a run took, shared by ``status`` and ``report``, on
hand-made records (no clock involved)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook.render.durations import run_active_time, step_seconds
from runbook.render.runs import render_status

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Attempt:
    step_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    kind: str = "step"
    checks: list[Any] = field(default_factory=list)
    error: str | None = None
    outputs: dict[str, Any] | None = None
    log_path: str | None = None


@dataclass
class Event:
    event: str
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    step_id: str | None = None


@dataclass
class Run:
    run_id: str = "r1"
    runbook: str = "rb"
    env: str = "default"
    dry_run: bool = False
    status: str = "passed"
    actor: str = "alice"
    pid: int = 1
    started_at: datetime = T0
    finished_at: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)
    host: str = "vm"


# A step paused for approval at 1 s, approved and resumed a minute later, ran 0.2 s.
PAUSED_THEN_RAN = [Attempt("deploy", "awaiting_approval", at(1), at(1)), Attempt("deploy", "passed", at(61), at(61.2))]


def test_a_paused_step_took_what_its_run_attempt_took() -> None:
    """The paused record is an instant: the step took 0.2 s, not the minute of the pause."""
    assert step_seconds(PAUSED_THEN_RAN) == 0.2


def test_status_shows_the_same_time() -> None:
    """``status`` prints the step's time from the same function."""
    shown = render_status(Run(), PAUSED_THEN_RAN, [])
    assert "deploy" in shown and " 0.2s " in shown


def test_retries_add_up_and_an_unfinished_attempt_counts_nothing() -> None:
    """Two tries of 1 s and 2 s took 3 s; a running attempt has no time yet."""
    tries = [Attempt("a", "failed", at(0), at(1)), Attempt("a", "passed", at(5), at(7)), Attempt("b", "running", at(8), None)]
    assert step_seconds(tries[:2]) == 3.0
    assert step_seconds(tries[2:]) is None


def test_run_time_leaves_out_the_pause_and_the_wait_at_a_question() -> None:
    """Active spans from each run_started to its run_finished, less a question's wait."""
    events = [
        Event("run_started", at(0)),
        Event("run_finished", at(2), {"status": "awaiting_approval"}),
        Event("run_started", at(60)),
        Event("approved", at(70), {"how": "interactive", "waited": 8.0}),
        Event("run_finished", at(71)),
    ]
    active = run_active_time(Run(), events)
    assert active.seconds == 2 + 11 - 8
    assert active.paused == 58 and active.waited == 8
    # On a timeline, the resume's first step starts right after the first span, minus nothing yet.
    assert active.offset(at(61)) == 3
    assert active.offset(at(71)) == 5


def test_a_process_that_died_ends_its_span_at_its_last_event() -> None:
    """No run_finished (SIGKILL): the span ends at the last event recorded before the resume."""
    events = [Event("run_started", at(0)), Event("step_started", at(4)), Event("run_started", at(100)), Event("run_finished", at(101))]
    assert run_active_time(Run(), events).seconds == 5


def test_a_run_without_events_falls_back_to_its_own_times() -> None:
    assert run_active_time(Run(finished_at=at(9)), []).seconds == 9
