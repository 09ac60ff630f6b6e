"""Which part of a checklist a section is, by its heading, and who handles it.

A heading says what its section holds: pre-deployment checks, the steps, the
rollback plan, success criteria, troubleshooting, a timeline, announcements,
contacts, related links, or the required order. A section whose heading says
none of these inherits its parent's part; the top of the document (and any
section of plain steps) is read for steps.
"""

from __future__ import annotations

import re
from enum import Enum

from runbook.importer import appendix, meta, tables
from runbook.importer.blocks import StepsReader
from runbook.importer.draft import Draft, Group
from runbook.importer.markdown import Document, Lines, Section
from runbook.importer.text import plain, split_estimate, step_number


class Part(Enum):
    STEPS = "steps"
    PRE = "pre-deployment"
    ORDER = "order"
    ROLLBACK = "rollback"
    SUCCESS = "success criteria"
    TROUBLE = "troubleshooting"
    TIMELINE = "timeline"
    COMMS = "announcements"
    CONTACTS = "contacts"
    LINKS = "links"


_KEYWORDS: list[tuple[Part, str]] = [
    (Part.ROLLBACK, r"roll[\s-]?back|revert|back[\s-]?out|undo"),
    (Part.SUCCESS, r"success|acceptance criteria|definition of done|done when|exit criteria"),
    (Part.TROUBLE, r"troubleshoot|known issues|common (?:issues|problems)|\bfaq\b|^issues$"),
    (Part.TIMELINE, r"timeline|timing|durations?$|time estimates?"),
    (Part.COMMS, r"communication|announce|notification|status page|\bcomms\b"),
    (Part.CONTACTS, r"contact|escalation|on[\s-]?call|owners?$|people"),
    (Part.LINKS, r"related|references|\blinks\b|see also|documentation|further reading"),
    (Part.PRE, r"pre[\s-]?(?:deploy|deployment|change|flight|migration|checks?|requisites?)|preflight|prerequisites?|before you (?:start|begin)|preparation"),
    (Part.ORDER, r"\border\b|sequence"),
]


def part_of(title: str, inherited: Part) -> Part:
    text = plain(title).lower()
    for part, pattern in _KEYWORDS:
        if re.search(pattern, text):
            return part
    if inherited in (Part.ORDER, Part.PRE) and step_number(title)[0] is None:
        return Part.STEPS if inherited is Part.ORDER else inherited
    return inherited


def read_document(document: Document, draft: Draft) -> None:
    root = document.root
    sections = root.children
    top_level = min((s.level for s in sections), default=1)
    # One H1 holding everything: its title names the runbook, its blocks are the preamble.
    if len([s for s in sections if s.level == top_level]) == 1 and sections[0].level == 1:
        title_section = sections[0]
        draft.title = plain(title_section.title)
        draft.ledger.note(title_section.heading or Lines(1, 1), "the title: the runbook's name")
        preamble = StepsReader(draft, None, phase="preamble")
        preamble.read(root.blocks + title_section.blocks)
        preamble.finish()
        sections = title_section.children
    else:
        preamble = StepsReader(draft, None, phase="preamble")
        preamble.read(root.blocks)
        preamble.finish()
    for section in sections:
        _read(section, draft, Part.STEPS, None)


def _read(section: Section, draft: Draft, inherited: Part, parent: Group | None) -> None:
    part = part_of(section.title, inherited)
    # These parts read their subsections themselves: an option's or an issue's heading says
    # nothing about what part it is ("Option 3: Fix Data Issues" is no troubleshooting).
    handlers = {
        Part.ROLLBACK: appendix.read_rollback,
        Part.SUCCESS: appendix.read_success,
        Part.TROUBLE: appendix.read_troubleshooting,
        Part.TIMELINE: tables.read_timeline,
        Part.COMMS: appendix.read_announcements,
        Part.CONTACTS: meta.read_contacts,
        Part.LINKS: meta.read_links,
    }
    if part in handlers:
        handlers[part](section, draft)
        return
    group = _group(section, draft, parent, part)
    reader = StepsReader(draft, group, phase="pre" if part is Part.PRE else "order" if part is Part.ORDER else "steps")
    reader.read(section.blocks)
    reader.flush_prose()
    for child in section.children:
        _read(child, draft, part, group)
    reader.finish()


def _group(section: Section, draft: Draft, parent: Group | None, part: Part) -> Group:
    assert section.heading is not None
    title, estimate = split_estimate(plain(section.title))
    number, rest = step_number(title)
    group = Group(rest, number, section.heading, estimate, parent)
    draft.groups.append(group)
    what = f"a heading of {part.value}" + (f" (step {number})" if number else "") + (f", estimate {estimate}" if estimate else "")
    draft.ledger.note(section.heading, what)
    return group
