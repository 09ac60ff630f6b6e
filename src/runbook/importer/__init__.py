"""``runbook import``: a Markdown deployment checklist -> a draft runbook.

markdown.py parses; sections.py says which part of the checklist a section is;
blocks.py reads the steps (shell blocks: shell.py, commands.py, frameworks.py;
SQL and expected output: sql.py, verification.py; tables: tables.py; stated
orders: order.py; pre-deployment checks: precheck.py; metadata: meta.py);
appendix.py reads rollback options, criteria, troubleshooting and
announcements. resolve.py decides what needs the whole document; emit.py and
yamltext.py write the YAML; explain.py accounts for every source line. Nothing
here is imported by the other commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runbook.errors import InvalidChecklist
from runbook.importer import emit, explain, meta, resolve
from runbook.importer.draft import TODO, Draft
from runbook.importer.markdown import parse
from runbook.importer.sections import read_document

MAX_CHECKLIST_BYTES = 2 * 1024 * 1024  # the size of the largest runbook runbook reads
# C0/C1 control characters (tab and line feed aside) cannot be written in a runbook; bidirectional
# overrides and isolates could make a command read differently from what runs ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass
class Imported:
    name: str
    yaml: str
    explain: str
    steps: int
    options: int
    todos: int


def read_checklist(path: Path) -> str:
    """The checklist's text; an empty, binary, oversized or unreadable file is an ``InvalidChecklist``."""
    try:
        size = path.stat().st_size
        if size > MAX_CHECKLIST_BYTES:
            raise InvalidChecklist(f"{path} is {size:,} bytes; a checklist may be at most {MAX_CHECKLIST_BYTES:,}")
        with path.open("rb") as file:
            raw = file.read(MAX_CHECKLIST_BYTES + 1)
    except IsADirectoryError as err:
        raise InvalidChecklist(f"{path} is a directory, not a Markdown file") from err
    except OSError as err:
        raise InvalidChecklist(f"cannot read {path}: {err.strerror or err}") from err
    if len(raw) > MAX_CHECKLIST_BYTES:
        raise InvalidChecklist(f"{path} is larger than {MAX_CHECKLIST_BYTES:,} bytes, the limit for a checklist")
    if b"\x00" in raw or raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidChecklist(f"{path} is a binary file (or UTF-16), not Markdown text", hint="save the checklist as UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InvalidChecklist(f"{path}:{line}: not UTF-8 text", hint="save the checklist as UTF-8") from err
    if not text.strip():
        raise InvalidChecklist(f"{path} is empty: there is nothing to import")
    return text


def import_checklist(text: str, *, source_name: str, name: str | None = None) -> Imported:
    """Translate a checklist; raise ``InvalidChecklist`` if it holds no steps."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("\ufffd", text)
    document = parse(text)
    draft = Draft(source_name)
    if document.front_matter is not None and document.front_matter_lines is not None:
        meta.read_front_matter(document.front_matter, document.front_matter_lines, draft)
    read_document(document, draft)
    if not draft.steps:
        raise InvalidChecklist(
            f"{source_name}: found no steps to import",
            hint="a checklist needs step headings (### Step 1: ...), shell or SQL blocks, numbered or checkbox lists, or a table with a command column",
        )
    resolve.finish(draft)
    explain.account_for_every_line(draft, document.lines)
    runbook_name = emit.runbook_name(draft, name)
    yaml_text = emit.to_yaml(draft, runbook_name)
    return Imported(
        runbook_name,
        yaml_text,
        explain.render(draft, document.lines),
        len(draft.steps),
        len(draft.options),
        yaml_text.count(TODO),
    )
