"""``kind: backfill`` - fill a column in keyset batches: resumable, adaptive, gated.

Walks any ordered unique key (integer, UUID, text, or several columns) in
batches of one short transaction each, checkpointed after every commit, and
waits while the database is unwell (``pause_when``). Two forms:

* ``update``: the author's own UPDATE for the batch's range ``:lo``..``:hi``.
* ``resolve``: a SELECT returning ``key``, ``value`` and ``candidates`` for the
  rows still to do; rows are classified and only the resolved ones written,
  each guarded by ``where``.

One idea per module: ``params`` (the step's keys), ``keys`` (the key as the
database has it, and its JSON form), ``walk`` (keyset SQL), ``update`` and
``resolve`` (the two forms), ``health`` (pausing), ``progress``/``sizing``
(counts, ETA, batch size), ``report`` (CSV and summary), ``checkpoint``,
``session`` and ``run`` (the batch loop).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from runbook.steps.backfill.params import BackfillParams
from runbook.steps.backfill.progress import checkpoint_progress
from runbook.steps.base import StepContext, StepOutcome

__all__ = ["KIND", "BackfillParams", "BackfillStep", "checkpoint_progress"]

DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


class BackfillStep:
    name: ClassVar[str] = "backfill"
    Params: ClassVar[type[BaseModel]] = BackfillParams
    # SQL text: a templated value in it must be a number or a checked name (runbook.sqltext).
    sql_keys: ClassVar[frozenset[str]] = frozenset({"where", "update", "resolve", "pause_when.*.sql"})
    changes_data: ClassVar[bool] = True
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: BackfillParams) -> str:
        what = f"backfill {params.target} where {params.where} (batches of {params.batch_size}, keyset on {params.key_text})"
        return f"preview (no writes): {what}" if params.preview else what

    def run(self, params: BackfillParams, ctx: StepContext) -> StepOutcome:
        from runbook.steps.backfill.run import Backfill

        engine = ctx.connections.engine(params.connection)
        if engine.dialect.name not in DIALECTS:
            return StepOutcome(False, error=f"backfill supports postgresql, mysql/mariadb and sqlite, not {engine.dialect.name}")
        return Backfill(params, ctx, engine).run()


KIND = BackfillStep()
