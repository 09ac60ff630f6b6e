"""The draft as runbook YAML, in the order the format documents, with the reviewer's comments."""

from __future__ import annotations

import re
from typing import Any

from runbook.importer.draft import TODO, Draft, DraftStep, Option
from runbook.importer.sql import DB
from runbook.importer.text import slug
from runbook.importer.yamltext import Comment, Flow, Template, dump

_STEP_KEYS_AFTER = ("needs", "preconditions", "confirm", "dry_run", "gates", "rollback", "irreversible", "estimate", "hints", "description")


def runbook_name(draft: Draft, wanted: str | None) -> str:
    """The ``name``: as asked, else from the title without "deployment checklist", else from the file name."""
    if wanted:
        return _name(wanted)
    if draft.name:
        return _name(draft.name)
    if draft.title:
        title = re.sub(r"\b(?:deployment|deploy|release|change|migration)?\s*(?:checklist|runbook|procedure|plan|playbook)\b\s*[:\-–—]?", " ", draft.title, flags=re.I)
        found = slug(title, limit=5, separator="-")
        if found != "step":
            return found
    return _name(re.sub(r"\.(?:md|markdown|txt)$", "", draft.source_name.rsplit("/", 1)[-1], flags=re.I))


def _name(text: str) -> str:
    return (re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:64] or "imported").strip("-_") or "imported"


def to_yaml(draft: Draft, name: str) -> str:
    header = [
        f"Imported from {draft.source_name} by `runbook import`: a draft to review before it is run.",
        "Each TODO comment marks what the importer could not decide; `runbook validate --strict` lists those left.",
        "`runbook import CHECKLIST --explain` shows what each line of the checklist became.",
        *draft.comments,
    ]
    data: dict[Any, Any] = {"name": name}
    if draft.description:
        data["description"] = "\n\n".join(draft.description) + "\n"
    metadata = _metadata(draft)
    if metadata:
        data["metadata"] = metadata
    if draft.uses_database:
        data["vars"] = {
            "db_url": {
                "env": "DATABASE_URL",
                "secret": True,
                "required": True,
                "description": "SQLAlchemy URL of the database the checklist's SQL and checks run on",
            }
        }
        data["connections"] = {DB: Template("{{ vars.db_url }}")}
    data["steps"] = _steps(draft)
    if draft.options:
        data["rollback"] = [*(Comment(n) for n in draft.rollback_notes), *(_option(o) for o in draft.options)]
    if draft.criteria:
        data["success_criteria"] = [{"description": c.description, "check": c.check} if c.check else c.description for c in draft.criteria]
    if draft.messages:
        data["notifications"] = {
            Comment("sent to the console; add a file or webhook channel under `channels:` (`runbook docs format notifications`)"): None,
            "messages": {event: {**{Comment(c): None for c in m.get("comments", [])}, "title": m["title"], "body": m["body"]} for event, m in draft.messages.items()},
        }
    for leftover in draft.leftovers:
        data[Comment(leftover)] = None
    return dump(data, header)


def _metadata(draft: Draft) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("owner", "priority", "risk", "estimate", "version"):
        if draft.metadata.get(key):
            out[key] = draft.metadata[key]
    if draft.metadata.get("tags"):
        out["tags"] = Flow(draft.metadata["tags"])
    if draft.escalation:
        out["escalation"] = draft.escalation
    if draft.links:
        out["links"] = draft.links
    return out


def _steps(draft: Draft) -> list[Any]:
    out: list[Any] = []
    group = None
    for step in draft.steps:
        if step.group is not group and step.group is not None:
            number = f"Step {step.group.number}: " if step.group.number else ""
            out.append(Comment(f"{'-' * 16} {number}{step.group.title}"))
        group = step.group
        out.append(_step(step))
    return out


def _step(step: DraftStep) -> dict[Any, Any]:
    out: dict[Any, Any] = {Comment(c): None for c in step.comments}
    out.update({"id": step.id, "title": step.title, "kind": step.kind, **step.params})
    values: dict[str, Any] = {
        "needs": Flow(dict.fromkeys(s.id for s in step.needs)) if step.needs else None,
        "preconditions": step.preconditions or None,
        "confirm": step.confirm,
        "dry_run": step.dry_run,
        "gates": step.gates or None,
        "rollback": step.rollback,
        "irreversible": True if step.irreversible else None,
        "estimate": step.estimate,
        "hints": step.hints or None,
        "description": "\n\n".join(step.description) + "\n" if step.description else None,
    }
    out.update({key: values[key] for key in _STEP_KEYS_AFTER if values[key] is not None})
    return out


def _option(option: Option) -> dict[Any, Any]:
    out: dict[Any, Any] = {Comment(c): None for c in option.comments}
    out["id"] = option.id
    out["title"] = option.title
    if option.use_when:
        out["use_when"] = option.use_when
    if option.description:
        out["description"] = "\n\n".join(option.description) + "\n"
    out["steps"] = [_step(s) for s in option.steps]
    return out
