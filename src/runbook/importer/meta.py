"""Who, how risky, how long: front matter, ``**Priority**:`` lines, contacts, related links."""

from __future__ import annotations

import re
from typing import Any

from runbook.errors import InvalidRunbook
from runbook.importer.draft import TODO, Draft
from runbook.importer.markdown import Block, Lines, ListBlock, Paragraph, Section, Table, is_layout
from runbook.importer.text import code_spans, dashed_label, estimate, plain, slug, strong_label

_KEYS = {
    "priority": "priority",
    "severity": "priority",
    "urgency": "priority",
    "risk": "risk",
    "risk level": "risk",
    "impact": "risk",
    "owner": "owner",
    "owners": "owner",
    "team": "owner",
    "author": "owner",
    "dri": "owner",
    "change owner": "owner",
    "change technician": "owner",
    "time tracking": "estimate",
    "responsible": "owner",
    "maintainer": "owner",
    "estimated time": "estimate",
    "estimate": "estimate",
    "estimated duration": "estimate",
    "expected duration": "estimate",
    "duration": "estimate",
    "eta": "estimate",
    "time required": "estimate",
    "total time": "estimate",
    "version": "version",
    "tags": "tags",
    "labels": "tags",
    "ticket": "link",
    "jira": "link",
    "issue": "link",
    "change request": "link",
    "change id": "link",
    "cr": "link",
    "pr": "link",
    "pull request": "link",
    "runbook": "link",
    "title": "title",
    "name": "name",
    "description": "description",
    "summary": "description",
}


def metadata_line(line: str) -> tuple[str, str, str] | None:
    """``**Priority**: BLOCKER``, ``**Owner** - @sam`` or ``Owner: @sam`` -> (field, label, value);
    None for anything else, labels runbook has no field for included (they stay prose)."""
    label = strong_label(line) or dashed_label(line)
    if label is None:
        found = re.match(r"^\s*([A-Za-z][A-Za-z ]{1,24}):\s+(\S.*)$", line)
        if found is None:
            return None
        label = (found[1].strip(), found[2].strip())
    key = plain(label[0]).strip().lower()
    if not label[1] or key not in _KEYS:
        return None
    return (_KEYS[key], label[0], label[1])


def set_metadata(draft: Draft, item: tuple[str, str, str], lines: Lines) -> None:
    field, label, value = item
    text = plain(value)
    ledger = draft.ledger
    if field == "estimate":
        found = estimate(text)
        if found is not None:
            draft.metadata["estimate"] = found
            ledger.note(lines, f"metadata.estimate: {found}")
            return
    elif field == "tags":
        draft.metadata["tags"] = [t.strip() for t in re.split(r"[,;]", text) if t.strip()]
        ledger.note(lines, "metadata.tags")
        return
    elif field == "link":
        draft.links[slug(label)] = text
        ledger.note(lines, f"metadata.links.{slug(label)}")
        return
    elif field == "title":
        draft.title = text
        ledger.note(lines, "the title: the runbook's name")
        return
    elif field == "name":
        draft.name = text
        ledger.note(lines, "the runbook's name")
        return
    elif field == "description":
        draft.description.append(text)
        ledger.note(lines, "the runbook's description")
        return
    elif field in ("priority", "risk", "owner", "version"):
        draft.metadata[field] = text
        ledger.note(lines, f"metadata.{field}")
        return
    draft.comments.append(f"{TODO}: {label}: {text} (line {lines}) has no place in a runbook's metadata")
    ledger.note(lines, f"{label!r}: a {TODO} comment at the top")


def read_front_matter(text: str, lines: Lines, draft: Draft) -> None:
    from runbook.yamlsource import load_yaml

    try:
        data: Any = load_yaml(text, "front matter").data
    except InvalidRunbook as err:
        draft.comments.append(f"{TODO}: the front matter (lines {lines}) is not YAML ({err.diagnostics[0].message}):\n{text}")
        draft.ledger.note(lines, f"front matter that is not YAML: a {TODO} comment at the top")
        return
    if not isinstance(data, dict):
        draft.comments.append(f"{TODO}: the front matter (lines {lines}) is not a mapping:\n{text}")
        draft.ledger.note(lines, f"front matter that is not a mapping: a {TODO} comment at the top")
        return
    draft.ledger.note(Lines(lines.first, lines.first), "the start of the front matter")
    draft.ledger.note(Lines(lines.last, lines.last), "the end of the front matter")
    for number, (key, value) in enumerate(data.items()):
        where = _key_line(text, key, lines)
        if isinstance(value, list) and key.lower() in ("tags", "labels"):
            draft.metadata["tags"] = [str(v) for v in value]
            draft.ledger.note(where, "metadata.tags")
        elif isinstance(value, dict) and key.lower() in ("links", "references"):
            for name, target in value.items():
                draft.links[slug(str(name))] = str(target)
            draft.ledger.note(where, "metadata.links")
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            set_metadata(draft, (_KEYS.get(key.lower().replace("_", " "), "other"), str(key), str(value)), where)
        else:
            draft.comments.append(f"{TODO}: front matter {key}: {value!r} (line {where}) has no place in a runbook")
            draft.ledger.note(where, f"front matter {key!r}: a {TODO} comment at the top")


