"""The sql step kind on a real MariaDB (or MySQL), where DDL is not transactional.

``mariadb_url`` is a fresh database per test; without a server these tests are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runbook.connections import Connections, normalize_url
from runbook.masking import Masker
from runbook.steps.base import StepContext, StepOutcome
from runbook.steps.kept_ddl import CHECKPOINT_KEY
from runbook.steps.sql import KIND, SqlParams, split_statements


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.data: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return self.data

    def save(self, data: dict[str, Any]) -> None:
        self.data = data


class Harness:
    """A step context on one connection named ``db``; its checkpoints outlive a run, as a step's attempts share them."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.masker = Masker()
        self.connections = Connections({"db": url}, self.masker)
        self.lines: list[str] = []
        self.checkpoints = MemoryCheckpoints()
        self.ctx = StepContext(
            run_id="r", step_id="s", workdir=workdir, env=dict(os.environ), masker=self.masker,
            connections=self.connections, output=self.lines.append, checkpoints=self.checkpoints,
        )

    def run(self, **params: Any) -> StepOutcome:
        self.lines.clear()
        return KIND.run(SqlParams.model_validate({"connection": "db", **params}), self.ctx)

    def scalar(self, query: str) -> Any:
        with self.connections.engine("db").connect() as conn:
            return conn.execute(sa.text(query)).scalar()

    def tables(self) -> set[str]:
        return set(sa.inspect(self.connections.engine("db")).get_table_names())


