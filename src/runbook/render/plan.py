"""``runbook plan`` output as text, Markdown (like the seed checklist) or JSON.

The JSON shape is a documented contract (docs/runbook-format.md):
``{"runbook", "env", "steps": [{"id", "title", "kind", "needs", "preconditions",
"gates", "confirm", "rollback", "estimate"}], "estimate_total_s"}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from runbook.model import format_duration
from runbook.planner import Plan, PlannedStep, RenderedBody, RenderedCheck

JSON_FORMAT_VERSION = 1


def _estimate_text(low: float, high: float) -> str:
    if not high:
        return "no estimate"
    return format_duration(high) if low == high else f"{format_duration(low)}-{format_duration(high)}"


def _first_line(text: str) -> str:
    # A description may be blank: a whitespace-only text, an empty argv list.
    return next(iter(text.strip().splitlines()), "")


def _check_json(check: RenderedCheck) -> dict[str, Any]:
    return {"name": check.label, "check": check.check.check, "on_fail": check.check.on_fail, "what": check.description}


def _body_json(body: RenderedBody | None) -> dict[str, Any] | None:
    return None if body is None else {"kind": body.kind, "what": body.description}


def render_json(plan: Plan) -> str:
    mask = plan.resolved.masker
    runbook = plan.runbook
    data = {
        "format": JSON_FORMAT_VERSION,
        "runbook": runbook.name,
        "env": plan.env,
        "description": runbook.description,
        "steps": [
            {
                "id": s.id,
                "title": s.title,
                "kind": s.body.kind,
                "what": s.body.description,
                "needs": s.step.needs,
                "when": s.step.when,
                "skipped_by_when": s.skipped_by_when,
                "preconditions": [_check_json(c) for c in s.preconditions],
                "gates": [_check_json(c) for c in s.gates],
                "confirm": s.confirm if s.confirm else ("manual step: a person confirms it is done" if s.needs_confirmation else None),
                "rollback": _body_json(s.rollback),
                "irreversible": s.step.irreversible,
                "dry_run": s.dry_run if isinstance(s.dry_run, str) or s.dry_run is None else _body_json(s.dry_run),
                "estimate": s.estimate.high if s.estimate else None,
                "estimate_min": s.estimate.low if s.estimate else None,
                "fingerprint": s.fingerprint,
                # Only for steps on hosts (runbook.fleet): the hosts their ``on:`` resolves to.
                **({"hosts": [h.name for h in s.__dict__.get("_fleet_hosts", [])]} if s.step.on is not None else {}),
            }
            for s in plan.steps
        ],
        "rollback_options": [
            {"id": o.id, "title": o.title, "use_when": o.use_when, "steps": [st.id for st in o.steps]} for o in runbook.rollback
        ],
        "success_criteria": [c.description for c in runbook.success_criteria],
        "estimate_total_s": plan.estimate_high,
        "estimate_total_min_s": plan.estimate_low,
    }
    return mask.mask(json.dumps(data, indent=2, ensure_ascii=False)) + "\n"


def render_text(plan: Plan) -> str:
    runbook = plan.runbook
    lines = [f"Plan: {runbook.name} (env: {plan.env})"]
    if runbook.description:
        lines.append(f"  {_first_line(runbook.description)}")
    meta = runbook.metadata
    facts = [f"{k}: {v}" for k, v in (("priority", meta.priority), ("risk", meta.risk), ("owner", meta.owner)) if v]
    if facts:
        lines.append("  " + " | ".join(facts))
    lines.append("")
    width = len(str(len(plan.steps)))
    for s in plan.steps:
        lines.extend(_text_step(s, width))
    skipped = sum(s.skipped_by_when for s in plan.steps)
    counted = f"{len(plan.steps) - skipped} steps" + (f" ({skipped} skipped here by when:)" if skipped else "")
    lines.append(f"Total estimate: {_estimate_text(plan.estimate_low, plan.estimate_high)} over {counted}")
    if runbook.rollback:
        lines.append("")
        lines.append("Rollback options (runbook rollback RUN --option ID):")
        for option in runbook.rollback:
            lines.append(f"  - {option.id}: {option.title or ''}" + (f"  [use when: {option.use_when}]" if option.use_when else ""))
    return plan.resolved.masker.mask("\n".join(lines)) + "\n"


def _text_step(s: PlannedStep, width: int) -> list[str]:
    est = f"  ~{s.estimate}" if s.estimate else ""
    out = [f"{s.index + 1:>{width}}. {s.id} [{s.body.kind}] {s.title}{est}"]
    pad = " " * (width + 4)
    if s.step.needs:
        out.append(f"{pad}needs: {', '.join(s.step.needs)}")
    if s.step.when:
        out.append(f"{pad}when: {s.step.when}" + ("  (false here: the run skips this step)" if s.skipped_by_when else ""))
    for c in s.preconditions:
        out.append(f"{pad}precondition ({c.check.on_fail}): {c.label}: {c.description}{_on_hosts(c)}")
    if s.needs_confirmation:
        out += _labelled(pad, "confirm: ", s.confirm or "a person confirms the manual step is done")
    out += _labelled(pad, "run: ", s.body.description)
    if s.step.on is not None:
        out.append(f"{pad}on: {_hosts_text(s)}")
    if isinstance(s.dry_run, RenderedBody):
        out.append(f"{pad}dry-run: {_first_line(s.dry_run.description)}")
    elif s.dry_run:
        out.append(f"{pad}dry-run: {s.dry_run}")
    for c in s.gates:
        out.append(f"{pad}gate: {c.label}: {c.description}{_on_hosts(c)}")
    if s.rollback:
        out.append(f"{pad}rollback: {_first_line(s.rollback.description)}")
    elif s.step.irreversible:
        out.append(f"{pad}irreversible")
    out.append("")
    return out


def _hosts_text(s: PlannedStep) -> str:
    """The hosts a fleet step runs on, resolved, and how it rolls out."""
    from runbook.fleet.context import fleet_of_step

    hosts, rollout = fleet_of_step(s)
    return f"{', '.join(h.name for h in hosts)} ({len(hosts)} host{'s' if len(hosts) != 1 else ''}{rollout})"


def _on_hosts(c: RenderedCheck) -> str:
    """`` (on db1, db2)`` for a check on hosts (runbook.fleet), else nothing."""
    hosts = c.__dict__.get("_fleet_hosts")
    return f" (on {', '.join(h.name for h in hosts)})" if hosts else ""


def _labelled(pad: str, label: str, text: str) -> list[str]:
    """``label`` before the first line of ``text``, later lines aligned under it."""
    lines = text.strip().splitlines() or [""]
    return [f"{pad}{label if i == 0 else ' ' * len(label)}{line}" for i, line in enumerate(lines)]


# A run-time value in a plan: <steps.x.outputs.y>, <steps.x.outputs.n + 1>. Bare in Markdown it
# reads as an HTML tag, and a renderer drops it from the page; in a code span it stays visible.
_PLACEHOLDER = re.compile(r"(?<!`)<steps[.\[][^<>\n]*>(?!`)")


def code_span(text: str) -> str:
    """``text`` as one Markdown code span, whatever backticks it holds."""
    text = " ".join(text.splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def prose(text: str, *, indent: str = "") -> str:
    """Text written in the runbook, for Markdown: placeholders in code spans, later lines
    indented under a list item's first (a blank line would otherwise end the item)."""
    text = _PLACEHOLDER.sub(lambda m: code_span(m.group(0)), text.strip())
    return ("\n" + indent).join(text.splitlines()) if indent else text


