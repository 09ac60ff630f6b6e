"""Every database check kind against a real MariaDB (or MySQL): ``mariadb_url``
is a fresh database on the server of RUNBOOK_TEST_MARIADB_URL, or of
mysql://root@127.0.0.1:3306; without a server these tests are skipped."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runbook.checks import CheckContext, CheckKind, CheckResult, get_check_kind
from runbook.connections import Connections, normalize_url
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


@pytest.fixture
def url(mariadb_url: str) -> str:
    """parent/child with an FK and indexes; child 2 and 3 have a NULL note,
    legacy_parent_id 7 and 8 dangle, code 'dup' appears twice."""
    engine = sa.create_engine(normalize_url(mariadb_url))
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
    return mariadb_url


@pytest.fixture
def ctx(url: str, tmp_path: Path) -> Iterator[CheckContext]:
    masker = Masker([SECRET])
    connections = Connections({"db": url}, masker)
    yield CheckContext(workdir=tmp_path, env={}, masker=masker, connections=connections)
    connections.dispose()


def check(kind_name: str, ctx: CheckContext, **params: Any) -> CheckResult:
    kind: CheckKind = get_check_kind(kind_name)
    params.setdefault("connection", "db")
    return kind.evaluate(kind.Params.model_validate(params), ctx)


def database(url: str) -> str:
    name = sa.engine.make_url(normalize_url(url)).database
    assert name
    return name


def test_a_mysql_url_uses_pymysql(url: str) -> None:
    """mysql:// and mariadb:// get the PyMySQL driver; the server's flavour is detected on connect."""
    assert normalize_url("mysql://u@h/db") == normalize_url("mariadb://u@h/db") == "mysql+pymysql://u@h/db"
    engine = sa.create_engine(normalize_url(url))
    with engine.connect() as conn:
        assert conn.dialect.driver == "pymysql"
        version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
        assert conn.dialect.is_mariadb == ("MariaDB" in version)
    engine.dispose()


# ---------------------------------------------------------------- schema


def test_table_exists(ctx: CheckContext, url: str) -> None:
    """The schema of a table on MySQL is its database."""
    assert check("table_exists", ctx, table="child") == CheckResult(True, "present", "present")
    assert check("table_exists", ctx, table=f"{database(url)}.child").ok
    assert check("table_exists", ctx, table="child", schema=database(url)).ok
    assert check("table_exists", ctx, table="child", schema="mysql") == CheckResult(False, "absent", "present")
    assert check("table_exists", ctx, table="nope", exists=False).ok
    assert check("table_exists", ctx, table="child", exists=False) == CheckResult(False, "present", "absent")


def test_column_exists_with_mysql_types_and_nullability(ctx: CheckContext) -> None:
    """Types as MySQL reports them (INTEGER(11), TINYINT(1) for BOOLEAN, MariaDB's LONGTEXT for JSON) match their family."""
    assert check("column_exists", ctx, table="child", column="parent_id", type="integer", nullable=False).ok
    assert check("column_exists", ctx, table="child", column="parent_id", type="bigint").ok
    for spelled in ("varchar", "character varying", "text", "VARCHAR(255)"):
        assert check("column_exists", ctx, table="child", column="code", type=spelled).ok, spelled
    assert check("column_exists", ctx, table="child", column="note", type="text", nullable=True).ok
    assert check("column_exists", ctx, table="parent", column="active", type="boolean", nullable=False).ok
    assert check("column_exists", ctx, table="parent", column="settings", type="json").ok
    wrong = check("column_exists", ctx, table="child", column="code", type="integer")
    assert (wrong.ok, wrong.observed, wrong.detail) == (False, "VARCHAR(20) NULL", "type VARCHAR(20) is not a integer")
    nullable = check("column_exists", ctx, table="child", column="note", nullable=False)
    assert (nullable.ok, nullable.observed, nullable.detail) == (False, "TEXT NULL", "column is nullable")
    missing = check("column_exists", ctx, table="child", column="gone")
    assert (missing.ok, missing.observed, missing.detail) == (False, "absent", "child has no column gone")
    assert check("column_exists", ctx, table="child", column="gone", exists=False).ok
    assert check("column_exists", ctx, table="nope", column="id", exists=False).detail == "table nope does not exist"


