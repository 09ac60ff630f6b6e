"""Step kinds: one module per kind behind the ``StepKind`` protocol.

The registry maps a kind name to where it lives, so that loading a runbook
imports only the kinds it uses, and a kind's heavy dependencies (SQLAlchemy,
alembic) are imported inside ``run``, never on the ``plan`` path.
"""

from __future__ import annotations

import importlib
from functools import cache

from runbook.steps.base import StepContext, StepKind, StepOutcome

__all__ = ["StepContext", "StepKind", "StepOutcome", "STEP_KINDS", "get_step_kind"]

STEP_KINDS: dict[str, str] = {
    "command": "runbook.steps.command:KIND",
    "manual": "runbook.steps.manual:KIND",
    "sql": "runbook.steps.sql:KIND",
    "alembic": "runbook.steps.alembic:KIND",
    "backfill": "runbook.steps.backfill:KIND",
    "http": "runbook.steps.http:KIND",
    "notify": "runbook.steps.notify:KIND",
}


@cache  # called for every step and body: the import machinery costs microseconds each time
def get_step_kind(name: str) -> StepKind:
    """The step kind called ``name``; ``KeyError`` when there is none."""
    module_name, attr = STEP_KINDS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)
