"""Pre-deployment items that runbook can check instead of asking a person."""

from __future__ import annotations

import re
from typing import Any

from runbook.importer.draft import TODO, DraftStep
from runbook.importer.markdown import Item
from runbook.importer.sql import DB
from runbook.importer.text import code_spans, plain
from runbook.importer.yamltext import Comment, Flow

_BACKUP = re.compile(r"\bback\s?ups?\b|\bsnapshot\b|\bpg_dump\b", re.I)
_LONG_TRANSACTIONS = re.compile(r"long[\s-]?running (?:transactions|queries)|long transactions|idle in transaction", re.I)
_WINDOW = re.compile(r"\b([01]?\d|2[0-3])[:h]([0-5]\d)\s*(?:-|–|to)\s*([01]?\d|2[0-3])[:h]([0-5]\d)\b(?:\s*(UTC|GMT))?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def is_backup(markdown: str) -> bool:
    return bool(_BACKUP.search(plain(markdown)))


def add_backup_gate(step: DraftStep) -> None:
    """A backup item stays a person's job; its gate checks that a fresh backup file is there."""
    step.action = "backup"
    gate: dict[Any, Any] = {
            Comment(f"{TODO}: where do the backups land? put their path (a glob) here, and how fresh one must be"): None,
            "check": "file_fresh",
            "name": "a fresh backup exists",
            "path": "TODO-import/backups/*",
            "max_age": "1h",
    }
    step.gates.append(gate)


def pre_deployment_check(item: Item) -> dict[Any, Any] | None:
    """``Verify no long-running transactions on `plan_subscriptions` `` -> a ``no_long_transactions`` check, ..."""
    text = plain(item.text)
    if _LONG_TRANSACTIONS.search(text):
        tables = [c for c in code_spans(item.text) if _IDENTIFIER.fullmatch(c)]
        tables += [t for t in re.findall(r"\bon (?:the )?(\w+) table", text) if t not in tables]
        check: dict[Any, Any] = {
            Comment(f"{TODO}: how old may a transaction be? the checklist does not say; 30s is a guess"): None,
            "check": "no_long_transactions",
            "name": text,
            "connection": DB,
            "older_than": "30s",
        }
        if tables:
            check["tables"] = Flow(tables)
        return check
    window = _WINDOW.search(text)
    if window and re.search(r"window|between|only", text, re.I):
        start = f"{int(window[1]):02d}:{window[2]}"
        end = f"{int(window[3]):02d}:{window[4]}"
        found: dict[Any, Any] = {"check": "time_window", "name": text, "window": f"{start}-{end}", "timezone": "UTC"}
        if not window[5]:
            found = {Comment(f"{TODO}: the checklist names no time zone; UTC is a guess"): None, **found}
        return found
    return None
