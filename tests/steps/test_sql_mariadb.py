"""The sql step kind on a real MariaDB (or MySQL), where DDL is not transactional: what a
failure leaves applied, and the next attempt. What every database does alike is in test_sql_step.py.

``mariadb_url`` is a fresh database per test; without a server these tests are skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbook.steps.kept_ddl import CHECKPOINT_KEY
from tests.steps.harness import SqlHarness, disposed_after


@pytest.fixture
def db(mariadb_url: str, tmp_path: Path) -> Iterator[SqlHarness]:
    yield from disposed_after(SqlHarness(mariadb_url, tmp_path))


def test_a_stored_procedure_and_its_call(db: SqlHarness) -> None:
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


def test_a_failure_after_ddl_says_what_stayed_applied(db: SqlHarness) -> None:
    """DDL commits what ran before it: the error says which statements a failure could not take back."""
    outcome = db.run(sql="""
        CREATE TABLE t (id int PRIMARY KEY);
        INSERT INTO t VALUES (1);
        ALTER TABLE t ADD COLUMN note varchar(20);
        INSERT INTO t VALUES (2, 'rolled back');
        INSERT INTO missing_table VALUES (1)
    """)
    assert not outcome.ok and outcome.error
    flavour = db.flavour()
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


def test_running_again_takes_the_ddl_that_stayed_as_done(db: SqlHarness) -> None:
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


def test_a_secret_in_ddl_never_reaches_the_checkpoint(db: SqlHarness) -> None:
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