def render_markdown(plan: Plan) -> str:
    runbook = plan.runbook
    meta = runbook.metadata
    md = [f"# Runbook: {runbook.name} ({plan.env})", ""]
    if runbook.description:
        md += [prose(runbook.description), ""]
    for label, value in (("Priority", meta.priority), ("Risk", meta.risk), ("Owner", meta.owner)):
        if value:
            md.append(f"**{label}**: {value}  ")
    md.append(f"**Estimated Time**: {_estimate_text(plan.estimate_low, plan.estimate_high)}")
    md += ["", "## Steps", ""]
    for s in plan.steps:
        md.append(f"### Step {s.index + 1}: {prose(s.title)} (`{s.id}`, {s.body.kind}{', ~' + str(s.estimate) if s.estimate else ''})")
        md.append("")
        if s.step.needs:
            md += ["Requires: " + ", ".join(f"`{n}` passed" for n in s.step.needs), ""]
        checklist = [f"- [ ] Before: **{prose(c.label)}** — {code_span(c.description)} (on fail: {c.check.on_fail})" for c in s.preconditions]
        if s.needs_confirmation:
            checklist.append(f"- [ ] Confirm: {prose(s.confirm or 'done by hand and confirmed', indent='  ')}")
        if checklist:
            md += [*checklist, ""]
        md += ["```", s.body.description, "```", ""]
        if s.gates:
            md.append("**Verification**:")
            md.append("")
            md += [f"- [ ] **{prose(c.label)}** — {code_span(c.description)}" for c in s.gates]
            md.append("")
        if s.rollback:
            md += [f"**If it fails**: roll back with {code_span(_first_line(s.rollback.description))}", ""]
        elif s.step.irreversible:
            md += ["**Irreversible**: no automatic rollback.", ""]
        if s.step.hints:
            md.append("**Known issues**:")
            md.append("")
            md += [f"- {code_span(pattern)}: {prose(advice, indent='  ')}" for pattern, advice in s.step.hints.items()]
            md.append("")
    if runbook.rollback:
        md += ["## Rollback Plan", ""]
        for option in runbook.rollback:
            md.append(f"### {prose(option.title or option.id)} (`{option.id}`)")
            md.append("")
            if option.use_when:
                md += [f"Use when: {prose(option.use_when)}", ""]
            if option.description:
                md += [prose(option.description), ""]
            md += [f"1. `{st.id}` ({st.kind}): {prose(st.title or '')}" for st in option.steps]
            md.append("")
    if runbook.success_criteria:
        md += ["## Success Criteria", ""]
        md += [f"- [ ] {prose(c.description, indent='  ')}" for c in runbook.success_criteria]
        md.append("")
    if meta.escalation:
        md += ["## Contact & Escalation", ""]
        for c in meta.escalation:
            md.append(f"- **{c.role}**: {' - '.join(x for x in (c.name, c.contact) if x)}" + (f" ({c.when})" if c.when else ""))
        md.append("")
    return plan.resolved.masker.mask("\n".join(md))


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}
