"""Text views of recorded runs: ``status``, ``show`` and ``history``."""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runbook.render.durations import step_seconds
from runbook.reporting import SYMBOLS

if TYPE_CHECKING:
    from runbook.state.liveness import ShownStatus

# Latest-attempt states in which a step's saved progress (a backfill's rows) is worth showing.
_UNFINISHED_ATTEMPT = ("running", "interrupted", "failed")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _took(attempts: Sequence[Any]) -> str:
    seconds = step_seconds(attempts)
    return "-" if seconds is None else f"{seconds:.1f}s"


def _gone(run: Any, shown: ShownStatus | None) -> list[str]:
    """For a run whose process is gone: how to go on with it (the exact command)."""
    command = getattr(run, "resume_command", None)
    if shown is None or not shown.why or shown.status != "interrupted" or run.status == shown.status:
        return []
    if command is None:
        return ["  its process is gone; nothing of it runs any more"]
    return [f"  its process is gone; resume it (from any machine sharing the state store): {command}"]


def _rollback_of(run: Any) -> str | None:
    """For a rollback run (its own run, `runbook rollback PARENT`): which run it undid, and how."""
    parent = (getattr(run, "params", None) or {}).get("rollback_of")
    return f"rollback of {parent}{_how(run)}" if parent else None


def _how(rollback: Any) -> str:
    """`` (option ID)`` or `` (to STEP)`` of a rollback run, or nothing."""
    params = getattr(rollback, "params", None) or {}
    how = f"option {params['option']}" if params.get("option") else f"to {params['to']}" if params.get("to") else ""
    return f" ({how})" if how else ""


def render_status(
    run: Any,
    attempts: Sequence[Any],
    approvals: Sequence[Any],
    *,
    shown: ShownStatus | None = None,
    progress: Mapping[str, str] | None = None,
    tails: Mapping[str, Sequence[str]] | None = None,
    rolled_back_by: Sequence[Any] = (),
) -> str:
    """``shown`` (a ShownStatus) overrides the recorded status of a run whose process is gone;
    ``progress`` maps a step id to how far it got (a backfill's ``rows N / M``); ``tails``
    a failed step to the last lines of its output (from the store, ``runbook logs``);
    ``rolled_back_by`` the rollback runs started for this run."""
    status = shown.status if shown is not None else run.status
    why = f"   ({shown.why})" if shown is not None and shown.why else ""
    progress = progress or {}
    lines = [
        f"run {run.run_id}: {run.runbook} (env: {run.env}){' [dry run]' if run.dry_run else ''}",
        f"  status: {status}   by {run.actor} pid {run.pid}   started {_when(run.started_at)}   finished {_when(run.finished_at)}{why}",
        *([f"  {_rollback_of(run)}"] if _rollback_of(run) else []),
        *[f"  rolled back by {child.run_id}{_how(child)}: {child.status}" for child in rolled_back_by],
        *_gone(run, shown),
        "",
        f"  {'step':<28} {'state':<18} {'took':>8} {'tries':>5}  checks",
    ]
    latest: dict[str, Any] = {}
    tries: dict[str, int] = {}
    by_kind: dict[tuple[str, str], list[Any]] = {}
    for attempt in attempts:
        latest[attempt.step_id] = attempt
        tries[attempt.step_id] = tries.get(attempt.step_id, 0) + 1
        by_kind.setdefault((attempt.step_id, attempt.kind), []).append(attempt)
    # A step took the sum of its attempts of the latest one's kind (durations.py, shared with `report`).
    took = {step_id: _took(by_kind[step_id, last.kind]) for step_id, last in latest.items()}
    for step_id, attempt in latest.items():
        checks = attempt.checks or []
        summary = ", ".join(f"{'✔' if c.get('ok') else '✘'} {c.get('name')}" for c in checks)
        # A step left running by a process that is gone was interrupted, as its run was.
        state = "interrupted" if attempt.status == "running" and status == "interrupted" else attempt.status
        symbol = SYMBOLS.get(state, "•")
        kind = " (rollback)" if attempt.kind == "rollback" else ""
        if step_id in progress and state in _UNFINISHED_ATTEMPT:
            summary = f"{progress[step_id]}   {summary}".rstrip()
        lines.append(f"  {step_id:<28} {symbol} {state + kind:<16} {took[step_id]:>8} {tries[step_id]:>5}  {summary}")
        if attempt.error and attempt.status not in ("passed",):
            lines.append(f"  {'':<28}   {attempt.error}")
        tail = (tails or {}).get(step_id, ())
        lines += [f"  {'':<28}   | {line}" for line in tail]
        if tail:
            lines.append(f"  {'':<28}   (all of it: runbook logs {run.run_id} {step_id})")
    for approval in approvals:
        comment = f" ({approval.comment})" if approval.comment else ""
        decision = "rejected" if getattr(approval, "decision", None) == "rejected" else "approval"
        lines.append(f"  {decision}: {approval.step_id} by {approval.by} at {_when(approval.at)}{comment}")
    return "\n".join(lines)


def render_history(runs: Sequence[Any], shown: Mapping[str, ShownStatus] | None = None) -> str:
    """One aligned row per run, newest first; the run id leads each row (scripts take ``split()[0]``).

    ``shown`` maps a run id to a ShownStatus that overrides its recorded status."""
    if not runs:
        return "no runs recorded"
    header = ("run", "runbook", "env", "status", "started", "took", "by")
    rows = [header]
    # Parents and their rollbacks among the runs shown (a rollback is a run of its own).
    undone: dict[str, list[str]] = {}
    for run in runs:
        if parent := (getattr(run, "params", None) or {}).get("rollback_of"):
            undone.setdefault(parent, []).append(run.run_id)
    for run in runs:
        state = shown[run.run_id].status if shown and run.run_id in shown else run.status
        status = f"{SYMBOLS.get(state, '•')} {state}" + (" (dry run)" if run.dry_run else "")
        if parent := (getattr(run, "params", None) or {}).get("rollback_of"):
            status += f" (rollback of {parent})"
        elif run.run_id in undone:
            status += f" (rolled back by {', '.join(undone[run.run_id])})"
        rows.append((run.run_id, run.runbook, run.env, status, _when(run.started_at), _duration(run.started_at, run.finished_at), run.actor))
    widths = [max(_cells(row[i]) for row in rows) for i in range(len(header))]
    right = {header.index("took")}
    lines = []
    for row in rows:
        cells = [(" " * (w - _cells(v)) + v) if i in right else (v + " " * (w - _cells(v))) for i, (v, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _duration(start: datetime | None, end: datetime | None) -> str:
    """Seconds to a tenth up to a minute, then minutes and seconds: a run may take hours."""
    if not start or not end:
        return "-"
    seconds = (end - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _cells(text: str) -> int:
    """Terminal columns of ``text``: some status symbols (⛔, ⚡) are drawn two columns wide."""
    if text.isascii():  # nearly every cell; `history` of 10,000 runs spent most of its time here
        return len(text)
    return _wide_cells(text)


@functools.lru_cache(maxsize=256)
def _wide_cells(text: str) -> int:
    # The non-ASCII cells are mostly the few status labels ("✔ passed"), repeated on every row.
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def render_events(events: Sequence[Any]) -> str:
    lines = ["", "events:"]
    for event in events:
        step = f" [{event.step_id}]" if event.step_id else ""
        detail = json.dumps(event.detail, default=str, ensure_ascii=False) if event.detail else ""
        lines.append(f"  {_when(event.at)} {event.actor} pid {event.pid}{step} {event.event} {detail}")
    return "\n".join(lines)
