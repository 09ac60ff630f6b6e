"""Per-host attempts of fleet steps: one row per (run, step, host, attempt).

A host's row is written ``running`` before its command starts (a journal, as
for step attempts): after a kill -9 a resume finds it ``running`` and runs that
host again; a host whose latest step attempt ``passed`` is never run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.schema import host_attempts


@dataclass(frozen=True)
class HostAttempt:
    host: str
    attempt: int
    kind: str
    batch: int
    status: str
    exit_code: int | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


def start(conn: Connection, run_id: str, step_id: str, host: str, *, kind: str, batch: int) -> int:
    last = conn.execute(
        sa.select(sa.func.max(host_attempts.c.attempt)).where(
            host_attempts.c.run_id == run_id, host_attempts.c.step_id == step_id, host_attempts.c.host == host
        )
    ).scalar()
    attempt = int(last or 0) + 1
    conn.execute(
        host_attempts.insert().values(
            run_id=run_id, step_id=step_id, host=host, attempt=attempt, kind=kind, batch=batch, status="running", started_at=local_now()
        )
    )
    return attempt


def finish(conn: Connection, run_id: str, step_id: str, host: str, attempt: int, *, status: str, exit_code: int | None, error: str | None) -> None:
    conn.execute(
        host_attempts.update()
        .where(host_attempts.c.run_id == run_id, host_attempts.c.step_id == step_id, host_attempts.c.host == host, host_attempts.c.attempt == attempt)
        .values(status=status, exit_code=exit_code, error=error, finished_at=local_now())
    )


def of_step(conn: Connection, run_id: str, step_id: str) -> list[HostAttempt]:
    """Every host attempt of the step in the run, oldest first."""
    rows = conn.execute(
        sa.select(host_attempts)
        .where(host_attempts.c.run_id == run_id, host_attempts.c.step_id == step_id)
        .order_by(host_attempts.c.started_at, host_attempts.c.host, host_attempts.c.attempt)
    )
    return [
        HostAttempt(r.host, r.attempt, r.kind, r.batch, r.status, r.exit_code, r.error, r.started_at, r.finished_at)
        for r in rows
    ]


def passed_hosts(attempts: list[HostAttempt], kind: str = "step") -> dict[str, HostAttempt]:
    """Host -> its passing attempt of ``kind``, for hosts whose latest such attempt passed."""
    latest: dict[str, HostAttempt] = {}
    for attempt in attempts:
        if attempt.kind == kind:
            latest[attempt.host] = attempt
    return {host: a for host, a in latest.items() if a.status == "passed"}
