"""``runbook report RUN``: what ran, by whom, when, and how it went — fit for a change ticket.

Built only from the state store (already masked when recorded) plus the
runbook's step list and estimates when its file is still there. This module
gathers the facts once (``build_report``) and the wording the formats share;
report_markdown.py, report_json.py and report_html.py (a Jinja2 template) render them. Durations come from durations.py,
the same computation ``status`` uses, so neither counts time spent waiting for
an approval or an answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook.model import format_duration
from runbook.render.durations import ActiveTime, run_active_time, step_seconds

NOT_RUN = "not run"
# Latest-attempt states that are a problem to show (a `when` skip is the plan working).
_PROBLEMS = frozenset({"failed", "refused", "interrupted", "running"})
# Attempt records that end as they start (and the mark a rollback leaves on the step it undid): not tries.
_RECORDS = frozenset({"awaiting_approval", "skipped", "refused", "rolled_back"})
# What ends a run after its last run_finished: its "next" commands no longer apply.
_ENDED_BY = frozenset({"rolled_back_by", "abandoned"})


@dataclass
class StepRow:
    step_id: str
    title: str
    status: str
    attempts: int = 0
    estimate_high: float | None = None
    seconds: float | None = None
    offset: float | None = None  # active seconds from the run's start to the step's first try
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    summary: str | None = None
    log_path: str | None = None
    started: datetime | None = None  # its first try's start
    finished: datetime | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    # The last lines of a failed step's output, from the state store (``runbook logs``).
    tail: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """The step a failed run stopped at, with what helps the operator on."""

    step_id: str
    error: str | None
    tail: list[str]
    hints: list[dict[str, str]]
    attempts: int
    log_path: str | None


@dataclass
class Pause:
    step_id: str
    question: str
    approve: str
    resume: str


@dataclass
class Report:
    run: Any
    status: str  # as shown: a run whose process is gone shows as interrupted
    steps: list[StepRow]
    approvals: list[Any]
    criteria: list[dict[str, Any]]
    rollbacks: list[StepRow]
    active: ActiveTime
    next_steps: list[str]
    failure: Failure | None = None
    pause: Pause | None = None
    last_activity: datetime | None = None
    rolled_back_by: str | None = None
    attempts: list[Any] = field(default_factory=list)
    # What continues or undoes the run, as typed on a command line (empty when nothing does).
    commands: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return self.active.seconds if self.active.spans else None

    @property
    def not_run(self) -> list[StepRow]:
        return [r for r in self.steps if r.status == NOT_RUN]

    @property
    def problems(self) -> list[StepRow]:
        return [r for r in self.steps if r.status in _PROBLEMS]


def build_report(
    run: Any,
    attempts: list[Any],
    approvals: list[Any],
    events: list[Any],
    estimates: dict[str, tuple[str, float | None]],
    *,
    status: str | None = None,
    tails: dict[str, list[str]] | None = None,
    commands: dict[str, str] | None = None,
) -> Report:
    """``estimates`` maps step id -> (title, upper estimate in seconds), in the runbook's order;
    ``status`` overrides the recorded one (a dead run's ``interrupted``); ``tails`` a failed
    step's last lines of output from the store; ``commands`` what resumes or rolls the run back."""
    active = run_active_time(run, events)
    # A rollback run undoes some steps of another run: the rest were never its to run.
    listed = {} if (run.params or {}).get("rollback_of") else estimates
    rows: dict[str, StepRow] = {sid: StepRow(sid, title, NOT_RUN, estimate_high=est) for sid, (title, est) in listed.items()}
    tried: dict[str, list[Any]] = {}
    rollbacks: list[StepRow] = []
    for attempt in attempts:
        title, estimate = estimates.get(attempt.step_id, (attempt.step_id, None))
        if attempt.kind == "rollback":
            rollbacks.append(StepRow(attempt.step_id, title, attempt.status, 1, seconds=step_seconds([attempt]), error=attempt.error, finished=attempt.finished_at))
            continue
        row = rows.setdefault(attempt.step_id, StepRow(attempt.step_id, title, attempt.status, estimate_high=estimate))
        row.status, row.error, row.finished = attempt.status, attempt.error, attempt.finished_at
        row.checks = attempt.checks or row.checks
        row.log_path = attempt.log_path or row.log_path
        row.outputs = attempt.outputs or row.outputs
        summary = row.outputs.get("summary")
        row.summary = summary if isinstance(summary, str) else row.summary
        if attempt.kind == "step" and attempt.status not in _RECORDS:
            row.attempts += 1
            tried.setdefault(attempt.step_id, []).append(attempt)
            if row.offset is None:
                row.offset = active.offset(attempt.started_at)
                row.started = attempt.started_at
    for step_id, ran in tried.items():
        rows[step_id].seconds = step_seconds(ran)
    for step_id, tail in (tails or {}).items():
        if step_id in rows:
            rows[step_id].tail = tail
    if status == "interrupted":  # the process is gone: a step it left running was interrupted (as `status` shows)
        for row in rows.values():
            row.status = "interrupted" if row.status == "running" else row.status
    # Steps listed in the runbook but never reached stay at the end, in the runbook's order.
    ordered = [r for r in rows.values() if r.status != NOT_RUN] + [r for r in rows.values() if r.status == NOT_RUN]
    report = Report(
        run,
        status or run.status,
        ordered,
        approvals,
        [e.detail for e in events if e.event == "criterion" and e.detail],
        rollbacks,
        active,
        next_steps=_next_steps(events),
        last_activity=events[-1].at if events else run.finished_at,
        rolled_back_by=_last_detail(events, "rolled_back_by").get("run"),
        attempts=attempts,
        commands=commands or {},
    )
    report.failure = _failure(report, events)
    report.pause = _pause(report, events)
    return report


def _last_detail(events: list[Any], name: str, step: str | None = None) -> dict[str, Any]:
    for event in reversed(events):
        if event.event == name and (step is None or event.step_id == step) and isinstance(event.detail, dict):
            return event.detail
    return {}


def _next_steps(events: list[Any]) -> list[str]:
    """The commands the run's last stop suggested, unless it was rolled back or abandoned since."""
    for event in reversed(events):
        if event.event in _ENDED_BY:
            return []
        if event.event == "run_finished" and isinstance(event.detail, dict):
            return list(event.detail.get("next") or [])
    return []


def _failure(report: Report, events: list[Any]) -> Failure | None:
    if report.status not in ("failed", "rollback_failed"):
        return None
    failed = [r for r in report.steps if r.status == "failed"]
    if not failed:
        return None
    row = failed[-1]
    help_ = _last_detail(events, "failure_help", row.step_id)
    # The failure's own help names the tail it printed; a run killed before it got there has the stored log's.
    tail = list(help_.get("tail") or []) or row.tail
    return Failure(row.step_id, row.error, tail, list(help_.get("hints") or []), row.attempts, row.log_path)


def _pause(report: Report, events: list[Any]) -> Pause | None:
    if report.status != "awaiting_approval":
        return None
    waiting = [r for r in report.steps if r.status == "awaiting_approval"]
    if not waiting:
        return None
    detail = _last_detail(events, "awaiting_approval", waiting[-1].step_id)
    return Pause(waiting[-1].step_id, str(detail.get("question") or ""), str(detail.get("approve") or ""), str(detail.get("resume") or ""))


# ---------------------------------------------------------------- shared wording


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def secs(value: float | None) -> str:
    if value is None:
        return "-"
    # Measured times to a tenth of a second: "1.83527s" reads as noise in a change ticket.
    return format_duration(round(value, 1) if 1 <= value < 60 else value)


_HEADLINES = {
    "passed": "Passed",
    "failed": "Failed",
    "rollback_failed": "Rollback failed",
    "rolled_back": "Rolled back",
    "awaiting_approval": "Paused: awaiting approval",
    "refused": "Refused",
    "interrupted": "Interrupted",
    "running": "Running",
    "abandoned": "Abandoned",
}


def headline(report: Report) -> str:
    """One line a reader takes in at a glance: the outcome and where it stopped."""
    text = _HEADLINES.get(report.status, report.status)
    if report.failure is not None:
        undone = f"; rolled back by run {report.rolled_back_by}" if report.rolled_back_by else ""
        return f"{text} at step {report.failure.step_id}{undone}"
    if report.pause is not None:
        return f"{text} of step {report.pause.step_id}"
    # A step left "running" by a process that is gone is where an interrupted run stopped.
    stopped = [r for r in report.problems if r.status in ("refused", "interrupted", "running")]
    if stopped and report.status in ("refused", "interrupted"):
        return f"{text} at step {stopped[-1].step_id}"
    return text + (" (dry run)" if report.run.dry_run else "")


def timing(report: Report) -> str:
    """When it ran and how long it worked, without "finished -, took -" for a run that has not finished."""
    run = report.run
    parts = [f"started {when(run.started_at)}"]
    if run.finished_at is not None:
        parts.append(f"finished {when(run.finished_at)}")
    elif report.last_activity is not None:
        parts.append(f"last activity {when(report.last_activity)} (not finished)")
    if report.duration is not None:
        took = f"took {secs(report.duration)}"
        waits = [f"{secs(v)} {what}" for v, what in ((report.active.paused, "paused"), (report.active.waited, "waiting for an answer")) if v >= 0.05]
        parts.append(took + (f" (not counting {' and '.join(waits)})" if waits else ""))
    return ", ".join(parts)


def decision(approval: Any) -> str:
    """'approved' or 'rejected' (rows recorded before rejections existed are approvals)."""
    return str(getattr(approval, "decision", None) or "approved")


def given(approval: Any) -> str:
    """Who ran the command, by the OS, when that is not the name recorded (delegation), and where."""
    os_user = getattr(approval, "os_user", None)
    if os_user and os_user != approval.by:
        return f" (given by {os_user} on {approval.host})"
    return f" on {approval.host}" if os_user else ""


def tick(ok: Any) -> str:
    return "☐ (manual)" if ok is None else ("☑" if ok else "☒")


def _lazy(module: str) -> Callable[[Report], str]:
    """The renderer of ``module``, imported when called: Jinja2 only for HTML."""

    def render(report: Report) -> str:
        from importlib import import_module

        return import_module(f"runbook.render.{module}").render(report)

    return render


RENDERERS = {"md": _lazy("report_markdown"), "json": _lazy("report_json"), "html": _lazy("report_html")}
