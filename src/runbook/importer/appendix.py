"""The parts after the steps: rollback options, success criteria, troubleshooting, announcements."""

from __future__ import annotations

import re
from typing import Any

from runbook.importer.blocks import StepsReader, list_text
from runbook.importer.draft import TODO, Criterion, Draft, DraftStep, Issue, Option
from runbook.importer.markdown import Block, Fence, ListBlock, Other, Paragraph, Section, Table
from runbook.importer.tables import table_text
from runbook.importer.text import code_spans, plain, step_number
from runbook.importer.yamltext import Template, escape_rendered

_USE_WHEN = re.compile(r"\buse (?:this )?(?:if|when|only if|only when)\s+(?P<when>[^)]+)", re.I)


def _text(block: Block) -> str:
    if isinstance(block, Paragraph):
        return plain(block.text)
    if isinstance(block, ListBlock):
        return list_text(block)
    if isinstance(block, Fence):
        return block.content.rstrip("\n")
    if isinstance(block, Table):
        return table_text(block)
    assert isinstance(block, Other)
    return "" if block.kind in ("rule", "html") else plain(block.text)


# ---------------------------------------------------------------- rollback


def read_rollback(section: Section, draft: Draft) -> None:
    if not section.children:
        _option(section, draft)
        return
    assert section.heading is not None
    draft.ledger.note(section.heading, "the heading of the rollback plan: the rollback options")
    for block in section.blocks:
        text = _text(block)
        if text:
            draft.rollback_notes.append(text)
            draft.ledger.note(block.lines, "about the rollback plan: a comment above the rollback options")
        else:
            draft.ledger.note(block.lines, "layout only")
    for child in section.children:
        _option(child, draft)


def _option(section: Section, draft: Draft) -> None:
    assert section.heading is not None
    title = plain(section.title)
    found = _USE_WHEN.search(title)
    option = Option(title, section.heading, found["when"].strip(" .") if found else None)
    draft.options.append(option)
    draft.ledger.note(section.heading, f"rollback option {step_number(title)[1]!r}" + (" (use_when from it)" if found else ""))
    reader = StepsReader(draft, None, phase="rollback", option=option)
    for part in section.walk():
        if part is not section and part.heading is not None:
            draft.ledger.note(part.heading, f"a heading inside rollback option {title!r}")
        reader.read(part.blocks)
    for lines, text in reader.pending:
        option.description.append(text)
        draft.ledger.note(lines, f"prose: the description of rollback option {title!r}")
    if not option.steps:
        instruction = "\n\n".join(option.description) or title
        option.steps.append(DraftStep(step_number(title)[1], "manual", {"instruction": instruction}, section.heading))


# ---------------------------------------------------------------- success criteria


def read_success(section: Section, draft: Draft) -> None:
    for part in section.walk():
        if part.heading is not None:
            draft.ledger.note(part.heading, "the heading of the success criteria")
        for block in part.blocks:
            if isinstance(block, ListBlock):
                _criteria(block, draft)
            elif _text(block):
                draft.ledger.note(block.lines, "introduces the success criteria: nothing to translate")
            else:
                draft.ledger.note(block.lines, "layout only")


def _criteria(block: ListBlock, draft: Draft) -> None:
    for item in block.items:
        text = plain(item.text)
        draft.criteria.append(Criterion(text, item.text_lines, code=code_spans(item.text)))
        for nested in item.blocks:
            if isinstance(nested, ListBlock):
                _criteria(nested, draft)
            else:
                draft.criteria[-1].description += "\n" + _text(nested)
                draft.ledger.note(nested.lines, "part of the success criterion above")


# ---------------------------------------------------------------- troubleshooting


def read_troubleshooting(section: Section, draft: Draft) -> None:
    assert section.heading is not None
    if not section.children:
        issue = Issue(re.sub(r"^(?:issue|problem|error|symptom)\s*:\s*", "", plain(section.title), flags=re.I), section.heading)
        draft.issues.append(issue)
        draft.ledger.note(section.heading, "a troubleshooting entry: hints")
        _advice(section, issue, draft)
        return
    draft.ledger.note(section.heading, "the heading of the troubleshooting entries: hints of the steps")
    for block in section.blocks:
        if _text(block):
            draft.comments.append(f"about troubleshooting (line {block.lines}): {_text(block)}")
            draft.ledger.note(block.lines, "a comment at the top")
        else:
            draft.ledger.note(block.lines, "layout only")
    for child in section.children:
        assert child.heading is not None
        title = re.sub(r"^(?:issue|problem|error|symptom)\s*:\s*", "", plain(child.title), flags=re.I)
        issue = Issue(title, child.heading)
        draft.issues.append(issue)
        draft.ledger.note(child.heading, "a troubleshooting entry: the error it is about")
        _advice(child, issue, draft)


