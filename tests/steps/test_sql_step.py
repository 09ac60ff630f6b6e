"""The sql step kind against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa

from runbook.connections import Connections
from runbook.masking import Masker
from runbook.steps import get_step_kind
from runbook.steps.base import StepContext, StepOutcome
from runbook.steps.sql import KIND, SqlParams, split_statements


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return self.data

    def save(self, data: dict[str, Any]) -> None:
        self.data = data


class Harness:
    """A step context on one connection named ``db``, with the lines it printed."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.masker = Masker()
        self.connections = Connections({"db": url}, self.masker)
        self.lines: list[str] = []
        self.ctx = StepContext(
            run_id="r",
            step_id="s",
            workdir=workdir,
            env=dict(os.environ),
            masker=self.masker,
            connections=self.connections,
            output=self.lines.append,
            checkpoints=MemoryCheckpoints(),
        )

    def run(self, **params: Any) -> StepOutcome:
        return KIND.run(SqlParams.model_validate({"connection": "db", **params}), self.ctx)

    def scalar(self, query: str) -> Any:
        with self.connections.engine("db").connect() as conn:
            return conn.execute(sa.text(query)).scalar()


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(db_url, tmp_path)
    yield harness
    harness.connections.dispose()


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(pg_url, tmp_path)
    yield harness
    harness.connections.dispose()


# ---------------------------------------------------------------- splitting


def test_split_respects_quotes_comments_and_dollar_bodies() -> None:
    script = """
        -- leading comment; not a statement
        CREATE TABLE t (id int, note text);
        INSERT INTO t VALUES (1, 'a;b'), (2, 'it''s; fine');  /* trailing; comment */
        CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END $body$ LANGUAGE plpgsql;
        SELECT "odd;name" FROM t
    """
    assert split_statements(script) == [
        "CREATE TABLE t (id int, note text)",
        "INSERT INTO t VALUES (1, 'a;b'), (2, 'it''s; fine')",
        "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END $body$ LANGUAGE plpgsql",
        'SELECT "odd;name" FROM t',
    ]


