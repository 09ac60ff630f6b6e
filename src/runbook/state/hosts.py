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


def start(conn: Connection, run_id: str, step_id: str, hosts: list[str], *, kind: str, batch: int) -> dict[str, int]:
    """Rows ``running`` for the hosts about to start (in one transaction): host -> its attempt number."""
    rows = conn.execute(
        sa.select(host_attempts.c.host, sa.func.max(host_attempts.c.attempt))
        .where(host_attempts.c.run_id == run_id, host_attempts.c.step_id == step_id, host_attempts.c.host.in_(hosts))
        .group_by(host_attempts.c.host)
    )
    last = {host: int(attempt or 0) for host, attempt in rows}
    attempts = {host: last.get(host, 0) + 1 for host in hosts}
    now = local_now()
    conn.execute(
        host_attempts.insert(),
        [
            {"run_id": run_id, "step_id": step_id, "host": host, "attempt": attempt, "kind": kind, "batch": batch, "status": "running", "started_at": now}
            for host, attempt in attempts.items()
        ],
    )
    return attempts


@dataclass(frozen=True)
class HostEnd:
    """How a host's attempt ended, as recorded."""

    host: str
    attempt: int
    status: str
    exit_code: int | None
    error: str | None


def finish(conn: Connection, run_id: str, step_id: str, ends: list[HostEnd]) -> None:
    now = local_now()
    for end in ends:
        conn.execute(
            host_attempts.update()
            .where(host_attempts.c.run_id == run_id, host_attempts.c.step_id == step_id, host_attempts.c.host == end.host, host_attempts.c.attempt == end.attempt)
            .values(status=end.status, exit_code=end.exit_code, error=end.error, finished_at=now)
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
