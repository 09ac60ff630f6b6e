"""The alembic step on a real MariaDB (or MySQL), where DDL is not transactional.

A migration that fails after its first DDL statement leaves that statement
applied while ``alembic_version`` still names the revision before: the step's
error says so, and the next attempt (the same checkpoints, as ``--resume``
gives) takes it as done. ``mariadb_url`` is a fresh database per test;
without a server these tests are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alembic_project import write_project, write_revision
from tests.steps.harness import AlembicHarness, disposed_after

R1, R2, R3 = "1a1a1a1a1a1a", "2b2b2b2b2b2b", "3c3c3c3c3c3c"

# Two DDL statements; the second names a table that is not there, until fixed.
TWO_DDL_UPGRADE = """\
    op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("{table}", sa.Column("size", sa.Integer))"""


def make_project(root: Path, *, third_table: str = "no_such_table") -> Path:
    """R1 creates customers, R2 adds a column and an index, R3 creates widgets then alters ``third_table``."""
    versions = write_project(root)
    write_revision(versions, R1, None, "customers",
                   '    op.create_table("customers", sa.Column("id", sa.Integer, primary_key=True))',
                   '    op.drop_table("customers")')
    write_revision(versions, R2, R1, "customer_email",
                   '    op.add_column("customers", sa.Column("email", sa.String(100)))\n'
                   '    op.create_index("ix_customers_email", "customers", ["email"])',
                   '    op.drop_index("ix_customers_email", "customers")\n    op.drop_column("customers", "email")')
    write_revision(versions, R3, R2, "widgets", TWO_DDL_UPGRADE.format(table=third_table),
                   '    op.drop_column("widgets", "size")\n    op.drop_table("widgets")')
    return root / "alembic.ini"


@pytest.fixture
def db(mariadb_url: str, tmp_path: Path) -> Iterator[AlembicHarness]:
    make_project(tmp_path / "proj")
    yield from disposed_after(AlembicHarness(mariadb_url, tmp_path))


def test_upgrade_downgrade_current_and_stamp(db: AlembicHarness) -> None:
    outcome = db.run("upgrade", R2)
    assert outcome.ok, outcome.error
    assert outcome.outputs == {"from_revisions": [], "from": "base", "to_revisions": [R2], "to": R2}
    assert f"Running upgrade {R1} -> {R2}, customer_email" in db.lines
    assert db.tables() == {"customers"}
    assert "ix_customers_email" in db.query("SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()")
    assert db.run("current").outputs["to"] == R2
    down = db.run("downgrade", R1)
    assert down.ok and down.outputs["to"] == R1
    assert db.columns("customers") == ["id"]
    assert db.run("stamp", R2).outputs["to"] == R2
    # Each DDL statement was kept until its migration committed: nothing is left.
    assert db.checkpoints.data == {}


def test_dry_run_renders_mysql_sql(db: AlembicHarness) -> None:
    outcome = db.run("upgrade", R2, dry_run=True)
    assert outcome.ok, outcome.error
    assert outcome.outputs["would_apply"] == [f"{R1}: customers", f"{R2}: customer_email"]
    assert "CREATE TABLE customers (" in outcome.outputs["sql"] and "AUTO_INCREMENT" in outcome.outputs["sql"]
    assert db.tables() == set()


def test_failure_after_the_first_ddl_says_it_stayed_and_the_next_attempt_takes_it_as_done(db: AlembicHarness, tmp_path: Path) -> None:
    """R3 creates widgets, then fails: widgets stays while alembic_version says R2. Fixed, the step runs R3 again to the end."""
    assert db.run("upgrade", R2).ok
    failed = db.run("upgrade", "head")
    assert not failed.ok and failed.error
    flavour = db.flavour()
    create = "CREATE TABLE widgets (id INTEGER NOT NULL AUTO_INCREMENT, PRIMARY KEY (id))"
    assert failed.error.startswith(
        f"failed in upgrade {R2} -> {R3} (widgets) (last applied: {R2}; {flavour} kept 1 statement of it: {create}, "
        "as each DDL statement commits as it runs): ProgrammingError: 1146 Table "
    ), failed.error
    assert failed.outputs["to"] == R2 and failed.outputs["failed_revision"] == R3
    kept = db.checkpoints.data["mysql_committed_ddl"][f"upgrade {R2} -> {R3}"]
    assert [entry["sql"] for entry in kept] == [failed.outputs["left_applied"][f"upgrade {R2} -> {R3}"][0]]
    assert kept[0]["sql"].startswith("CREATE TABLE widgets (")
    assert any(line.startswith("note: the next attempt (--resume) runs this migration again") for line in failed.tail)
    # What it left: the first statement's table, and the revision before.
    assert db.tables() == {"customers", "widgets"}
    assert db.query("SELECT version_num FROM alembic_version") == [R2]

    # Unfixed, the next attempt passes the kept statement and fails where it failed.
    again = db.run("upgrade", "head")
    assert not again.ok and again.error and f"{flavour} kept 1 statement of it" in again.error
    assert f"already applied by an earlier attempt (table already exists), taken as done: {create}" in db.lines

    make_project(tmp_path / "proj", third_table="widgets")
    fixed = db.run("upgrade", "head")
    assert fixed.ok, fixed.error
    assert fixed.outputs["to"] == R3
    assert f"already applied by an earlier attempt (table already exists), taken as done: {create}" in db.lines
    assert db.columns("widgets") == ["id", "size"]
    assert db.checkpoints.data == {}


def test_a_table_dropped_by_hand_is_created_again(db: AlembicHarness, tmp_path: Path) -> None:
    """The operator undid what stayed: the kept statement simply runs again."""
    assert not db.run("upgrade", "head").ok
    db.query("DROP TABLE widgets")
    make_project(tmp_path / "proj", third_table="widgets")
    fixed = db.run("upgrade", "head")
    assert fixed.ok, fixed.error
    assert not any("already applied" in line for line in db.lines)
    assert db.tables() == {"customers", "widgets"}


def test_earlier_migrations_of_the_same_command_are_committed(db: AlembicHarness) -> None:
    """alembic commits each migration with its version row on MySQL: a failure in R3 keeps R1 and R2 whole."""
    failed = db.run("upgrade", "head")
    assert not failed.ok and failed.error
    assert failed.error.startswith(f"failed in upgrade {R2} -> {R3} (widgets) (last applied: {R2}; ")
    assert list(failed.outputs["left_applied"]) == [f"upgrade {R2} -> {R3}"]
    assert db.query("SELECT version_num FROM alembic_version") == [R2]


def test_a_failing_data_statement_leaves_nothing(db: AlembicHarness, tmp_path: Path) -> None:
    """Without DDL before it, the failing migration's transaction rolls back whole, and the error says no more."""
    write_revision(tmp_path / "proj" / "migrations" / "versions", R3, R2, "widgets",
                   '    op.execute("UPDATE customers SET email = NULL")\n    op.execute("UPDATE no_such_table SET x = 1")', "    pass")
    assert db.run("upgrade", R2).ok
    failed = db.run("upgrade", "head")
    assert not failed.ok and failed.error
    assert failed.error.startswith(f"failed in upgrade {R2} -> {R3} (widgets) (last applied: {R2}): ProgrammingError: 1146 ")
    assert "left_applied" not in failed.outputs
