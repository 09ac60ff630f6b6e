"""The sql step kind against real SQLite files, a real PostgreSQL and a real MariaDB (or MySQL).

What MariaDB does differently because its DDL is not transactional (what a failure leaves
applied, and the next attempt) is in test_sql_mariadb.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
import sqlalchemy as sa

from runbook.steps import get_step_kind
from runbook.steps.sql import KIND, SqlParams, split_statements
from tests.dbs import on
from tests.steps.harness import SqlHarness, closed_port, disposed_after


@pytest.fixture
def db(any_db_url: str, tmp_path: Path) -> Iterator[SqlHarness]:
    """On SQLite, PostgreSQL and MariaDB, or those ``@on(...)`` names."""
    yield from disposed_after(SqlHarness(any_db_url, tmp_path))


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


def test_split_mysql_comments_escapes_and_compound_statements() -> None:
    """# comments, backslash-escaped quotes and BEGIN ... END IF; ... END bodies do not cut a statement."""
    script = r"""
        # a MySQL comment; not a statement
        INSERT INTO t VALUES (1, 'it\'s; fine', "say \"hi;\""), (2, 'a\\', 'b;c');
        CREATE PROCEDURE p(IN n INT) BEGIN
          DECLARE i INT DEFAULT 0;
          WHILE i < n DO
            IF i % 2 = 0 THEN INSERT INTO t (id) VALUES (i); END IF;
            SET i = i + 1;
          END WHILE;
        END;
        SELECT `odd;name` FROM t  -- trailing; comment
    """
    statements = split_statements(script, mysql_syntax=True)
    assert len(statements) == 3, statements
    assert statements[0] == r"""INSERT INTO t VALUES (1, 'it\'s; fine', "say \"hi;\""), (2, 'a\\', 'b;c')"""
    assert statements[1].startswith("CREATE PROCEDURE p") and statements[1].endswith("END WHILE;\n        END")
    # Elsewhere a backslash is an ordinary character and # an operator.
    assert split_statements(r"SELECT 'a\'; SELECT 2 # 3", mysql_syntax=False) == [r"SELECT 'a\'", "SELECT 2 # 3"]


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


# ---------------------------------------------------------------- every database


def test_multi_statement_outputs(db: SqlHarness) -> None:
    # A MySQL comment where MySQL reads one: the statement before it still ends at its semicolon.
    comment = "  # rows matched, not only changed" if db.dialect() == "mysql" else ""
    outcome = db.run(
        sql=f"""
        CREATE TABLE plans (id integer PRIMARY KEY, name varchar(20), mbps integer);
        INSERT INTO plans VALUES (1, 'basic', 50), (2, 'fast', 500), (3, 'max', 1000);
        UPDATE plans SET mbps = mbps * 2 WHERE mbps < :limit;{comment}
        DELETE FROM plans WHERE id = 3 RETURNING id, name;
        SELECT name, mbps FROM plans ORDER BY id;
        """,
        params={"limit": 600},
    )
    assert outcome.ok, outcome.error
    assert outcome.outputs["rowcount"] == 6
    assert outcome.outputs["rows"] == [{"name": "basic", "mbps": 100}, {"name": "fast", "mbps": 1000}]
    assert outcome.outputs["row"] == {"name": "basic", "mbps": 100}
    assert outcome.outputs["value"] == "basic"
    statements = [line for line in db.lines if line.startswith("[")]
    assert statements[0] == "[1/5] CREATE TABLE plans (id integer PRIMARY KEY, name varchar(20), mbps integer)"
    assert "    2 rows affected" in " ".join(db.lines)
    json.dumps(outcome.outputs)


def test_list_of_statements_and_file(db: SqlHarness, tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "seed.sql").write_text("INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\n")
    assert db.run(sql=["CREATE TABLE t (id integer)"]).ok
    outcome = db.run(file="sql/seed.sql")
    assert outcome.ok and outcome.outputs["rowcount"] == 2
    assert outcome.outputs == {"rowcount": 2, "rows": [], "row": None, "value": None}
    missing = db.run(file="sql/missing.sql")
    assert not missing.ok and missing.error and "cannot read SQL file sql/missing.sql" in missing.error


def test_rows_are_capped(db: SqlHarness) -> None:
    outcome = db.run(
        sql="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250) SELECT i FROM n"
    )
    assert outcome.ok, outcome.error
    assert len(outcome.outputs["rows"]) == 100 and outcome.outputs["value"] == 1
    assert outcome.outputs["rowcount"] == 0
    assert any("100 rows+ returned" in line for line in db.lines)


DUPLICATE_KEY = {
    "sqlite": "IntegrityError: UNIQUE constraint failed: t.id",
    "postgresql": 'UniqueViolation: duplicate key value violates unique constraint "t_pkey"',
    "mysql": "IntegrityError: 1062 Duplicate entry '1'",
}


