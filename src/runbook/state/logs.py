"""Rows of ``step_logs``: each attempt's output, masked, in chunks of lines.

A chunk is what the step printed in about a quarter of a second (engine/steplog.py),
one row per flush, so a run writes a few rows a second at most however much it
prints. ``id`` grows in the order chunks were committed: ``runbook logs
--follow`` asks for the chunks after the last one it printed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.records import LogChunk
from runbook.state.schema import step_logs

_COLUMNS = tuple(step_logs.c[name] for name in LogChunk.__dataclass_fields__)
_INSERT = sa.insert(step_logs)


def insert(conn: Connection, run_id: str, step_id: str, attempt: int, seq: int, text: str, *, stream: str) -> None:
    values = {"run_id": run_id, "step_id": step_id, "attempt": attempt, "seq": seq, "stream": stream, "text": text, "at": local_now()}
    conn.execute(_INSERT, values)


def of_run(
    conn: Connection, run_id: str, *, step_id: str | None = None, attempt: int | None = None, after: int = 0, limit: int | None = None
) -> list[LogChunk]:
    """Chunks of the run (or of one step, or one attempt of it) committed after chunk ``after``, oldest first."""
    where: list[sa.ColumnElement[bool]] = [step_logs.c.run_id == run_id, step_logs.c.id > after]
    if step_id is not None:
        where.append(step_logs.c.step_id == step_id)
    if attempt is not None:
        where.append(step_logs.c.attempt == attempt)
    query = sa.select(*_COLUMNS).where(*where).order_by(step_logs.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [LogChunk(*row) for row in conn.execute(query)]


def tail(chunks: Sequence[LogChunk], lines: int) -> list[str]:
    """The last ``lines`` lines of the chunks' text."""
    found: list[str] = []
    for chunk in reversed(chunks):
        found[:0] = chunk.text.split("\n")
        if len(found) >= lines:
            break
    return found[-lines:]