@pytest.fixture
def db(mariadb_url: str, tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(mariadb_url, tmp_path)
    yield harness
    harness.connections.dispose()


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


def test_statements_bind_parameters_and_outputs(db: Harness) -> None:
    outcome = db.run(
        sql="""
        CREATE TABLE plans (id integer PRIMARY KEY, name varchar(20), mbps integer);
        INSERT INTO plans VALUES (1, 'basic', 50), (2, 'fast', 500), (3, 'max', 1000);
        UPDATE plans SET mbps = mbps * 2 WHERE mbps < :limit;  # rows matched, not only changed
        DELETE FROM plans WHERE id = 3 RETURNING id, name;
        SELECT name, mbps FROM plans ORDER BY id;
        """,
        params={"limit": 600},
    )
    assert outcome.ok, outcome.error
    assert outcome.outputs["rowcount"] == 6
    assert outcome.outputs["rows"] == [{"name": "basic", "mbps": 100}, {"name": "fast", "mbps": 1000}]
    assert db.lines[1:3] == ["[1/5] CREATE TABLE plans (id integer PRIMARY KEY, name varchar(20), mbps integer)", db.lines[2]]
    assert db.lines[2].startswith("    done (")
    json.dumps(outcome.outputs)


def test_a_stored_procedure_and_its_call(db: Harness) -> None:
    outcome = db.run(sql="""
        CREATE TABLE t (id int PRIMARY KEY);
        CREATE PROCEDURE fill(IN n INT) BEGIN
          DECLARE i INT DEFAULT 0;
          WHILE i < n DO
            IF i % 2 = 0 THEN INSERT INTO t VALUES (i); END IF;
            SET i = i + 1;
          END WHILE;
        END;
        CALL fill(6);
        SELECT COUNT(*) FROM t
    """)
    assert outcome.ok, outcome.error
    assert outcome.outputs["value"] == 3


def test_data_statements_roll_back_together(db: Harness) -> None:
    assert db.run(sql="CREATE TABLE t (id int PRIMARY KEY)").ok
    outcome = db.run(sql="INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)")
    assert not outcome.ok and outcome.error
    assert outcome.error.startswith("statement 3 of 3 failed: IntegrityError: 1062 Duplicate entry '1'")
    assert db.scalar("SELECT COUNT(*) FROM t") == 0


def test_a_failure_after_ddl_says_what_stayed_applied(db: Harness) -> None:
    """DDL commits what ran before it: the error says which statements a failure could not take back."""
    outcome = db.run(sql="""
        CREATE TABLE t (id int PRIMARY KEY);
        INSERT INTO t VALUES (1);
        ALTER TABLE t ADD COLUMN note varchar(20);
        INSERT INTO t VALUES (2, 'rolled back');
        INSERT INTO missing_table VALUES (1)
    """)
    assert not outcome.ok and outcome.error
    flavour = "MariaDB" if "MariaDB" in db.scalar("SELECT VERSION()") else "MySQL"
    assert db.lines[0] == (
        f"note: {flavour} commits each DDL statement, and what ran before it, as it runs: if a later statement fails, those stay applied"
    )
    assert outcome.error.startswith(
        f"statement 5 of 5 failed (statements 1-3 stayed applied: {flavour} commits each DDL statement and what ran before it): "
        "ProgrammingError: 1146 Table "
    )
    assert db.scalar("SELECT GROUP_CONCAT(id) FROM t") == "1"
    # The checkpoint holds the DDL that committed: its hash, and its text masked.
    kept = (db.checkpoints.data or {})[CHECKPOINT_KEY][""]
    assert [entry["sql"] for entry in kept] == ["CREATE TABLE t (id int PRIMARY KEY)", "ALTER TABLE t ADD COLUMN note varchar(20)"]
    assert kept[0]["sha256"] == hashlib.sha256(b"CREATE TABLE t (id int PRIMARY KEY)").hexdigest()


def test_running_again_takes_the_ddl_that_stayed_as_done(db: Harness) -> None:
    """The next attempt (--resume) runs the DDL an earlier one committed again; 'already exists' counts as done."""
    failing = "CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t ADD COLUMN note varchar(20); CREATE INDEX ix_note ON t (note); INSERT INTO nope VALUES (1)"
    assert not db.run(sql=failing).ok
    # The operator undid the index by hand: that statement simply runs again.
    with db.connections.engine("db").connect() as conn:
        conn.exec_driver_sql("DROP INDEX ix_note ON t")
    fixed = failing.replace("INSERT INTO nope VALUES (1)", "INSERT INTO t VALUES (1, 'x')")
    outcome = db.run(sql=fixed)
    assert outcome.ok, outcome.error
    assert db.lines[2:8] == [
        "    already applied by an earlier attempt (table already exists): taken as done",
        "[2/4] ALTER TABLE t ADD COLUMN note varchar(20)",
        "    already applied by an earlier attempt (column already exists): taken as done",
        "[3/4] CREATE INDEX ix_note ON t (note)",
        db.lines[6],
        "[4/4] INSERT INTO t VALUES (1, 'x')",
    ]
    assert db.lines[6].startswith("    done (")
    assert db.scalar("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME = 'ix_note'") == 1
    assert db.checkpoints.data == {}
    # A statement no earlier attempt committed fails as written.
    again = db.run(sql="CREATE TABLE t (id int PRIMARY KEY)")
    assert not again.ok and again.error == "OperationalError: 1050 Table 't' already exists"


def test_without_transaction_each_statement_commits(db: Harness) -> None:
    outcome = db.run(sql="CREATE TABLE t (id int); INSERT INTO t VALUES (1); INSERT INTO nope VALUES (1)", transaction=False)
    assert not outcome.ok and outcome.error and outcome.error.startswith("statement 3 of 3 failed: ")
    assert db.scalar("SELECT COUNT(*) FROM t") == 1


def test_lock_timeout_stops_ddl_waiting_behind_an_open_transaction(db: Harness) -> None:
    """A SELECT in an open transaction holds a metadata lock; ALTER waits for it at most lock_timeout, in whole seconds."""
    assert db.run(sql="CREATE TABLE subs (id int)").ok
    holder = sa.create_engine(normalize_url(db.url))
    try:
        with holder.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM subs").all()
            outcome = db.run(sql="ALTER TABLE subs ADD COLUMN plan int", lock_timeout="300ms")
            conn.rollback()
    finally:
        holder.dispose()
    assert not outcome.ok
    assert outcome.error == "OperationalError: 1205 Lock wait timeout exceeded; try restarting transaction"
    flavour = "MariaDB" if "MariaDB" in db.scalar("SELECT VERSION()") else "MySQL"
    assert db.lines[0] == f"note: lock_timeout rounded up to 1s: {flavour} counts lock waits in whole seconds"
    # The session's settings did not go back to the pool with its connection.
    assert db.scalar("SELECT @@SESSION.lock_wait_timeout") != 1


def test_statement_timeout_cancels_a_slow_statement(db: Harness) -> None:
    if "MariaDB" not in db.scalar("SELECT VERSION()"):
        pytest.skip("MySQL's max_execution_time stops SELECTs only, SLEEP() returns 1 instead of failing")
    outcome = db.run(sql="SELECT SLEEP(10)", statement_timeout="200ms")
    assert not outcome.ok
    assert outcome.error == "OperationalError: 1969 Query execution was interrupted (max_statement_time exceeded)"
    assert db.scalar("SELECT @@SESSION.max_statement_time") == 0


def test_values_become_json(db: Harness) -> None:
    outcome = db.run(
        sql="SELECT 12.50 AS price, CAST(3 AS DECIMAL) AS whole, DATE '2025-10-28' AS day, "
        "TIMESTAMP '2025-10-28 01:02:03' AS at, JSON_OBJECT('a', 1) AS doc, X'C0FFEE' AS raw"
    )
    assert outcome.ok, outcome.error
    assert outcome.outputs["row"] == {
        "price": 12.5, "whole": 3, "day": "2025-10-28", "at": "2025-10-28T01:02:03", "doc": '{"a": 1}', "raw": "c0ffee",
    }


def test_url_password_never_appears_in_errors(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    password = "S3cret-Pa55word"
    refused = Harness(f"mysql://runbook:{password}@127.0.0.1:{closed_port}/app", tmp_path)
    outcome = refused.run(sql="SELECT 1")
    assert not outcome.ok and outcome.error
    assert outcome.error.startswith("OperationalError: 2003 Can't connect to MySQL server on '127.0.0.1'")
    assert password not in outcome.error and all(password not in line for line in outcome.tail)


def test_a_secret_in_ddl_never_reaches_the_checkpoint(db: Harness) -> None:
    """DDL can carry a secret (CREATE USER ... IDENTIFIED BY): the checkpoint keeps its hash and masked text."""
    secret = "Pa55-for-the-report-user"
    db.masker.add(secret)
    user = f"rb_{db.scalar('SELECT DATABASE()')[-8:]}"
    try:
        outcome = db.run(sql=f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{secret}'; INSERT INTO nope VALUES (1)")
        assert not outcome.ok
        assert secret not in json.dumps(db.checkpoints.data)
        assert "IDENTIFIED BY '***'" in json.dumps(db.checkpoints.data)
    finally:
        with db.connections.engine("db").connect() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'localhost'")
