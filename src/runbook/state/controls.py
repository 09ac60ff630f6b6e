"""Rows of ``controls``: requests to a running run (cancel, pause, continue, set) from any machine.

Written by ``runbook cancel|pause|set`` and by ``run --resume`` of a paused run;
read by the run's own process, which polls for ids above the last it saw.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.records import ControlRecord, Writer
from runbook.state.schema import controls

CONTROL_ACTIONS = frozenset({"cancel", "pause", "continue", "set"})

_COLUMNS = tuple(controls.c[name] for name in ControlRecord.__dataclass_fields__)


def insert(conn: Connection, run_id: str, action: str, *, step_id: str | None, params: dict[str, Any], by: str, writer: Writer) -> None:
    values = {"run_id": run_id, "step_id": step_id, "action": action, "params": params, "requested_by": by, "host": writer.host, "at": local_now()}
    conn.execute(sa.insert(controls).values(**values))


def since(conn: Connection, run_id: str, after: int) -> list[ControlRecord]:
    """The run's requests with ids above ``after``, oldest first."""
    query = sa.select(*_COLUMNS).where(controls.c.run_id == run_id, controls.c.id > after).order_by(controls.c.id)
    return [ControlRecord(*row) for row in conn.execute(query)]


def last_id(conn: Connection, run_id: str) -> int:
    """The newest request's id (0 for none): a process starting now ignores what came before it."""
    found = conn.execute(sa.select(sa.func.max(controls.c.id)).where(controls.c.run_id == run_id)).scalar_one()
    return int(found or 0)