def _advice(section: Section, issue: Issue, draft: Draft) -> None:
    for part in section.walk():
        if part is not section and part.heading is not None:
            issue.advice.append(plain(part.title))
            draft.ledger.note(part.heading, "part of the troubleshooting entry's advice")
        for block in part.blocks:
            text = _text(block)
            if isinstance(block, Fence):
                text = "\n".join("    " + line for line in text.split("\n"))
            if text:
                issue.advice.append(text)
                issue.mentions.append(text)
                draft.ledger.note(block.lines, "part of the troubleshooting entry's advice")
            else:
                draft.ledger.note(block.lines, "layout only")


# ---------------------------------------------------------------- announcements

_EVENTS = [
    ("failure", r"fail|incident|abort|problem|issue|delay"),
    ("rollback", r"roll[\s-]?back|revert"),
    ("start", r"\bpre\b|pre[\s-]|before|start|begin|kick|maintenance window|upcoming|heads[\s-]?up"),
    ("success", r"\bpost\b|post[\s-]|after|complete|done|finish|success|end|all clear"),
]
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_ +\-]*)\]|<([A-Z][A-Z0-9_ +\-]*)>")
_VALUES = {
    "ENV": "{{ environment }}",
    "ENVIRONMENT": "{{ environment }}",
    "RUN": "{{ run.id }}",
    "RUN ID": "{{ run.id }}",
    "RUN_ID": "{{ run.id }}",
    "RUNBOOK": "{{ runbook.name }}",
    "VERSION": "{{ runbook.version }}",
}


def read_announcements(section: Section, draft: Draft) -> None:
    """Each fenced block is an announcement; the heading or paragraph just before it says when it is sent."""
    label: tuple[str, Block | None] | None = None

    def unused_label() -> None:
        if label is not None and label[1] is not None and _text(label[1]):
            draft.comments.append(f"about announcements (line {label[1].lines}): {_text(label[1])}")
            draft.ledger.note(label[1].lines, "a comment at the top")

    for part in section.walk():
        if part.heading is not None:
            draft.ledger.note(part.heading, "the heading of the announcements: notifications.messages")
            if part is not section:
                unused_label()
                label = (plain(part.title), None)
        for block in part.blocks:
            if isinstance(block, Fence) and label is not None:
                if label[1] is not None:
                    draft.ledger.note(label[1].lines, "the label of the announcement after it (its event)")
                _message(block, label[0], draft)
                label = None
            elif isinstance(block, Paragraph):
                unused_label()
                label = (plain(block.text).rstrip(":"), block)
            elif _text(block):
                draft.comments.append(f"about announcements (line {block.lines}): {_text(block)}")
                draft.ledger.note(block.lines, "a comment at the top")
            else:
                draft.ledger.note(block.lines, "layout only")
    unused_label()


def _message(fence: Fence, label: str, draft: Draft) -> None:
    event = next((name for name, pattern in _EVENTS if re.search(pattern, label, re.I)), None)
    body = fence.content.rstrip("\n") + "\n"
    if event is None or event in draft.messages:
        draft.comments.append(f"{TODO}: an announcement ({label}, lines {fence.lines}) for no event runbook sends on its own:\n{body}")
        draft.ledger.note(fence.lines, f"an announcement with no event of its own: a {TODO} comment at the top")
        return
    unknown: list[str] = []
    first = next((line.strip() for line in body.split("\n") if line.strip()), label)
    message: dict[str, Any] = {"title": Template(escape_rendered(first)), "body": _filled(body, unknown)}
    if unknown:
        message["comments"] = [f"{TODO}: fill in or remove {', '.join(dict.fromkeys(unknown))} (runbook has no value for it)"]
    if label and re.search(r"\d+\s*(?:minutes?|mins?|hours?)\s+before", label, re.I):
        message.setdefault("comments", []).append(f"the checklist sends it {label.split('(')[-1].rstrip(')')}; runbook sends it when the run starts")
    draft.messages[event] = message
    draft.ledger.note(fence.lines, f"notifications.messages.{event}")


def _filled(body: str, unknown: list[str]) -> Template:
    """The body with placeholders runbook can fill (``[ENV]``) as templates; the others are listed in ``unknown``."""
    out: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(body):
        out.append(escape_rendered(body[last : match.start()]))
        name = (match[1] or match[2]).strip()
        if name in _VALUES:
            out.append(_VALUES[name])
        else:
            unknown.append(match[0])
            out.append(escape_rendered(match[0]))
        last = match.end()
    out.append(escape_rendered(body[last:]))
    return Template("".join(out))