def test_foreign_key_exists(ctx: CheckContext, url: str) -> None:
    assert check("foreign_key_exists", ctx, table="child", constraint="fk_child_parent").ok
    assert check(
        "foreign_key_exists", ctx, table="child", columns=["parent_id"], referenced_table="parent", referenced_columns=["id"]
    ).ok
    assert check("foreign_key_exists", ctx, table="child", columns=["parent_id"], referenced_table=f"{database(url)}.parent").ok
    other = check("foreign_key_exists", ctx, table="child", columns=["legacy_parent_id"], referenced_table="parent")
    assert (other.ok, other.observed) == (False, "absent")
    assert "fk_child_parent (parent_id) -> parent (id)" in (other.detail or "")
    assert check("foreign_key_exists", ctx, table="child", constraint="fk_nope", exists=False).ok
    assert not check("foreign_key_exists", ctx, table="child", constraint="fk_child_parent", exists=False).ok


def test_index_exists_counts_the_primary_key_and_unique_constraints(ctx: CheckContext) -> None:
    assert check("index_exists", ctx, table="child", index="ix_child_parent", columns=["parent_id"]).ok
    assert check("index_exists", ctx, table="child", columns=["code", "id"]).ok
    assert check("index_exists", ctx, table="child", index="uq_child_code").ok
    # SQLAlchemy does not list MySQL's primary key among the indexes: the check does.
    assert check("index_exists", ctx, table="child", columns=["id"]) == CheckResult(True, "present", "present", "PRIMARY (id)")
    assert check("index_exists", ctx, table="child", columns=["note"], exists=False).ok
    wrong = check("index_exists", ctx, table="child", index="ix_child_parent", columns=["code"])
    assert (wrong.ok, wrong.observed) == (False, "absent") and "ix_child_parent (parent_id)" in (wrong.detail or "")


# ---------------------------------------------------------------- data


def test_no_nulls(ctx: CheckContext) -> None:
    result = check("no_nulls", ctx, table="child", column="note")
    assert (result.ok, result.observed, result.detail) == (False, "2 rows", "id of rows with NULL note: 2, 3")
    assert check("no_nulls", ctx, table="child", column="note", where="parent_id = 2").observed == "1 row"
    assert check("no_nulls", ctx, table="child", column="parent_id").ok
    assert check("no_nulls", ctx, table="child", column="gone").detail == "child has no column gone"


def test_no_orphans(ctx: CheckContext, url: str) -> None:
    result = check("no_orphans", ctx, table="child", column="legacy_parent_id", references="parent.id")
    assert (result.ok, result.observed) == (False, "2 rows")
    assert result.detail == "legacy_parent_id values missing from parent.id: 7, 8"
    assert check("no_orphans", ctx, table="child", column="legacy_parent_id", references="parent.id", where="child.id < 3").observed == "1 row"
    db = database(url)
    assert check("no_orphans", ctx, table=f"{db}.child", column="parent_id", references=f"{db}.parent.id").ok
    assert check("no_orphans", ctx, table="child", column="parent_id", references="nope.id").detail == "table nope does not exist"


def test_row_count_and_sql(ctx: CheckContext) -> None:
    assert check("row_count", ctx, table="child") == CheckResult(True, "4", "> 0")
    assert check("row_count", ctx, table="child", where="note IS NULL", expect="== 2").ok
    assert check("row_count", ctx, query="SELECT id FROM parent;", expect=2).ok
    failing = check("row_count", ctx, table="child", where="code = 'dup'", expect="== 0")
    assert (failing.ok, failing.observed) == (False, "2")
    assert check("sql", ctx, query="SELECT COUNT(*) FROM child WHERE code = :code", params={"code": "dup"}, expect="== 2").ok


# ---------------------------------------------------------------- transactions


