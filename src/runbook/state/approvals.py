"""Rows of ``approvals`` (who let a step run) and ``checkpoints`` (a step's progress to resume from)."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.clock import local_now
from runbook.state.records import ApprovalRecord, Writer
from runbook.state.schema import approvals, checkpoints

_COLUMNS = (
    approvals.c.run_id,
    approvals.c.step_id,
    approvals.c.approved_by,
    approvals.c.comment,
    approvals.c.fingerprint,
    approvals.c.at,
    approvals.c.host,
    approvals.c.os_user,
    approvals.c.decision,
)


@functools.cache
def _save_checkpoint(dialect: str) -> sa.Insert:
    """The upsert of a checkpoint, built once per dialect (importing both dialects up front
    would cost every command that reads the store ~25 ms)."""
    key = [checkpoints.c.run_id, checkpoints.c.step_id]
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(checkpoints)
        return pg.on_conflict_do_update(index_elements=key, set_={"data": pg.excluded.data, "updated_at": pg.excluded.updated_at})
    from sqlalchemy.dialects import sqlite

    lite = sqlite.insert(checkpoints)
    return lite.on_conflict_do_update(index_elements=key, set_={"data": lite.excluded.data, "updated_at": lite.excluded.updated_at})

_LOAD_CHECKPOINT = sa.select(checkpoints.c.data).where(
    checkpoints.c.run_id == sa.bindparam("run_id"), checkpoints.c.step_id == sa.bindparam("step_id")
)


def insert(
    conn: Connection, run_id: str, step_id: str, *, by: str, comment: str | None, fingerprint: str, writer: Writer,
    os_user: str | None = None, decision: str = "approved",
) -> None:  # fmt: skip
    conn.execute(
        sa.insert(approvals).values(
            run_id=run_id,
            step_id=step_id,
            approved_by=by,
            comment=comment,
            fingerprint=fingerprint,
            at=local_now(),
            host=writer.host,
            os_user=os_user,
            decision=decision,
        )
    )


def latest(conn: Connection, run_id: str, step_id: str) -> ApprovalRecord | None:
    query = (
        sa.select(*_COLUMNS)
        .where(approvals.c.run_id == run_id, approvals.c.step_id == step_id)
        .order_by(approvals.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else ApprovalRecord(*row)


def of_run(conn: Connection, run_id: str, step_id: str | None = None) -> list[ApprovalRecord]:
    """Approvals and rejections, oldest first (of one step when given)."""
    query = sa.select(*_COLUMNS).where(approvals.c.run_id == run_id).order_by(approvals.c.id)
    if step_id is not None:
        query = query.where(approvals.c.step_id == step_id)
    return [ApprovalRecord(*row) for row in conn.execute(query)]


def save_checkpoint(conn: Connection, run_id: str, step_id: str, data: dict[str, Any]) -> None:
    values = {"run_id": run_id, "step_id": step_id, "data": data, "updated_at": local_now()}
    conn.execute(_save_checkpoint(conn.dialect.name), values)


def load_checkpoint(conn: Connection, run_id: str, step_id: str) -> dict[str, Any] | None:
    data: dict[str, Any] | None = conn.execute(
        _LOAD_CHECKPOINT, {"run_id": run_id, "step_id": step_id}
    ).scalar_one_or_none()
    return data


def clear_checkpoint(conn: Connection, run_id: str, step_id: str) -> None:
    conn.execute(sa.delete(checkpoints).where(checkpoints.c.run_id == run_id, checkpoints.c.step_id == step_id))
