"""Tables: a plan written as ``step | command | runtime | rollback``, and a timeline of durations."""

from __future__ import annotations

import re

from runbook.importer.commands import Context, steps_from_shell
from runbook.importer.draft import TODO, Draft, DraftStep, TimelineRow
from runbook.importer.markdown import Fence, Lines, Section, Table, is_layout
from runbook.importer.text import code_spans, estimate, plain, step_number
from runbook.importer.yamltext import Comment

_TITLE = ("step", "task", "description", "what", "name", "action", "phase", "stage")
_COMMAND = ("command", "commands", "cmd", "script", "how", "run")
_DURATION = ("runtime", "duration", "time", "estimate", "eta", "est", "takes", "expected time")
_ROLLBACK = ("rollback", "roll back", "undo", "revert", "backout", "back out")
_VERIFY = ("verify", "verification", "check", "validation", "validate", "expected", "success")
_NOTHING = re.compile(r"^(?:|-+|–|—|n/?a|none|nothing|no|—)$", re.I)


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for i, cell in enumerate(header):
        text = plain(cell).lower().rstrip("?:")
        if text in names or any(text.startswith(n + " ") or text.endswith(" " + n) for n in names):
            return i
    return None


def is_steps_table(table: Table) -> bool:
    return _column(table.header, _COMMAND) is not None and bool(table.rows)


def is_timeline_table(table: Table) -> bool:
    return _column(table.header, _DURATION) is not None and _column(table.header, _COMMAND) is None and bool(table.rows)


def _cell(row: list[str], index: int | None) -> str:
    return row[index] if index is not None and index < len(row) else ""


def _code(cell: str) -> str:
    """A cell's command: its code spans (one per line), else its text."""
    spans = code_spans(cell)
    return "\n".join(spans) if spans else plain(cell)


def steps_from_table(table: Table, draft: Draft) -> list[DraftStep]:
    header = table.header
    title_at = _column(header, _TITLE)
    command_at = _column(header, _COMMAND)
    duration_at = _column(header, _DURATION)
    rollback_at = _column(header, _ROLLBACK)
    verify_at = _column(header, _VERIFY)
    used = {title_at, command_at, duration_at, rollback_at, verify_at}
    used |= {i for i, cell in enumerate(header) if plain(cell).lower() in ("#", "no", "no.", "n", "nr", "")}
    steps: list[DraftStep] = []
    for row in table.rows:
        title = step_number(plain(_cell(row.cells, title_at)))[1] or f"row {len(steps) + 1}"
        command = _code(_cell(row.cells, command_at))
        before = len(draft.ledger.entries)
        if _NOTHING.match(command):
            made = [DraftStep(title, "manual", {"instruction": title}, row.lines)]
        else:
            fence = Fence(row.lines, "bash", command + "\n", fenced=False)
            made = steps_from_shell(fence, Context(draft, None)) or [DraftStep(title, "manual", {"instruction": title}, row.lines)]
        del draft.ledger.entries[before:]  # the row is one entry, not lines of a made-up block
        step = made[-1]
        for other in made:
            other.title = title if len(made) == 1 else f"{title}: {other.title}"
            other.own_title = True
            other.lines = row.lines
        runtime = plain(_cell(row.cells, duration_at))
        step.estimate = estimate(runtime) if runtime else None
        _rollback(step, _cell(row.cells, rollback_at))
        _verify(step, _cell(row.cells, verify_at))
        extra = [f"{plain(header[i])}: {plain(cell)}" for i, cell in enumerate(row.cells) if i not in used and i < len(header) and plain(cell)]
        step.description += extra
        steps += made
        draft.ledger.note(row.lines, "a step (a row of the table)", made[0])
    return steps


def _rollback(step: DraftStep, cell: str) -> None:
    if not cell.strip():
        return
    spans = code_spans(cell)
    if spans:
        step.rollback = {"kind": "command", "run": "\n".join(spans)}
        if step.dry_run == "safe":
            step.dry_run = None
    elif _NOTHING.match(plain(cell)):
        step.irreversible = True
        step.comments.append(f"the table's rollback column says {plain(cell)!r}")
    else:
        step.comments.append(f"{TODO}: the table's rollback for this step: {plain(cell)}")


def _verify(step: DraftStep, cell: str) -> None:
    if not cell.strip() or _NOTHING.match(plain(cell)):
        return
    spans = code_spans(cell)
    if spans:
        step.gates.append({"check": "command", "name": plain(cell), "run": spans[0]})
    else:
        step.comments.append(f"{TODO}: the table says to verify: {plain(cell)}")


def read_timeline_table(table: Table, draft: Draft) -> None:
    label_at = _column(table.header, _TITLE) or 0
    duration_at = _column(table.header, _DURATION)
    draft.ledger.note(Lines(table.lines.first, table.rows[0].lines.first - 1), "the header of the timeline")
    for row in table.rows:
        label = plain(_cell(row.cells, label_at))
        found = estimate(_cell(row.cells, duration_at))
        notes = [
            f"{plain(table.header[i])}: {plain(cell)}"
            for i, cell in enumerate(row.cells)
            if i not in (label_at, duration_at) and i < len(table.header) and plain(cell)
        ]
        if found is None:
            draft.ledger.note(row.lines, "a timeline row without a duration runbook understands: nothing to translate")
        elif re.search(r"\btotal\b", label, re.I):
            draft.metadata.setdefault("estimate", found)
            draft.ledger.note(row.lines, f"the total of the timeline: metadata.estimate ({draft.metadata['estimate']})")
        else:
            draft.timeline.append(TimelineRow(label, found, row.lines, "; ".join(notes) or None))


def read_timeline(section: Section, draft: Draft) -> None:
    for part in section.walk():
        if part.heading is not None:
            draft.ledger.note(part.heading, "the heading of the timeline")
        for block in part.blocks:
            if isinstance(block, Table) and is_timeline_table(block):
                read_timeline_table(block, draft)
            elif isinstance(block, Table):
                draft.comments.append(f"{TODO}: a table in the timeline (lines {block.lines}):\n{table_text(block)}")
                draft.ledger.note(block.lines, f"a table: a {TODO} comment at the top")
            else:
                text = "" if is_layout(block) else plain(getattr(block, "text", "") or "")
                if text:
                    draft.comments.append(f"about the timeline (line {block.lines}): {text}")
                    draft.ledger.note(block.lines, "a comment at the top")
                else:
                    draft.ledger.note(block.lines, "layout only")


def table_text(table: Table) -> str:
    rows = [table.header, *(row.cells for row in table.rows)]
    return "\n".join(" | ".join(plain(cell) for cell in row) for row in rows)


def timeline_comment(row: TimelineRow) -> Comment:
    return Comment(f"timeline: {row.label}: {row.estimate}" + (f" ({row.note})" if row.note else ""))