def test_no_long_transactions_names_the_idle_transaction(ctx: CheckContext, url: str) -> None:
    """An idle transaction that read the table is found through INNODB_TRX; commit clears it."""
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as other:
            pid = other.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
            other.execute(sa.text(f"SELECT COUNT(*) FROM child WHERE note <> '{SECRET}'")).all()
            assert check("no_long_transactions", ctx, tables=["child"], older_than="5m").ok
            time.sleep(2.1)  # INNODB_TRX dates a transaction to the second
            result = check("no_long_transactions", ctx, tables=["child"], older_than="1s")
            assert not result.ok
            assert re.fullmatch(rf"pid {pid} open \d+(\.\d)?s", result.observed or ""), result.observed
            assert result.expected == "no transaction open longer than 1s holding locks on child"
            # Which tables it holds is not visible: every long transaction in this database counts.
            assert f"pid {pid} (idle in transaction, open " in (result.detail or "")
            assert not check("no_long_transactions", ctx, tables=["parent"], older_than="1s").ok
            other.commit()
            time.sleep(0.2)  # INNODB_TRX is a cache that InnoDB refreshes at most every 0.1 s
            assert check("no_long_transactions", ctx, tables=["child"], older_than="1s").ok
    finally:
        engine.dispose()
    missing = check("no_long_transactions", ctx, tables=["nope"], older_than="1s")
    assert (missing.ok, missing.detail) == (False, "table nope does not exist")


def test_no_long_transactions_ignores_other_databases(ctx: CheckContext, url: str) -> None:
    """A transaction of a session in another database holds nothing here."""
    elsewhere = f"{database(url)}_other"
    admin = sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{elsewhere}`")
        conn.exec_driver_sql(f"CREATE TABLE `{elsewhere}`.t (id int)")
    engine = sa.create_engine(sa.engine.make_url(normalize_url(url)).set(database=elsewhere))
    try:
        with engine.connect() as other:
            other.exec_driver_sql("SELECT COUNT(*) FROM t").all()
            time.sleep(2.1)
            assert check("no_long_transactions", ctx, older_than="1s").ok
            with admin.connect() as conn:  # the same transaction, seen from its own database
                conn.exec_driver_sql(f"USE `{elsewhere}`")
                trx = "SELECT COUNT(*) FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE p.DB = DATABASE()"
                assert conn.exec_driver_sql(trx).scalar_one() == 1
            other.rollback()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{elsewhere}`")
        admin.dispose()


def test_no_long_transactions_needs_the_process_privilege(ctx: CheckContext, url: str) -> None:
    """Without PROCESS a user sees only its own sessions: the check errors instead of passing blindly."""
    user = f"rb_{database(url)[-8:]}"
    admin = sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'"))
        conn.execute(sa.text(f"GRANT SELECT ON `{database(url)}`.* TO '{user}'@'%'"))
    try:
        limited = sa.engine.make_url(normalize_url(url)).set(username=user, password=f"pw-{user}")
        connections = Connections({"db": limited.render_as_string(hide_password=False)}, ctx.masker)
        result = check("no_long_transactions", CheckContext(workdir=ctx.workdir, env={}, masker=ctx.masker, connections=connections), older_than="1s")
        connections.dispose()
        assert (result.ok, result.error) == (
            False, "the connection's user cannot see other sessions' transactions: it needs the PROCESS privilege"
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP USER '{user}'@'%'"))
        admin.dispose()


# ---------------------------------------------------------------- alembic


def test_alembic_revision(ctx: CheckContext, url: str, tmp_path: Path) -> None:
    """current and at_head read alembic_version on MySQL as anywhere else."""
    versions = tmp_path / "db" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "db" / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    versions.joinpath("aaaaaaaaaaaa_a.py").write_text(textwrap.dedent("""\
        revision = 'aaaaaaaaaaaa'
        down_revision = None
        def upgrade(): pass
        def downgrade(): pass
        """))
    base = check("alembic_revision", ctx, current=[])
    assert (base.ok, base.detail) == (True, "no alembic_version table")
    engine = sa.create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('aaaaaaaaaaaa')")
    engine.dispose()
    assert check("alembic_revision", ctx, current="aaaaaaaaaaaa").ok
    assert check("alembic_revision", ctx, at_head=True, config="db/alembic.ini") == CheckResult(
        True, "aaaaaaaaaaaa", "head aaaaaaaaaaaa"
    )
