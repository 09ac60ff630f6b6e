"""Check kinds (preconditions, gates, success criteria): one module per kind
behind the ``CheckKind`` protocol, found through this registry."""

from __future__ import annotations

import importlib
from functools import cache

from runbook.checks.base import CheckContext, CheckKind, CheckResult

__all__ = ["CheckContext", "CheckKind", "CheckResult", "CHECK_KINDS", "get_check_kind"]

CHECK_KINDS: dict[str, str] = {
    "command": "runbook.checks.command:KIND",
    "sql": "runbook.checks.sql:KIND",
    "file_exists": "runbook.checks.files:FILE_EXISTS",
    "file_fresh": "runbook.checks.files:FILE_FRESH",
    "table_exists": "runbook.checks.schema:TABLE_EXISTS",
    "column_exists": "runbook.checks.schema:COLUMN_EXISTS",
    "foreign_key_exists": "runbook.checks.schema:FOREIGN_KEY_EXISTS",
    "index_exists": "runbook.checks.schema:INDEX_EXISTS",
    "alembic_revision": "runbook.checks.alembic_revision:KIND",
    "no_long_transactions": "runbook.checks.transactions:KIND",
    "no_nulls": "runbook.checks.data:NO_NULLS",
    "no_orphans": "runbook.checks.data:NO_ORPHANS",
    "row_count": "runbook.checks.data:ROW_COUNT",
    "http": "runbook.checks.http:KIND",
    "run_passed": "runbook.checks.run_passed:KIND",
    "time_window": "runbook.checks.time_window:KIND",
    "value": "runbook.checks.value:KIND",
}


@cache  # called for every check: the import machinery costs microseconds each time
def get_check_kind(name: str) -> CheckKind:
    """The check kind called ``name``; ``KeyError`` when there is none."""
    module_name, attr = CHECK_KINDS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)
