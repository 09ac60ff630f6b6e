"""Rows of ``runs``: one per run, real or dry, from start to end."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.records import RunRecord, Writer, require_one_of
from runbook.state.schema import runs
from runbook.status import RESUMABLE_RUN_STATUSES, RunStatus

RUN_STATUSES = frozenset(RunStatus)
UNFINISHED_RUN_STATUSES = RESUMABLE_RUN_STATUSES

# Selected in dataclass field order so rows map positionally (cheapest).
_COLUMNS = tuple(runs.c[name] for name in RunRecord.__dataclass_fields__)
# Built once: building a Core statement costs about as much as executing it on SQLite.
_INSERT = sa.insert(runs)
_GET = sa.select(*_COLUMNS).where(runs.c.run_id == sa.bindparam("run_id"))
_NEWEST_FIRST = (runs.c.started_at.desc(), runs.c.run_id.desc())


def new_run_id(now: datetime | None = None) -> str:
    """A short, time-sortable run id; the engine draws it before taking the lock."""
    return f"{(now or local_now()):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def insert(conn: Connection, run_id: str, *, writer: Writer, started_at: datetime, **fields: Any) -> None:
    """Record a new running run; ``fields`` are runbook, env, path, fingerprint, dry_run, actor, params and workdir."""
    values = {
        "run_id": run_id,
        **fields,
        "status": "running",
        "host": writer.host,
        "pid": writer.pid,
        "started_at": started_at,
        "finished_at": None,
    }
    conn.execute(_INSERT, values)


def get(conn: Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(_GET, {"run_id": run_id}).first()
    return None if row is None else RunRecord(*row)


def set_status(conn: Connection, run_id: str, status: str, *, finished: bool) -> bool:
    """Whether the run exists (and now has ``status``, finished if asked)."""
    require_one_of(status, RUN_STATUSES, "run status")
    values: dict[str, Any] = {"status": status}
    if finished:
        values["finished_at"] = local_now()
    return bool(conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(**values)).rowcount)


def mark_finished(conn: Connection, run_id: str) -> None:
    conn.execute(
        sa.update(runs).where(runs.c.run_id == run_id, runs.c.finished_at.is_(None)).values(finished_at=local_now())
    )


def owner(conn: Connection, runbook: str, env: str) -> RunRecord | None:
    """The newest unfinished real run of ``runbook`` in ``env``."""
    query = (
        sa.select(*_COLUMNS)
        .where(runs.c.runbook == runbook, runs.c.env == env, runs.c.dry_run == sa.false(), runs.c.finished_at.is_(None))
        .order_by(*_NEWEST_FIRST)
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else RunRecord(*row)


def latest(conn: Connection, runbook: str, env: str, *, unfinished: bool, dry_run: bool | None) -> RunRecord | None:
    query = sa.select(*_COLUMNS).where(runs.c.runbook == runbook, runs.c.env == env)
    if unfinished:
        query = query.where(runs.c.status.in_(sorted(UNFINISHED_RUN_STATUSES)))
    if dry_run is not None:
        query = query.where(runs.c.dry_run == dry_run)
    row = conn.execute(query.order_by(*_NEWEST_FIRST).limit(1)).first()
    return None if row is None else RunRecord(*row)


def newest(conn: Connection, runbook: str | None, env: str | None, limit: int) -> list[RunRecord]:
    query = sa.select(*_COLUMNS)
    if runbook is not None:
        query = query.where(runs.c.runbook == runbook)
    if env is not None:
        query = query.where(runs.c.env == env)
    return [RunRecord(*row) for row in conn.execute(query.order_by(*_NEWEST_FIRST).limit(limit))]
