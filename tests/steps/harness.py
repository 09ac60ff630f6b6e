"""What the step kind tests share: a step context on real connections, its checkpoints kept in memory."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from runbook.connections import Connections, normalize_url
from runbook.masking import Masker
from runbook.steps import alembic, sql
from runbook.steps.base import StepContext, StepKind, StepOutcome


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return self.data

    def save(self, data: dict[str, Any]) -> None:
        self.data = data


def closed_port() -> int:
    """A local TCP port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


H = TypeVar("H", bound="StepHarness")


class StepHarness:
    """A step context on one connection named ``db`` (or none), with the lines the last run printed;
    its checkpoints outlive a run, as a step's attempts share them."""

    def __init__(self, url: str | None, workdir: Path) -> None:
        self.url = url
        self.masker = Masker()
        self.connections = Connections({"db": url} if url else {}, self.masker)
        self.lines: list[str] = []
        self.checkpoints = MemoryCheckpoints()
        self.ctx = StepContext(
            run_id="r",
            step_id="s",
            workdir=workdir,
            env=dict(os.environ),
            masker=self.masker,
            connections=self.connections,
            output=self.lines.append,
            checkpoints=self.checkpoints,
        )

    def run_kind(self, kind: StepKind, params: Any) -> StepOutcome:
        self.lines.clear()
        return kind.run(params, self.ctx)

    def dialect(self) -> str:
        return self.connections.dialect("db")

    def scalar(self, query: str) -> Any:
        """On the step's own (pooled) engine: what a session setting left behind shows here."""
        with self.connections.engine("db").connect() as conn:
            return conn.execute(sa.text(query)).scalar()

    @contextmanager
    def own_engine(self) -> Iterator[sa.Engine]:
        """An engine of the test's own, apart from the step's pool; nothing of it stays connected."""
        assert self.url
        engine = sa.create_engine(normalize_url(self.url), poolclass=sa.pool.NullPool)
        try:
            yield engine
        finally:
            engine.dispose()

    def query(self, sql: str) -> list[Any]:
        """The first column of each row, in a transaction of its own (committed)."""
        with self.own_engine() as engine, engine.begin() as conn:
            result = conn.exec_driver_sql(sql)
            return list(result.scalars()) if result.returns_rows else []

    def tables(self) -> set[str]:
        """The tables there are, but alembic's own."""
        with self.own_engine() as engine:
            return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}

    def columns(self, table: str) -> list[str]:
        with self.own_engine() as engine:
            return [column["name"] for column in sa.inspect(engine).get_columns(table)]

    def flavour(self) -> str:
        """MariaDB or MySQL, as the step's messages name the server."""
        return "MariaDB" if "MariaDB" in self.scalar("SELECT VERSION()") else "MySQL"



class SqlHarness(StepHarness):
    def run(self, **params: Any) -> StepOutcome:
        return self.run_kind(sql.KIND, sql.SqlParams.model_validate({"connection": "db", **params}))


class AlembicHarness(StepHarness):
    """The alembic project is the runbook directory's ``proj/alembic.ini``."""

    def run(self, command: str, target: str | None = None, *, dry_run: bool = False, **extra: Any) -> StepOutcome:
        self.ctx.dry_run = dry_run
        params = alembic.AlembicParams.model_validate(
            {"config": "proj/alembic.ini", "connection": "db", "command": command, "target": target, **extra}
        )
        return self.run_kind(alembic.KIND, params)


def disposed_after(harness: H) -> Iterator[H]:
    """For a fixture: ``yield from disposed_after(Harness(url, tmp_path))``."""
    try:
        yield harness
    finally:
        harness.connections.dispose()