def _key_line(text: str, key: str, lines: Lines) -> Lines:
    """The lines of ``key:`` and its value in the front matter (up to the next top-level key)."""
    rows = text.split("\n")
    start = next((i for i, row in enumerate(rows) if re.match(rf"^['\"]?{re.escape(key)}['\"]?\s*:", row)), None)
    if start is None:
        return Lines(lines.first + 1, lines.last - 1)
    end = start
    while end + 1 < len(rows) and (not rows[end + 1].strip() or rows[end + 1][:1] in (" ", "\t", "-")):
        end += 1
    return Lines(lines.first + 1 + start, lines.first + 1 + end)


# ---------------------------------------------------------------- contacts and links


def _items(blocks: list[Block]) -> list[tuple[Lines, str, Block]]:
    """Each list item (and each line of a paragraph) of ``blocks``, with its lines."""
    found: list[tuple[Lines, str, Block]] = []
    for block in blocks:
        if is_layout(block):
            found.append((block.lines, "", block))
        elif isinstance(block, ListBlock):
            for item in block.items:
                found.append((item.lines, item.text, block))
        elif isinstance(block, Paragraph):
            for i, line in enumerate(block.text.split("\n")):
                found.append((Lines(block.lines.first + i, block.lines.first + i), line, block))
        else:
            found.append((block.lines, getattr(block, "text", ""), block))
    return found


def _section_blocks(section: Section, draft: Draft, what: str) -> list[Block]:
    blocks: list[Block] = []
    for part in section.walk():
        if part.heading is not None:
            draft.ledger.note(part.heading, what)
        blocks += part.blocks
    return blocks


def read_contacts(section: Section, draft: Draft) -> None:
    for lines, text, block in _items(_section_blocks(section, draft, "the heading of the contacts: metadata.escalation")):
        label = strong_label(text)
        if isinstance(block, (ListBlock, Paragraph)) and label is not None and label[1]:
            role, rest = label[0], plain(label[1])
            contact: dict[str, str] = {"role": role}
            if re.match(r"^(?:if|when|after|once)\b", rest, re.I):
                contact["when"] = rest
            else:
                parts = [p.strip() for p in re.split(r"\s+[-–—]\s+", rest, maxsplit=1)]
                if len(parts) == 2:
                    contact["name"], contact["contact"] = parts
                else:
                    contact["contact"] = parts[0]
            draft.escalation.append(contact)
            if re.search(r"\[[A-Z][\w ]*\]", rest):
                draft.comments.append(f"{TODO}: fill in the contact of {role} (line {lines}): {rest}")
            draft.ledger.note(lines, f"metadata.escalation: {role}")
        elif plain(text).strip():
            draft.comments.append(f"{TODO}: about contacts (line {lines}): {plain(text)}")
            draft.ledger.note(lines, f"a {TODO} comment at the top")
        else:
            draft.ledger.note(lines, "nothing to translate")


def read_links(section: Section, draft: Draft) -> None:
    for lines, text, block in _items(_section_blocks(section, draft, "the heading of the related links: metadata.links")):
        label = strong_label(text)
        spans = code_spans(text)
        url = re.search(r"\]\(([^)\s]+)", text) or re.search(r"https?://\S+", text)
        target = spans[0] if spans else (url[1] if url and url.groups() else url[0] if url else None)
        if isinstance(block, (ListBlock, Paragraph)) and target:
            name = slug(label[0] if label else plain(text).split(":")[0], limit=3)
            draft.links[name] = target
            draft.ledger.note(lines, f"metadata.links.{name}")
        elif plain(text).strip():
            draft.description.append(plain(text))
            draft.ledger.note(lines, "part of the runbook's description")
        else:
            draft.ledger.note(lines, "nothing to translate")


def metadata_table(table: Table) -> list[tuple[str, str, str]] | None:
    """A one-row table whose columns are mostly metadata (``| Owner | Risk | Window |``)."""
    if len(table.rows) != 1 or not table.header:
        return None
    keys = [plain(cell).lower() for cell in table.header]
    known = [k for k in keys if k in _KEYS]
    if len(known) * 2 < len(keys):
        return None
    row = table.rows[0].cells
    return [(_KEYS[k], plain(table.header[i]), row[i]) for i, k in enumerate(keys) if k in _KEYS and i < len(row) and plain(row[i])]


def other_columns(table: Table) -> list[tuple[str, str]]:
    row = table.rows[0].cells
    return [(plain(cell), plain(row[i])) for i, cell in enumerate(table.header) if plain(cell).lower() not in _KEYS and i < len(row) and plain(row[i])]
