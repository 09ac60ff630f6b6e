"""``runbook report --format md``: a change report a ticket system renders as written."""

from __future__ import annotations

from runbook.checks.base import result_text
from runbook.render.report import Report, decision, given, headline, secs, tick, timing, when


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a "|" (gate names quote psql output) would end the cell."""
    return text.replace("|", "\\|")


def render(report: Report) -> str:
    run = report.run
    md = [
        f"# Change report: {run.runbook} ({run.env})",
        "",
        f"**{headline(report)}**",
        "",
        f"- **Run**: `{run.run_id}`{' (dry run)' if run.dry_run else ''}",
        f"- **Status**: {report.status}",
        f"- **By**: {run.actor} on {run.host} (pid {run.pid})",
        f"- **When**: {timing(report)}",
        "",
        "## Steps",
        "",
        "| step | status | attempts | took | estimate | gates |",
        "|---|---|---|---|---|---|",
    ]
    for row in report.steps:
        gates = "; ".join(f"{'✔' if c.get('ok') else '✘'} {c.get('name')} ({result_text(c, with_expected=False) or 'observed None'})" for c in row.checks)
        title = row.title if row.title != row.step_id else ""
        md.append(f"| `{row.step_id}` {_cell(title)} | {row.status} | {row.attempts} | {secs(row.seconds)} | {secs(row.estimate_high)} | {_cell(gates)} |")
    if report.problems:
        md += ["", "## Problems", ""]
        md += [f"- `{r.step_id}` ({r.status})" + (f": {r.error}" if r.error else "") for r in report.problems]
    if report.failure is not None and (report.failure.tail or report.failure.hints):
        md += ["", f"### Last output of {report.failure.step_id}", "", "```", *report.failure.tail, "```"]
        md += [f"- hint (`{h.get('pattern')}`): {h.get('advice')}" for h in report.failure.hints]
    if report.failure is not None and report.failure.log_path:
        md += ["", f"Full output: `{report.failure.log_path}`"]
    if report.pause is not None:
        md += ["", "## Waiting for approval", "", f"- approve: `{report.pause.approve}`", f"- then: `{report.pause.resume}`"]
    if report.next_steps and report.status != "passed":
        md += ["", "## Next", ""] + [f"- {label}: `{command}`" if command else f"- {label}" for label, _, command in (line.partition(": ") for line in report.next_steps)]
    summaries = [r for r in report.steps if r.summary]
    if summaries:
        md += ["", "## Dry-run and step summaries", ""]
        for row in summaries:
            md += [f"### {row.step_id}", "", "```", (row.summary or "").rstrip(), "```", ""]
    if report.approvals:
        md += ["", "## Approvals", ""]
        md += [f"- `{a.step_id}` {decision(a)} by **{a.by}**{given(a)} at {when(a.at)}" + (f": {a.comment}" if a.comment else "") for a in report.approvals]
    if report.criteria:
        md += ["", "## Success criteria", ""]
        md += [f"- {tick(c.get('ok'))} {c.get('description')}" + (f" ({result_text(c, with_expected=False)})" if c.get("observed") or c.get("error") else "") for c in report.criteria]
    if report.rollbacks:
        md += ["", "## Rollback actions", ""]
        md += [f"- `{r.step_id}`: {r.status} at {when(r.finished)}" + (f" — {r.error}" if r.error else "") for r in report.rollbacks]
    return "\n".join(md) + "\n"
