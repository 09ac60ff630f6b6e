"""``--format json`` of ``status``, ``history``, ``show`` (and the parts ``report`` and ``logs`` share).

Every document carries ``format`` (FORMAT_VERSION): a key is only ever added
within a version; renaming or removing one bumps it. Timestamps are ISO 8601
in UTC (``2026-11-28T01:22:22.123456+00:00``); durations are seconds. The keys
are documented in docs/machine-output.md, whose examples the tests check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.state import ApprovalRecord, AttemptRecord, EventRecord, RunRecord
    from runbook.state.liveness import ShownStatus

FORMAT_VERSION = 1


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start is not None and end is not None else None


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps({"format": FORMAT_VERSION, **document}, indent=2, ensure_ascii=False, default=str)


def run_json(run: RunRecord, shown: ShownStatus | None = None) -> dict[str, Any]:
    """``status`` is what to believe now (a dead process's run shows ``interrupted``); ``recorded_status`` is the row's."""
    return {
        "id": run.run_id,
        "runbook": run.runbook,
        "env": run.env,
        "path": run.path,
        "status": shown.status if shown is not None else run.status,
        "recorded_status": run.status,
        "status_note": shown.why if shown is not None else None,
        "resume_command": run.resume_command,
        "dry_run": run.dry_run,
        "actor": run.actor,
        "host": run.host,
        "workdir": run.workdir,
        "pid": run.pid,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": seconds(run.started_at, run.finished_at),
        "rollback_of": (run.params or {}).get("rollback_of"),
    }


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "step": attempt.step_id,
        "attempt": attempt.attempt,
        "kind": attempt.kind,
        "status": attempt.status,
        "host": attempt.host,
        "pid": attempt.pid,
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "duration_s": seconds(attempt.started_at, attempt.finished_at),
        "error": attempt.error,
        "outputs": attempt.outputs,
        "checks": attempt.checks or [],
        "fingerprint": attempt.fingerprint,
        "log_path": attempt.log_path,
    }


def approval_json(approval: ApprovalRecord) -> dict[str, Any]:
    return {
        "step": approval.step_id,
        "decision": getattr(approval, "decision", None) or "approved",
        "by": approval.by,
        "os_user": getattr(approval, "os_user", None),
        "host": approval.host,
        "at": iso(approval.at),
        "comment": approval.comment,
        "fingerprint": approval.fingerprint,
    }


def event_json(event: EventRecord) -> dict[str, Any]:
    return {"id": event.id, "step": event.step_id, "event": event.event, "at": iso(event.at), "actor": event.actor, "pid": event.pid, "detail": event.detail}


def next_commands(run: RunRecord, attempts: Sequence[AttemptRecord]) -> dict[str, str]:
    """The commands that continue (``resume``) or undo (``rollback``) the run, when any does."""
    if run.dry_run:
        return {}
    parent = (run.params or {}).get("rollback_of")
    if parent:
        return {} if run.finished_at is not None else {"rollback": f"runbook rollback {parent}"}
    commands = {}
    if run.finished_at is None and run.status != "passed":
        env = f" --env {run.env}" if run.env != "default" else ""
        commands["resume"] = f"runbook run {Path(run.path).name}{env} --resume"
    if any(a.kind == "step" and a.status == "passed" for a in attempts) and run.status != "rolled_back":
        commands["rollback"] = f"runbook rollback {run.run_id}"
    return commands


def history_json(runs: Sequence[RunRecord], shown: Mapping[str, ShownStatus]) -> str:
    return dumps({"runs": [run_json(run, shown.get(run.run_id)) for run in runs]})


def status_json(
    run: RunRecord,
    shown: ShownStatus,
    attempts: Sequence[AttemptRecord],
    approvals: Sequence[ApprovalRecord],
    progress: Mapping[str, str],
    events: Sequence[EventRecord] | None = None,
    rolled_back_by: Sequence[RunRecord] = (),
) -> str:
    """One run: ``steps`` has the latest attempt of each step (as ``status`` shows it), ``attempts`` every one;
    ``rolled_back_by`` the ids of the rollback runs started for it."""
    latest: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        tries = latest.get(attempt.step_id, {}).get("attempts", 0) + 1
        state = "interrupted" if attempt.status == "running" and shown.status == "interrupted" else attempt.status
        latest[attempt.step_id] = {**attempt_json(attempt), "status": state, "attempts": tries, "progress": progress.get(attempt.step_id)}
    document: dict[str, Any] = {
        "run": run_json(run, shown),
        "steps": list(latest.values()),
        "attempts": [attempt_json(a) for a in attempts],
        "approvals": [approval_json(a) for a in approvals],
        "commands": next_commands(run, attempts),
        "rolled_back_by": [r.run_id for r in rolled_back_by],
    }
    if events is not None:
        document["events"] = [event_json(e) for e in events]
    return dumps(document)
