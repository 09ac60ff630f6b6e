"""``pause_when``: the backfill waits while the database is unwell, says why, and goes on by itself."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runbook.process import ProcessSupervisor
from tests.steps.test_backfill import MemoryCheckpoints, db_url, run_backfill  # noqa: F401 (fixture)
from tests.steps.test_backfill_keys import ROWS, WHERE, expected, forms, make_items, read_items

BATCHES = {"batch_size": 20, "min_batch": 20, "max_batch": 20}


class Lines(list[str]):
    """The step's output lines; ``when(text, act)`` runs ``act`` in a thread once a line contains ``text``."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[tuple[str, threading.Event]] = []

    def append(self, line: str) -> None:
        super().append(line)
        for text, seen in self.waiters:
            if text in line:
                seen.set()

    def when(self, text: str, act: Callable[[], None]) -> threading.Thread:
        seen = threading.Event()
        self.waiters.append((text, seen))

        def wait_then_act() -> None:
            if seen.wait(60):
                act()

        thread = threading.Thread(target=wait_then_act, daemon=True)
        thread.start()
        return thread


class LongTransaction:
    """Another session with a transaction open on ``items``: a plain SELECT holds its lock until the end."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.conn: sa.Connection | None = None
        self.pid: int | None = None

    def open(self, age: float) -> None:
        self.conn = self.engine.connect()
        own = "pg_backend_pid()" if self.engine.dialect.name == "postgresql" else "CONNECTION_ID()"
        self.pid = self.conn.exec_driver_sql(f"SELECT {own}").scalar_one()
        self.conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one()
        # Old enough to count: the limit in these tests is well below this.
        time.sleep(age)

    def end(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.end()
        self.engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> str:
    """The databases with other sessions to see: PostgreSQL and MariaDB."""
    return str(request.getfixturevalue({"postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]))


def test_a_long_transaction_pauses_the_backfill_until_it_ends(server_url: str, tmp_path: Path) -> None:
    """A real transaction held open by the test on the table: the backfill waits before its first
    batch, says why (pid, age), and goes on by itself once the test ends the transaction."""
    items, xs = make_items(server_url, "uuid")
    holder = LongTransaction(server_url)
    holder.open(age=0.3)
    lines = Lines()
    ender = lines.when("pausing", holder.end)
    events: list[dict[str, Any]] = []
    try:
        outcome = run_backfill(
            server_url, tmp_path, table="items", where=WHERE, lines=lines, progress=events.append,
            pause_when=[{"transactions_older_than": "100ms"}], **forms("uuid")["resolve"], **BATCHES,
        )
    finally:
        ender.join(10)
        holder.close()

    assert outcome.ok, outcome.error
    pausing = next(line for line in lines if line.startswith("pausing"))
    if server_url.startswith("postgresql"):
        assert pausing.startswith(f"pausing after batch 0: long transaction: pid {holder.pid} (idle in transaction) open ")
        assert "on items, over 100ms; re-checking in 1s" in pausing
    else:
        assert pausing.startswith(f"pausing after batch 0: long transaction: thread {holder.pid} (idle in transaction) open ")
        assert "in this database, over 100ms; re-checking in 1s" in pausing
    assert any(line.startswith("resuming after a pause of ") for line in lines)
    assert any("waiting" in e and "long transaction" in e["waiting"] for e in events)
    assert {k: v for k, (v, _) in read_items(server_url, items).items()} == expected(xs)


def test_a_pause_longer_than_max_pause_fails_the_step_and_a_resume_continues(server_url: str, tmp_path: Path) -> None:
    """The transaction opens after two batches and stays: the check after the third pauses, max_pause
    fails the step with the committed batches kept; once it ends, a resume does the rest, each row once."""
    items, xs = make_items(server_url, "text")
    holder = LongTransaction(server_url)
    checkpoints = MemoryCheckpoints()

    def open_after_two_batches(event: dict[str, Any]) -> None:
        if event.get("done") == 40 and holder.conn is None:
            holder.open(age=0.2)

    params: dict[str, Any] = {
        "table": "items", "where": WHERE, "pause_when": [{"transactions_older_than": "50ms", "name": "old transaction"}],
        "health_every": "3 batches", "max_pause": "1s", **forms("text")["resolve"], **BATCHES,
    }
    lines: list[str] = []
    try:
        failed = run_backfill(server_url, tmp_path, checkpoints, progress=open_after_two_batches, lines=lines, **params)
    finally:
        holder.end()
    assert not failed.ok and not failed.refused
    error = failed.error or ""
    assert error.startswith("paused ") and re.search(r"\(max_pause 1s\) and still old transaction: (pid|thread) \d+", error), error
    assert "a resume continues after id " in error
    assert failed.outputs["batches"] == 3 and checkpoints.data is not None and checkpoints.data["batches"] == 3
    done = {k: v for k, (v, _) in read_items(server_url, items).items() if v not in (None, -1)}
    assert 0 < len(done) < len(xs)

    resumed = run_backfill(server_url, tmp_path, checkpoints, **params)
    holder.close()
    assert resumed.ok, resumed.error
    after = read_items(server_url, items)
    assert {k: v for k, (v, _) in after.items()} == expected(xs)
    assert all(touched == 1 for v, touched in after.values() if v not in (None, -1))
    assert resumed.outputs["total"] == ROWS


def test_an_sql_check_pauses_on_either_database_and_a_stop_request_ends_the_wait(db_url: str, tmp_path: Path) -> None:
    """pause_when sql (any query, compared with 'is'): waits while it holds; SIGINT during the wait
    ends the step at once as interrupted; the resume waits again, and goes on once the flag is cleared."""
    items, xs = make_items(db_url, "composite")
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE pause_flag (reason VARCHAR(20))")
        conn.exec_driver_sql("INSERT INTO pause_flag VALUES ('vacuum')")
    supervisor = ProcessSupervisor()
    checkpoints = MemoryCheckpoints()
    params: dict[str, Any] = {
        "table": "items", "where": WHERE, **forms("composite")["update"], **BATCHES,
        "pause_when": [{"sql": "SELECT count(*) FROM pause_flag", "is": "> 0", "name": "maintenance flag"}],
    }
    lines = Lines()
    stopper = lines.when("pausing", lambda: setattr(supervisor, "stop_requested", True))
    stopped = run_backfill(db_url, tmp_path, checkpoints, supervisor=supervisor, lines=lines, **params)
    stopper.join(10)
    assert stopped.interrupted and stopped.outputs["batches"] == 0
    assert "pausing after batch 0: maintenance flag is 1 (> 0); re-checking in 1s" in lines

    def clear_flag() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM pause_flag")

    lines = Lines()
    clearer = lines.when("pausing", clear_flag)
    resumed = run_backfill(db_url, tmp_path, checkpoints, lines=lines, **params)
    clearer.join(10)
    engine.dispose()
    assert resumed.ok, resumed.error
    assert any(line.startswith("resuming after a pause of ") for line in lines)
    assert {k: v for k, (v, _) in read_items(db_url, items).items()} == expected(xs)


def test_built_in_checks_on_sqlite_are_noted_once_and_healthy_postgresql_never_waits(db_url: str, tmp_path: Path) -> None:
    """replication_lag and transactions_older_than: not applicable on SQLite (said once); on a
    PostgreSQL without replicas or old transactions, evaluated every batch without waiting; on
    MariaDB, which is no replica here, the lag is said not to apply (once)."""
    items, xs = make_items(db_url, "uuid")
    lines: list[str] = []
    outcome = run_backfill(
        db_url, tmp_path, table="items", where=WHERE, lines=lines, health_every="1 batch",
        pause_when=[{"replication_lag": "10s"}, {"transactions_older_than": "1m"}], **forms("uuid")["update"], **BATCHES,
    )
    assert outcome.ok, outcome.error
    assert not any(line.startswith("pausing") for line in lines)
    notes = [line for line in lines if line.startswith("pause_when:")]
    if db_url.startswith("sqlite"):
        assert notes == [
            "pause_when: replication lag is not applicable on sqlite; ignored",
            "pause_when: long transaction is not applicable on sqlite; ignored",
        ]
    elif db_url.startswith("mysql"):
        assert notes == ["pause_when: replication lag: this server is not a replica (give the check a replica's connection); ignored"]
    else:
        assert notes == []
    assert {k: v for k, (v, _) in read_items(db_url, items).items()} == expected(xs)


def test_pause_when_is_checked_when_the_runbook_is_loaded() -> None:
    from pydantic import ValidationError

    from runbook.steps.backfill import BackfillParams

    base: dict[str, Any] = {"connection": "db", "table": "t", "key": "id", "where": "x IS NULL",
                            "update": "UPDATE t SET x = 1 WHERE id BETWEEN :lo AND :hi"}
    with pytest.raises(ValidationError, match="exactly one of replication_lag"):
        BackfillParams(**base, pause_when=[{"replication_lag": "1s", "sql": "SELECT 1", "is": "> 0"}])
    with pytest.raises(ValidationError, match="'is' goes with 'sql'"):
        BackfillParams(**base, pause_when=[{"sql": "SELECT 1"}])
    with pytest.raises(ValidationError, match="not understood"):
        BackfillParams(**base, pause_when=[{"sql": "SELECT 1", "is": "=> 1"}])
    params = BackfillParams(**base, health_every="5 batches", max_pause="2m", pause_when=[{"transactions_older_than": "30s"}])
    assert params.health_every.batches == 5 and params.max_pause == 120.0
