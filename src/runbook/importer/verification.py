"""Blocks that say what a step should have done: its expected output, and SQL that checks it."""

from __future__ import annotations

import re
from typing import Any

from runbook.importer import sql
from runbook.importer.draft import TODO, Draft, DraftStep
from runbook.importer.markdown import Fence, Lines
from runbook.importer.yamltext import Comment


def expected_output(draft: Draft, step: DraftStep, fence: Fence, label: str) -> None:
    """``**Expected Output**:`` and a block: the step's description; alembic's ``Running upgrade X -> REV`` also a gate."""
    step.description.append(f"{label}:\n{fence.content.rstrip()}")
    step.mentions.append(fence.content)
    revisions = re.findall(r"Running upgrade .*?->\s*([0-9a-zA-Z_]+)", fence.content)
    if step.kind == "alembic" and revisions:
        step.gates.append({"check": "alembic_revision", "name": f"alembic current shows {revisions[-1]}", "connection": sql.DB, "current": revisions[-1]})
        draft.uses_database = True
        draft.ledger.note(fence.lines, f"expected output: the step's description, and a gate: alembic current is {revisions[-1]}", step)
    else:
        draft.ledger.note(fence.lines, "expected output: the step's description", step)


def sql_block(draft: Draft, before: DraftStep | None, fence: Fence, label: str | None) -> DraftStep | None:
    """Queries after a step are its gates; other SQL is a ``sql`` step of its own, returned to be added."""
    statements, trailing = sql.statements(fence)
    draft.uses_database = True
    reading = bool(statements) and all(s.read_only for s in statements)
    made: DraftStep | None = None
    if reading and before is not None:
        step = before
        for statement in statements:
            translated = sql.check_for(statement)
            step.gates.append(with_comments(translated.check, translated.comments))
            draft.ledger.note(statement.lines, f"a gate ({translated.check['check']})", step)
    else:
        step = made = DraftStep(label or (statements[0].title if statements else None) or "Run the SQL", "sql", sql.sql_step_params(fence), fence.lines)
        if reading:
            step.dry_run = "safe"
            for statement in (s for s in statements if s.expected):
                translated = sql.check_for(statement)
                step.gates.append(with_comments(translated.check, translated.comments))
        else:
            step.comments.append(f"{TODO}: say how to undo these statements (rollback:), or mark the step irreversible: true")
    for number, comment in trailing:
        step.description.append(comment)
        draft.ledger.note(Lines(number, number), "a comment after the last statement: the step's description", step)
    for lines in fence.fence_lines():
        draft.ledger.note(lines, "a fence of a SQL block")
    return made


def with_comments(check: dict[str, Any], comments: list[str]) -> dict[Any, Any]:
    """A check with YAML comments above its keys."""
    if not comments:
        return check
    return {**{Comment(c): None for c in comments}, **check}