def test_data_statements_roll_back_together(db: SqlHarness) -> None:
    assert db.run(sql="CREATE TABLE t (id int PRIMARY KEY)").ok
    outcome = db.run(sql="INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)")
    assert not outcome.ok and outcome.error
    assert outcome.error.startswith(f"statement 3 of 3 failed: {DUPLICATE_KEY[db.dialect()]}"), outcome.error
    assert "\n" not in outcome.error
    assert db.scalar("SELECT COUNT(*) FROM t") == 0


def test_without_transaction_each_statement_commits(db: SqlHarness) -> None:
    outcome = db.run(sql="CREATE TABLE t (id int); INSERT INTO t VALUES (1); INSERT INTO nope VALUES (1)", transaction=False)
    assert not outcome.ok and outcome.error and outcome.error.startswith("statement 3 of 3 failed: ")
    assert db.scalar("SELECT COUNT(*) FROM t") == 1


def test_missing_bind_parameter_is_a_failed_outcome(db: SqlHarness) -> None:
    outcome = db.run(sql="SELECT :missing")
    assert not outcome.ok and outcome.error and "missing" in outcome.error


# ---------------------------------------------------------------- SQLite and PostgreSQL


@on("sqlite", "postgresql")
def test_returning_rows_count_as_affected(db: SqlHarness) -> None:
    assert db.run(sql="CREATE TABLE t (id integer); INSERT INTO t VALUES (1), (2), (3)").ok
    outcome = db.run(sql="UPDATE t SET id = id + 10 RETURNING id")
    assert outcome.ok, outcome.error
    assert outcome.outputs["rowcount"] == 3
    assert sorted(r["id"] for r in outcome.outputs["rows"]) == [11, 12, 13]


@on("sqlite", "postgresql")
def test_failure_rolls_back_every_statement(db: SqlHarness) -> None:
    outcome = db.run(
        sql="CREATE TABLE t (id integer);\nINSERT INTO t VALUES (1);\nINSERT INTO missing_table VALUES (1);"
    )
    assert not outcome.ok
    assert outcome.error and outcome.error.startswith("statement 3 of 3 failed: ")
    assert "\n" not in outcome.error
    assert "INSERT INTO missing_table VALUES (1)" in outcome.tail
    # DDL included: on SQLite the step opens the transaction itself.
    assert "t" not in db.tables()


# ---------------------------------------------------------------- PostgreSQL and MariaDB

# How another session holds a lock ALTER TABLE waits for, the error the wait ends in,
# what the step says first, and how to read the session's setting afterwards.
LOCK_WAITS = {
    "postgresql": (
        "LOCK TABLE subs IN ACCESS EXCLUSIVE MODE",
        "LockNotAvailable: canceling statement due to lock timeout",
        [],
        ("SHOW lock_timeout", "300ms"),
    ),
    "mysql": (
        # A SELECT in an open transaction holds a metadata lock.
        "SELECT * FROM subs",
        "OperationalError: 1205 Lock wait timeout exceeded; try restarting transaction",
        ["note: lock_timeout rounded up to 1s: {flavour} counts lock waits in whole seconds"],
        ("SELECT @@SESSION.lock_wait_timeout", 1),
    ),
}


@on("postgresql", "mariadb")
def test_lock_timeout_stops_ddl_waiting_behind_another_session(db: SqlHarness) -> None:
    hold, error, notes, (setting, during) = LOCK_WAITS[db.dialect()]
    assert db.run(sql="CREATE TABLE subs (id integer)").ok
    with db.own_engine() as holder, holder.connect() as conn:
        conn.exec_driver_sql(hold).close()
        # The holder keeps its lock until the step returns: only the lock timeout can end the wait.
        outcome = db.run(sql="ALTER TABLE subs ADD COLUMN plan integer", lock_timeout="300ms")
        conn.rollback()
    assert not outcome.ok
    assert outcome.error == error
    flavour = db.flavour() if db.dialect() == "mysql" else ""
    assert [line for line in db.lines if line.startswith("note:")] == [note.format(flavour=flavour) for note in notes]
    assert db.columns("subs") == ["id"]
    # The session's setting did not go back to the pool with its connection.
    assert db.scalar(setting) != during


# A statement that outlasts the timeout, the error it ends in, and the session's setting afterwards.
SLOW_STATEMENTS = {
    "postgresql": ("SELECT pg_sleep(10)", "QueryCanceled: canceling statement due to statement timeout", "SHOW statement_timeout", "0"),
    "mysql": (
        "SELECT SLEEP(10)",
        "OperationalError: 1969 Query execution was interrupted (max_statement_time exceeded)",
        "SELECT @@SESSION.max_statement_time",
        0,
    ),
}


@on("postgresql", "mariadb")
def test_statement_timeout_cancels_a_slow_statement(db: SqlHarness) -> None:
    if db.dialect() == "mysql" and db.flavour() == "MySQL":
        pytest.skip("MySQL's max_execution_time stops SELECTs only, SLEEP() returns 1 instead of failing")
    slow, error, setting, after = SLOW_STATEMENTS[db.dialect()]
    outcome = db.run(sql=slow, statement_timeout="200ms")
    assert not outcome.ok
    assert outcome.error == error
    assert db.scalar(setting) == after


