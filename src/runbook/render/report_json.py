"""``runbook report --format json``: the report's facts for tools."""

from __future__ import annotations

import json

from runbook.render.report import Report, decision, headline


def render(report: Report) -> str:
    run = report.run
    data = {
        "run": {
            "id": run.run_id,
            "runbook": run.runbook,
            "env": run.env,
            "status": report.status,
            "headline": headline(report),
            "dry_run": run.dry_run,
            "actor": run.actor,
            "host": run.host,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "last_activity_at": report.last_activity,
            "duration_s": report.duration,
            "paused_s": report.active.paused,
            "waited_s": report.active.waited,
            "next": report.next_steps,
        },
        "steps": [
            {
                "id": r.step_id,
                "title": r.title,
                "status": r.status,
                "attempts": r.attempts,
                "duration_s": r.seconds,
                "estimate_s": r.estimate_high,
                "checks": r.checks,
                "error": r.error,
                "summary": r.summary,
                "log_path": r.log_path,
            }
            for r in report.steps
        ],
        "failure": None if report.failure is None else vars(report.failure),
        "pause": None if report.pause is None else vars(report.pause),
        "approvals": [
            {"step": a.step_id, "decision": decision(a), "by": a.by, "os_user": getattr(a, "os_user", None), "host": a.host, "at": a.at, "comment": a.comment, "fingerprint": a.fingerprint}
            for a in report.approvals
        ],
        "success_criteria": report.criteria,
        "rollbacks": [{"step": r.step_id, "status": r.status, "at": r.finished, "error": r.error} for r in report.rollbacks],
    }
    return json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n"
