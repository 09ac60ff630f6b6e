"""``runbook report --format json``: the report's facts for tools, documented key by key
in docs/machine-output.md (with ``format``, ISO 8601 times, durations in seconds)."""

from __future__ import annotations

from runbook.render.machine import approval_json, attempt_json, dumps, iso, run_json
from runbook.render.report import Report, headline


def render(report: Report) -> str:
    run = {
        **run_json(report.run),
        "status": report.status,
        "headline": headline(report),
        "last_activity_at": iso(report.last_activity),
        # Active time: pauses between resumes and waits for an answer are left out, as in `status`.
        "duration_s": report.duration,
        "paused_s": report.active.paused,
        "waited_s": report.active.waited,
        "next": report.next_steps,
    }
    data = {
        "run": run,
        "steps": [
            {
                "id": r.step_id,
                "title": r.title,
                "status": r.status,
                "attempts": r.attempts,
                "started_at": iso(r.started),
                "finished_at": iso(r.finished),
                "duration_s": r.seconds,
                "estimate_s": r.estimate_high,
                "checks": r.checks,
                "error": r.error,
                "summary": r.summary,
                "outputs": r.outputs,
                "output_tail": r.tail,
                "log_path": r.log_path,
            }
            for r in report.steps
        ],
        "failure": None if report.failure is None else vars(report.failure),
        "pause": None if report.pause is None else vars(report.pause),
        "attempts": [attempt_json(a) for a in report.attempts],
        "approvals": [approval_json(a) for a in report.approvals],
        "success_criteria": report.criteria,
        "rollbacks": [{"step": r.step_id, "status": r.status, "at": iso(r.finished), "error": r.error} for r in report.rollbacks],
        "commands": report.commands,
    }
    return dumps(data) + "\n"