def test_split_keeps_trigger_bodies_whole() -> None:
    script = """
        CREATE TRIGGER touch AFTER UPDATE ON t BEGIN
            UPDATE t SET n = CASE WHEN n > 0 THEN n ELSE 0 END WHERE id = new.id;
            INSERT INTO log VALUES (new.id);
        END;
        CREATE TABLE begin_end (id int);
        -- only a comment;
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].startswith("CREATE TRIGGER") and statements[0].endswith("END")
    assert statements[1] == "CREATE TABLE begin_end (id int)"


def test_params_need_exactly_one_source() -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        SqlParams.model_validate({"connection": "db"})
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        SqlParams.model_validate({"connection": "db", "sql": "SELECT 1", "file": "x.sql"})
    with pytest.raises(pydantic.ValidationError):
        SqlParams.model_validate({"connection": "db", "sql": "SELECT 1", "outputs": {}})
    assert get_step_kind("sql") is KIND


def test_describe_shows_connection_and_the_start_of_the_sql() -> None:
    params = SqlParams(connection="main", sql="UPDATE t SET x = 1;\n" + "-- padding\n" * 50)
    text = KIND.describe(params)
    assert text.startswith("[main] UPDATE t SET x = 1;")
    assert len(text) < 320 and text.endswith(" ...")
    assert KIND.describe(SqlParams(connection="main", file="sql/fix.sql")) == "[main] file sql/fix.sql"


# ---------------------------------------------------------------- both databases


def test_multi_statement_outputs(db: Harness) -> None:
    outcome = db.run(
        sql="""
        CREATE TABLE plans (id integer PRIMARY KEY, name varchar(20), mbps integer);
        INSERT INTO plans VALUES (1, 'basic', 50), (2, 'fast', 500), (3, 'max', 1000);
        UPDATE plans SET mbps = mbps * 2 WHERE mbps < :limit;
        SELECT name, mbps FROM plans ORDER BY id;
        """,
        params={"limit": 600},
    )
    assert outcome.ok, outcome.error
    assert outcome.outputs["rowcount"] == 5
    assert outcome.outputs["rows"] == [
        {"name": "basic", "mbps": 100},
        {"name": "fast", "mbps": 1000},
        {"name": "max", "mbps": 1000},
    ]
    assert outcome.outputs["row"] == {"name": "basic", "mbps": 100}
    assert outcome.outputs["value"] == "basic"
    assert db.lines[0].startswith("[1/4] CREATE TABLE plans")
    assert "    2 rows affected" in " ".join(db.lines)
    json.dumps(outcome.outputs)


def test_list_of_statements_and_file(db: Harness, tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "seed.sql").write_text("INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\n")
    assert db.run(sql=["CREATE TABLE t (id integer)"]).ok
    outcome = db.run(file="sql/seed.sql")
    assert outcome.ok and outcome.outputs["rowcount"] == 2
    assert outcome.outputs == {"rowcount": 2, "rows": [], "row": None, "value": None}
    missing = db.run(file="sql/missing.sql")
    assert not missing.ok and missing.error and "cannot read SQL file sql/missing.sql" in missing.error


def test_returning_rows_count_as_affected(db: Harness) -> None:
    assert db.run(sql="CREATE TABLE t (id integer); INSERT INTO t VALUES (1), (2), (3)").ok
    outcome = db.run(sql="UPDATE t SET id = id + 10 RETURNING id")
    assert outcome.ok, outcome.error
    assert outcome.outputs["rowcount"] == 3
    assert sorted(r["id"] for r in outcome.outputs["rows"]) == [11, 12, 13]


def test_rows_are_capped(db: Harness) -> None:
    outcome = db.run(
        sql="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250) SELECT i FROM n"
    )
    assert outcome.ok, outcome.error
    assert len(outcome.outputs["rows"]) == 100 and outcome.outputs["value"] == 1
    assert outcome.outputs["rowcount"] == 0
    assert any("100 rows+ returned" in line for line in db.lines)


def test_failure_rolls_back_every_statement(db: Harness) -> None:
    outcome = db.run(
        sql="CREATE TABLE t (id integer);\nINSERT INTO t VALUES (1);\nINSERT INTO missing_table VALUES (1);"
    )
    assert not outcome.ok
    assert outcome.error and outcome.error.startswith("statement 3 of 3 failed: ")
    assert "\n" not in outcome.error
    assert "INSERT INTO missing_table VALUES (1)" in outcome.tail
    # DDL included: on SQLite the step opens the transaction itself.
    assert "t" not in sa.inspect(db.connections.engine("db")).get_table_names()


def test_without_transaction_earlier_statements_stay(db: Harness) -> None:
    outcome = db.run(sql="CREATE TABLE t (id integer); INSERT INTO nope VALUES (1)", transaction=False)
    assert not outcome.ok
    assert "t" in sa.inspect(db.connections.engine("db")).get_table_names()


def test_missing_bind_parameter_is_a_failed_outcome(db: Harness) -> None:
    outcome = db.run(sql="SELECT :missing")
    assert not outcome.ok and outcome.error and "missing" in outcome.error


# ---------------------------------------------------------------- SQLite


def test_sql_error_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    harness = Harness(sqlite_url, tmp_path)
    outcome = harness.run(sql="SELEC 1")
    assert not outcome.ok
    assert outcome.error == 'OperationalError: near "SELEC": syntax error'
    assert outcome.outputs["rowcount"] == 0


def test_timeouts_are_ignored_on_sqlite_with_a_note(sqlite_url: str, tmp_path: Path) -> None:
    harness = Harness(sqlite_url, tmp_path)
    outcome = harness.run(sql="SELECT 42", lock_timeout="2s", statement_timeout="1m")
    assert outcome.ok and outcome.outputs["value"] == 42
    assert harness.lines[0] == "note: lock_timeout and statement_timeout apply to PostgreSQL, MySQL and MariaDB only; ignored on sqlite"


def test_unknown_connection_is_a_failed_outcome(sqlite_url: str, tmp_path: Path) -> None:
    harness = Harness(sqlite_url, tmp_path)
    outcome = KIND.run(SqlParams(connection="other", sql="SELECT 1"), harness.ctx)
    assert not outcome.ok and outcome.error and "unknown connection 'other'" in outcome.error


# ---------------------------------------------------------------- PostgreSQL


def test_create_index_concurrently_needs_autocommit(pg: Harness) -> None:
    setup = "CREATE TABLE subs (id integer, plan integer); INSERT INTO subs SELECT g, g % 7 FROM generate_series(1, 500) g"
    assert pg.run(sql=setup).ok
    in_transaction = pg.run(sql="CREATE INDEX CONCURRENTLY ix_subs_plan ON subs (plan)")
    assert not in_transaction.ok
    assert in_transaction.error and "ActiveSqlTransaction" in in_transaction.error
    outcome = pg.run(
        sql="CREATE INDEX CONCURRENTLY ix_subs_plan ON subs (plan);\nANALYZE subs;",
        transaction=False,
        lock_timeout="5s",
    )
    assert outcome.ok, outcome.error
    assert pg.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_subs_plan'::regclass") is True
    # The session-level SET must not follow the pooled connection into later work.
    assert pg.scalar("SHOW lock_timeout") == "0"


def test_lock_timeout_fires_while_another_connection_holds_the_lock(pg: Harness, pg_url: str) -> None:
    assert pg.run(sql="CREATE TABLE subs (id integer)").ok
    holder = sa.create_engine(pg_url)
    try:
        with holder.connect() as conn:
            conn.execute(sa.text("LOCK TABLE subs IN ACCESS EXCLUSIVE MODE"))
            # The holder keeps its lock until the step returns: only the lock timeout can end the wait.
            outcome = pg.run(sql="ALTER TABLE subs ADD COLUMN plan integer", lock_timeout="300ms")
            conn.rollback()
    finally:
        holder.dispose()
    assert not outcome.ok
    assert outcome.error == "LockNotAvailable: canceling statement due to lock timeout"
    assert pg.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'subs'") == 1


def test_statement_timeout_cancels_a_slow_statement(pg: Harness) -> None:
    outcome = pg.run(sql="SELECT pg_sleep(10)", statement_timeout="200ms")
    assert not outcome.ok
    assert outcome.error == "QueryCanceled: canceling statement due to statement timeout"


def test_postgres_values_become_json(pg: Harness) -> None:
    outcome = pg.run(
        sql="SELECT 12.50::numeric AS price, 3::numeric AS whole, DATE '2025-10-28' AS day, "
        "'1a2b3c4d-0000-4000-8000-000000000000'::uuid AS id, ARRAY[1, 2] AS ids, '{\"a\": 1}'::jsonb AS doc"
    )
    assert outcome.ok, outcome.error
    assert outcome.outputs["row"] == {
        "price": 12.5,
        "whole": 3,
        "day": "2025-10-28",
        "id": "1a2b3c4d-0000-4000-8000-000000000000",
        "ids": [1, 2],
        "doc": {"a": 1},
    }
    json.dumps(outcome.outputs)


def test_url_password_never_appears_in_errors(pg_url: str, tmp_path: Path) -> None:
    url = sa.engine.make_url(pg_url)
    # The test server trusts local connections, so any password connects; a real one is kept.
    password = url.password or "S3cret-Pa55word"
    harness = Harness(url.set(password=password).render_as_string(hide_password=False), tmp_path)
    echoed = harness.run(sql=f"SELECT CAST('{password}' AS integer)")
    assert not echoed.ok and echoed.error
    assert password not in echoed.error and "***" in echoed.error
    assert all(password not in line for line in echoed.tail + harness.lines)
    harness.connections.dispose()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    refused = Harness(f"postgresql://runbook:{password}@127.0.0.1:{closed_port}/app", tmp_path)
    outcome = refused.run(sql="SELECT 1")
    assert not outcome.ok and outcome.error
    assert "\n" not in outcome.error and "refused" in outcome.error.lower()
    assert password not in outcome.error and all(password not in line for line in outcome.tail)
