"""Rows of ``events``: the audit log of a run, in the order appended."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.records import EventRecord, Writer
from runbook.state.schema import events

_COLUMNS = tuple(events.c[name] for name in EventRecord.__dataclass_fields__)
_INSERT = sa.insert(events)


def insert(
    conn: Connection, run_id: str, event: str, *, writer: Writer, step_id: str | None, detail: dict[str, Any] | None
) -> None:
    values = {
        "run_id": run_id,
        "step_id": step_id,
        "event": event,
        "at": local_now(),
        "actor": writer.actor,
        "pid": writer.pid,
        "detail": detail or {},
    }
    conn.execute(_INSERT, values)


def of_run(conn: Connection, run_id: str) -> list[EventRecord]:
    query = sa.select(*_COLUMNS).where(events.c.run_id == run_id).order_by(events.c.id)
    return [EventRecord(*row) for row in conn.execute(query)]