# A row of the server's own types, and the JSON it becomes.
TYPED_ROWS = {
    "postgresql": (
        "SELECT 12.50::numeric AS price, 3::numeric AS whole, DATE '2025-10-28' AS day, "
        "'1a2b3c4d-0000-4000-8000-000000000000'::uuid AS id, ARRAY[1, 2] AS ids, '{\"a\": 1}'::jsonb AS doc",
        {"price": 12.5, "whole": 3, "day": "2025-10-28", "id": "1a2b3c4d-0000-4000-8000-000000000000", "ids": [1, 2], "doc": {"a": 1}},
    ),
    "mysql": (
        "SELECT 12.50 AS price, CAST(3 AS DECIMAL) AS whole, DATE '2025-10-28' AS day, "
        "TIMESTAMP '2025-10-28 01:02:03' AS at, JSON_OBJECT('a', 1) AS doc, X'C0FFEE' AS raw",
        {"price": 12.5, "whole": 3, "day": "2025-10-28", "at": "2025-10-28T01:02:03", "doc": '{"a": 1}', "raw": "c0ffee"},
    ),
}


@on("postgresql", "mariadb")
def test_values_become_json(db: SqlHarness) -> None:
    query, row = TYPED_ROWS[db.dialect()]
    outcome = db.run(sql=query)
    assert outcome.ok, outcome.error
    assert outcome.outputs["row"] == row
    json.dumps(outcome.outputs)


@pytest.mark.parametrize(
    ("scheme", "error"),
    [("postgresql", "OperationalError: "), ("mysql", "OperationalError: 2003 Can't connect to MySQL server on '127.0.0.1'")],
    ids=["postgresql", "mariadb"],
)
def test_a_refused_connection_never_shows_the_password(scheme: str, error: str, tmp_path: Path) -> None:
    password = "S3cret-Pa55word"
    refused = SqlHarness(f"{scheme}://runbook:{password}@127.0.0.1:{closed_port()}/app", tmp_path)
    outcome = refused.run(sql="SELECT 1")
    assert not outcome.ok and outcome.error
    assert outcome.error.startswith(error) and "refused" in outcome.error.lower()
    assert "\n" not in outcome.error
    assert password not in outcome.error and all(password not in line for line in outcome.tail)


# ---------------------------------------------------------------- SQLite


@on("sqlite")
def test_sql_error_on_sqlite(db: SqlHarness) -> None:
    outcome = db.run(sql="SELEC 1")
    assert not outcome.ok
    assert outcome.error == 'OperationalError: near "SELEC": syntax error'
    assert outcome.outputs["rowcount"] == 0


@on("sqlite")
def test_timeouts_are_ignored_on_sqlite_with_a_note(db: SqlHarness) -> None:
    outcome = db.run(sql="SELECT 42", lock_timeout="2s", statement_timeout="1m")
    assert outcome.ok and outcome.outputs["value"] == 42
    assert db.lines[0] == "note: lock_timeout and statement_timeout apply to PostgreSQL, MySQL and MariaDB only; ignored on sqlite"


@on("sqlite")
def test_unknown_connection_is_a_failed_outcome(db: SqlHarness) -> None:
    outcome = db.run_kind(KIND, SqlParams(connection="other", sql="SELECT 1"))
    assert not outcome.ok and outcome.error and "unknown connection 'other'" in outcome.error


# ---------------------------------------------------------------- PostgreSQL


@on("postgresql")
def test_create_index_concurrently_needs_autocommit(db: SqlHarness) -> None:
    setup = "CREATE TABLE subs (id integer, plan integer); INSERT INTO subs SELECT g, g % 7 FROM generate_series(1, 500) g"
    assert db.run(sql=setup).ok
    in_transaction = db.run(sql="CREATE INDEX CONCURRENTLY ix_subs_plan ON subs (plan)")
    assert not in_transaction.ok
    assert in_transaction.error and "ActiveSqlTransaction" in in_transaction.error
    outcome = db.run(
        sql="CREATE INDEX CONCURRENTLY ix_subs_plan ON subs (plan);\nANALYZE subs;",
        transaction=False,
        lock_timeout="5s",
    )
    assert outcome.ok, outcome.error
    assert db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_subs_plan'::regclass") is True
    # The session-level SET must not follow the pooled connection into later work.
    assert db.scalar("SHOW lock_timeout") == "0"


def test_a_password_the_server_echoes_is_masked(pg_url: str, tmp_path: Path) -> None:
    url = sa.engine.make_url(pg_url)
    # The test server trusts local connections, so any password connects; a real one is kept.
    password = url.password or "S3cret-Pa55word"
    harness = SqlHarness(url.set(password=password).render_as_string(hide_password=False), tmp_path)
    echoed = harness.run(sql=f"SELECT CAST('{password}' AS integer)")
    assert not echoed.ok and echoed.error
    assert password not in echoed.error and "***" in echoed.error
    assert all(password not in line for line in echoed.tail + harness.lines)
    harness.connections.dispose()
