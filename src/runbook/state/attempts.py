"""Rows of ``step_attempts``: every attempt of every step (and rollback) of a run.

Attempts are numbered 1, 2, ... per (run, step) across kinds, so (run, step,
attempt) names one row. The number is computed in the INSERT itself; on
PostgreSQL two writers may compute the same one, and the loser retries.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.records import AttemptRecord, Writer, require_one_of
from runbook.state.schema import runs, step_attempts
from runbook.status import StepStatus

ATTEMPT_STATUSES = frozenset(StepStatus) - {StepStatus.RUNNING}
# "carried": a copy of a step that passed in an earlier run, counted by --from/--only.
ATTEMPT_KINDS = frozenset({"step", "rollback", "carried"})

_COLUMNS = tuple(step_attempts.c[name] for name in AttemptRecord.__dataclass_fields__)
_INSERT = (
    sa.insert(step_attempts)
    .values(
        attempt=sa.select(sa.func.coalesce(sa.func.max(step_attempts.c.attempt), 0) + 1)
        .where(
            step_attempts.c.run_id == sa.bindparam("key_run_id"),
            step_attempts.c.step_id == sa.bindparam("key_step_id"),
        )
        .scalar_subquery()
    )
    .returning(step_attempts.c.attempt)
)
# Bound names differ from column names: an UPDATE reads column-named parameters as SET values.
_KEY = sa.and_(
    step_attempts.c.run_id == sa.bindparam("key_run_id"),
    step_attempts.c.step_id == sa.bindparam("key_step_id"),
    step_attempts.c.attempt == sa.bindparam("key_attempt"),
)
_FINISH = sa.update(step_attempts).where(_KEY)
_INTERRUPT = sa.update(step_attempts).where(_KEY, step_attempts.c.status == "running").values(status="interrupted")
_OLDEST_FIRST = (step_attempts.c.started_at, step_attempts.c.step_id)


def insert(
    conn: Connection,
    run_id: str,
    step_id: str,
    *,
    kind: str,
    status: str,
    fingerprint: str,
    writer: Writer,
    error: str | None = None,
    outputs: dict[str, Any] | None = None,
    log_path: str | None = None,
) -> int:
    """Record an attempt, running or already ended as ``status``; returns its number."""
    now = local_now()
    values = {
        "key_run_id": run_id,
        "key_step_id": step_id,
        "run_id": run_id,
        "step_id": step_id,
        "kind": kind,
        "status": status,
        "fingerprint": fingerprint,
        "pid": writer.pid,
        "pid_started": writer.pid_started,
        "host": writer.host,
        "started_at": now,
        "finished_at": None if status == "running" else now,
        "outputs": outputs,
        "error": error,
        "checks": None,
        "log_path": log_path,
    }
    return int(conn.execute(_INSERT, values).scalar_one())


def finish(
    conn: Connection,
    run_id: str,
    step_id: str,
    attempt: int,
    *,
    status: str,
    outputs: dict[str, Any] | None,
    error: str | None,
    checks: list[dict[str, Any]] | None,
    log_path: str | None,
) -> bool:
    """Whether the attempt exists (and now ended as ``status``)."""
    require_one_of(status, ATTEMPT_STATUSES, "attempt status")
    values = {
        "key_run_id": run_id,
        "key_step_id": step_id,
        "key_attempt": attempt,
        "status": status,
        "finished_at": local_now(),
        "outputs": outputs,
        "error": error,
        "checks": checks,
        "log_path": log_path,
    }
    return bool(conn.execute(_FINISH, values).rowcount)


def mark_interrupted(conn: Connection, run_id: str, step_id: str, attempt: int) -> None:
    """Close an attempt left running by a dead process; a finished one is left as it ended."""
    conn.execute(
        _INTERRUPT, {"key_run_id": run_id, "key_step_id": step_id, "key_attempt": attempt, "finished_at": local_now()}
    )


def latest_per_step(conn: Connection, run_id: str) -> dict[str, AttemptRecord]:
    """The latest 'step' (or carried) attempt of every step of the run, in the order they started."""
    latest = (
        sa.select(step_attempts.c.step_id, sa.func.max(step_attempts.c.attempt).label("attempt"))
        .where(step_attempts.c.run_id == run_id, step_attempts.c.kind.in_(("step", "carried")))
        .group_by(step_attempts.c.step_id)
        .subquery()
    )
    query = (
        sa.select(*_COLUMNS)
        .join(latest, sa.and_(step_attempts.c.step_id == latest.c.step_id, step_attempts.c.attempt == latest.c.attempt))
        .where(step_attempts.c.run_id == run_id)
        .order_by(*_OLDEST_FIRST)
    )
    return {row.step_id: AttemptRecord(*row) for row in conn.execute(query)}


def latest_real(conn: Connection, runbook: str, env: str, *, exclude_run: str | None) -> dict[str, AttemptRecord]:
    """The newest 'step' attempt of every step across the real runs of ``runbook`` in ``env``."""
    query = (
        sa.select(*_COLUMNS)
        .join(runs, runs.c.run_id == step_attempts.c.run_id)
        .where(runs.c.runbook == runbook, runs.c.env == env, runs.c.dry_run == sa.false(), step_attempts.c.kind == "step")
        .order_by(step_attempts.c.started_at, step_attempts.c.attempt)
    )
    if exclude_run is not None:
        query = query.where(runs.c.run_id != exclude_run)
    return {row.step_id: AttemptRecord(*row) for row in conn.execute(query)}


def running(conn: Connection, runbook: str, env: str) -> list[AttemptRecord]:
    """Attempts still marked 'running' in real runs of ``runbook`` in ``env``, oldest first."""
    query = (
        sa.select(*_COLUMNS)
        .join(runs, runs.c.run_id == step_attempts.c.run_id)
        .where(
            runs.c.runbook == runbook,
            runs.c.env == env,
            runs.c.dry_run == sa.false(),
            step_attempts.c.status == "running",
        )
        .order_by(*_OLDEST_FIRST)
    )
    return [AttemptRecord(*row) for row in conn.execute(query)]


def of_run(conn: Connection, run_id: str, step_id: str | None) -> list[AttemptRecord]:
    """Every attempt of the run (or of one step), oldest first."""
    query = sa.select(*_COLUMNS).where(step_attempts.c.run_id == run_id)
    if step_id is not None:
        query = query.where(step_attempts.c.step_id == step_id)
    query = query.order_by(*_OLDEST_FIRST, step_attempts.c.attempt)
    return [AttemptRecord(*row) for row in conn.execute(query)]
