"""``runbook report RUN``: what ran, by whom, when, and how it went — fit for a change ticket.

Built only from the state store (already masked when recorded) plus the
runbook's estimates when its file is still there. Markdown and JSON for
tickets and tools; HTML with an inline SVG timeline for people.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook.checks.base import result_text
from runbook.model import format_duration


@dataclass
class StepRow:
    step_id: str
    title: str
    status: str
    attempts: int
    kind: str
    started: datetime | None
    finished: datetime | None
    estimate_high: float | None
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    summary: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    # The last lines of a failed step's output, from the state store (``runbook logs``).
    tail: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.started and self.finished:
            return (self.finished - self.started).total_seconds()
        return None


@dataclass
class Report:
    run: Any
    steps: list[StepRow]
    approvals: list[Any]
    criteria: list[dict[str, Any]]
    rollbacks: list[StepRow]
    events: list[Any]
    attempts: list[Any] = field(default_factory=list)
    # What continues or undoes the run, as typed on a command line (empty when nothing does).
    commands: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.run.started_at and self.run.finished_at:
            return (self.run.finished_at - self.run.started_at).total_seconds()
        return None


def build_report(
    run: Any,
    attempts: list[Any],
    approvals: list[Any],
    events: list[Any],
    estimates: dict[str, tuple[str, float | None]],
    *,
    tails: dict[str, list[str]] | None = None,
    commands: dict[str, str] | None = None,
) -> Report:
    """``estimates`` maps step id -> (title, upper estimate in seconds) from the runbook file;
    ``tails`` a failed step's last lines of output; ``commands`` what resumes or rolls the run back."""
    rows: dict[str, StepRow] = {}
    rollbacks: list[StepRow] = []
    for attempt in attempts:
        title, estimate = estimates.get(attempt.step_id, (attempt.step_id, None))
        if attempt.kind == "rollback":
            rollbacks.append(StepRow(attempt.step_id, title, attempt.status, 1, "rollback", attempt.started_at, attempt.finished_at, None, error=attempt.error))
            continue
        row = rows.get(attempt.step_id)
        if row is None:
            row = rows[attempt.step_id] = StepRow(attempt.step_id, title, attempt.status, 0, "step", attempt.started_at, attempt.finished_at, estimate)
        row.attempts += 1
        row.status = attempt.status
        row.finished = attempt.finished_at
        row.checks = attempt.checks or row.checks
        row.error = attempt.error
        outputs = attempt.outputs or {}
        row.outputs = outputs or row.outputs
        row.summary = outputs.get("summary") if isinstance(outputs.get("summary"), str) else row.summary
    for step_id, tail in (tails or {}).items():
        if step_id in rows:
            rows[step_id].tail = tail
    criteria = [e.detail for e in events if e.event == "criterion" and e.detail]
    return Report(run, list(rows.values()), approvals, criteria, rollbacks, events, attempts, commands or {})


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    # Measured times to a tenth of a second: "1.83527s" reads as noise in a change ticket.
    return format_duration(round(value, 1) if 1 <= value < 60 else value)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a "|" (gate names quote psql output) would end the cell."""
    return text.replace("|", "\\|")


def _tick(ok: Any) -> str:
    return "☐ (manual)" if ok is None else ("☑" if ok else "☒")


def render_markdown(report: Report) -> str:
    run = report.run
    md = [
        f"# Change report: {run.runbook} ({run.env})",
        "",
        f"- **Run**: `{run.run_id}`{' (dry run)' if run.dry_run else ''}",
        f"- **Status**: {run.status}",
        f"- **By**: {run.actor} on {run.host} (pid {run.pid})",
        f"- **Started**: {_when(run.started_at)}",
        f"- **Finished**: {_when(run.finished_at)}",
        f"- **Duration**: {_secs(report.duration)}",
        "",
        "## Steps",
        "",
        "| step | status | attempts | took | estimate | gates |",
        "|---|---|---|---|---|---|",
    ]
    for row in report.steps:
        gates = "; ".join(f"{'✔' if c.get('ok') else '✘'} {c.get('name')} ({result_text(c, with_expected=False) or 'observed None'})" for c in row.checks)
        title = row.title if row.title != row.step_id else ""
        md.append(f"| `{row.step_id}` {_cell(title)} | {row.status} | {row.attempts} | {_secs(row.duration)} | {_secs(row.estimate_high)} | {_cell(gates)} |")
    # A step skipped by its `when` is the plan working, not a problem.
    failed = [r for r in report.steps if r.error and r.status not in ("passed", "dry_run", "skipped")]
    if failed:
        md += ["", "## Problems", ""]
        for r in failed:
            md.append(f"- `{r.step_id}` ({r.status}): {r.error}")
            if r.tail:
                md += ["", "  ```", *(f"  {line}" for line in r.tail), "  ```"]
    summaries = [r for r in report.steps if r.summary]
    if summaries:
        md += ["", "## Dry-run and step summaries", ""]
        for row in summaries:
            md += [f"### {row.step_id}", "", "```", (row.summary or "").rstrip(), "```", ""]
    if report.approvals:
        md += ["", "## Approvals", ""]
        md += [f"- `{a.step_id}` approved by **{a.by}** at {_when(a.at)}" + (f": {a.comment}" if a.comment else "") for a in report.approvals]
    if report.criteria:
        md += ["", "## Success criteria", ""]
        md += [f"- {_tick(c.get('ok'))} {c.get('description')}" + (f" ({result_text(c, with_expected=False)})" if c.get("observed") or c.get("error") else "") for c in report.criteria]
    if report.rollbacks:
        md += ["", "## Rollback actions", ""]
        md += [f"- `{r.step_id}`: {r.status} at {_when(r.finished)}" + (f" — {r.error}" if r.error else "") for r in report.rollbacks]
    return "\n".join(md) + "\n"


def render_json(report: Report) -> str:
    """``report --format json``: documented, key by key, in docs/machine-output.md."""
    from runbook.render.machine import approval_json, attempt_json, dumps, iso, run_json

    data = {
        "run": run_json(report.run),
        "steps": [
            {
                "id": r.step_id,
                "title": r.title,
                "status": r.status,
                "attempts": r.attempts,
                "started_at": iso(r.started),
                "finished_at": iso(r.finished),
                "duration_s": r.duration,
                "estimate_s": r.estimate_high,
                "checks": r.checks,
                "error": r.error,
                "summary": r.summary,
                "outputs": r.outputs,
                "output_tail": r.tail,
            }
            for r in report.steps
        ],
        "attempts": [attempt_json(a) for a in report.attempts],
        "approvals": [approval_json(a) for a in report.approvals],
        "success_criteria": report.criteria,
        "rollbacks": [{"step": r.step_id, "status": r.status, "at": iso(r.finished), "error": r.error} for r in report.rollbacks],
        "commands": report.commands,
    }
    return dumps(data) + "\n"


_STATUS_COLOURS = {"passed": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e", "refused": "#ef6c00", "dry_run": "#5c6bc0"}


def timeline_svg(report: Report, width: int = 760) -> str:
    """Bars of actual duration, with the estimate as an outline behind each."""
    rows = [r for r in report.steps if r.started]
    if not rows:
        return ""
    start = min(r.started for r in rows if r.started)
    end = max((r.finished or r.started) for r in rows if r.started)
    longest_estimate = max((r.estimate_high or 0) for r in rows)
    span = max((end - start).total_seconds(), longest_estimate, 1.0)
    # Step ids on the left, "took / estimate" on the right, bars in between.
    label_w, times_w, row_h = 150, 120, 22
    scale = (width - label_w - times_w - 10) / span
    height = row_h * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="timeline" font-family="sans-serif">']
    for i, row in enumerate(rows):
        y = 10 + i * row_h
        x = label_w + (row.started - start).total_seconds() * scale  # type: ignore[operator]
        # At least 2 px: a step of milliseconds next to a 10-minute estimate must still show.
        took_w = max((row.duration or 0.0) * scale, 2.0)
        colour = _STATUS_COLOURS.get(row.status, "#757575")
        if i % 2:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#fafafa"/>')
        parts.append(f'<text x="4" y="{y + 15}" font-size="12">{html.escape(row.step_id)}</text>')
        if row.estimate_high:
            parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{row.estimate_high * scale:.1f}" height="16" fill="none" stroke="#bdbdbd" stroke-dasharray="3,2"/>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 5}" width="{took_w:.1f}" height="12" fill="{colour}"><title>{html.escape(row.step_id)}: {_secs(row.duration)} (estimate {_secs(row.estimate_high)})</title></rect>')
        times = _secs(row.duration) + (f" / {_secs(row.estimate_high)}" if row.estimate_high else "")
        parts.append(f'<text x="{width - 4}" y="{y + 15}" font-size="11" fill="#616161" text-anchor="end">{html.escape(times)}</text>')
    parts.append(f'<text x="{label_w}" y="{height - 4}" font-size="11" fill="#616161">0 … {_secs(span)} (bar: took, dashed: estimate)</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    run = report.run
    e = html.escape
    rows = "".join(
        f"<tr><td><code>{e(r.step_id)}</code> {e(r.title if r.title != r.step_id else '')}</td><td class='s-{e(r.status)}'>{e(r.status)}</td><td>{r.attempts}</td>"
        f"<td>{_secs(r.duration)}</td><td>{_secs(r.estimate_high)}</td><td>"
        + "<br>".join(f"{'✔' if c.get('ok') else '✘'} {e(str(c.get('name')))}: {e(result_text(c))}" for c in r.checks)
        + (f"<div class='{'note' if r.status == 'skipped' else 'err'}'>{e(r.error)}</div>" if r.error and r.status not in ('passed', 'dry_run') else "")
        + (f"<pre>{e(chr(10).join(r.tail))}</pre>" if r.tail else "")
        + "</td></tr>"
        for r in report.steps
    )
    approvals = "".join(f"<li><code>{e(a.step_id)}</code> by <b>{e(a.by)}</b> at {_when(a.at)}{': ' + e(a.comment) if a.comment else ''}</li>" for a in report.approvals)
    criteria = "".join(f"<li>{_tick(c.get('ok'))} {e(str(c.get('description')))}</li>" for c in report.criteria)
    summaries = "".join(f"<h3>{e(r.step_id)}</h3><pre>{e(r.summary or '')}</pre>" for r in report.steps if r.summary)
    rollbacks = "".join(f"<li><code>{e(r.step_id)}</code>: {e(r.status)} at {_when(r.finished)}</li>" for r in report.rollbacks)
    sections = [
        f"<h2>Timeline</h2>{timeline_svg(report)}",
        f"<h2>Steps</h2><table><tr><th>step</th><th>status</th><th>attempts</th><th>took</th><th>estimate</th><th>gates</th></tr>{rows}</table>",
    ]
    if summaries:
        sections.append(f"<h2>Summaries</h2>{summaries}")
    if approvals:
        sections.append(f"<h2>Approvals</h2><ul>{approvals}</ul>")
    if criteria:
        sections.append(f"<h2>Success criteria</h2><ul>{criteria}</ul>")
    if rollbacks:
        sections.append(f"<h2>Rollback actions</h2><ul>{rollbacks}</ul>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(run.runbook)} {e(run.run_id)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#212121}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}}
th{{background:#f5f5f5}}.s-passed{{color:#2e7d32}}.s-failed,.err{{color:#c62828}}.s-refused,.s-awaiting_approval{{color:#ef6c00}}
.s-skipped,.note{{color:#757575}}.s-dry_run{{color:#5c6bc0}}pre{{background:#f5f5f5;padding:8px;overflow-x:auto}}
</style></head><body>
<h1>Change report: {e(run.runbook)} ({e(run.env)})</h1>
<p>Run <code>{e(run.run_id)}</code>{' (dry run)' if run.dry_run else ''} — <b>{e(run.status)}</b> — by {e(run.actor)} on {e(run.host)};
started {_when(run.started_at)}, finished {_when(run.finished_at)}, took {_secs(report.duration)}.</p>
{''.join(sections)}
</body></html>
"""


RENDERERS = {"md": render_markdown, "json": render_json, "html": render_html}
