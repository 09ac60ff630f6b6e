"""The schema the database check tests look at, and how they ask a check about it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runbook.checks import CheckContext, CheckKind, CheckResult, get_check_kind
from runbook.connections import Connections
from runbook.masking import Masker

SECRET = "s3cr3t-token"

metadata = sa.MetaData()
parent = sa.Table(
    "parent",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("settings", sa.JSON),
)
child = sa.Table(
    "child",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id", name="fk_child_parent"), nullable=False),
    # No constraint: holds dangling values, as legacy columns do before a migration adds one.
    sa.Column("legacy_parent_id", sa.Integer),
    sa.Column("note", sa.Text),
    sa.Column("code", sa.String(20)),
    sa.Index("ix_child_parent", "parent_id"),
    sa.UniqueConstraint("code", "id", name="uq_child_code"),
)


def build_schema(url: str) -> None:
    """parent/child with an FK and indexes; child 2 and 3 have a NULL note,
    legacy_parent_id 7 and 8 dangle, code 'dup' appears twice."""
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(parent.insert(), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        conn.execute(
            child.insert(),
            [
                {"id": 1, "parent_id": 1, "legacy_parent_id": 1, "note": "x", "code": "c1"},
                {"id": 2, "parent_id": 1, "legacy_parent_id": 7, "note": None, "code": "dup"},
                {"id": 3, "parent_id": 2, "legacy_parent_id": 8, "note": None, "code": "dup"},
                {"id": 4, "parent_id": 2, "legacy_parent_id": None, "note": "y", "code": "c4"},
            ],
        )
    engine.dispose()


def make_context(url: str, workdir: Path, **extra: Any) -> Iterator[CheckContext]:
    """For a fixture: ``yield from make_context(url, tmp_path)``; ``SECRET`` is masked."""
    masker = Masker([SECRET])
    connections = Connections({"db": url}, masker)
    try:
        yield CheckContext(workdir=workdir, env={}, masker=masker, connections=connections, **extra)
    finally:
        connections.dispose()


def check(kind_name: str, ctx: CheckContext, **params: Any) -> CheckResult:
    """Evaluate a check of ``kind_name`` (on the connection ``db``, for a database check)."""
    kind: CheckKind = get_check_kind(kind_name)
    if kind_name != "run_passed":
        params.setdefault("connection", "db")
    return kind.evaluate(kind.Params.model_validate(params), ctx)


def default_schema(ctx: CheckContext) -> str:
    """Where an unqualified table is: PostgreSQL's public, SQLite's main, on MySQL the database."""
    engine = ctx.connections.engine("db")
    return {"postgresql": "public", "sqlite": "main"}.get(engine.dialect.name) or str(engine.url.database)
