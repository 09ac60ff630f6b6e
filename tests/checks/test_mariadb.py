"""What only MariaDB (or MySQL) shows of the database checks: its driver, and how it finds long
transactions. Every other check is asked on MariaDB too, in test_db_checks.py. ``mariadb_url``
is a fresh database on the server of RUNBOOK_TEST_MARIADB_URL, or of mysql://root@127.0.0.1:3306;
without a server these tests are skipped."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.checks import CheckContext
from runbook.connections import Connections, normalize_url
from tests.checks.sample_schema import SECRET, build_schema, check, make_context


@pytest.fixture
def url(mariadb_url: str) -> str:
    """The sample schema on MariaDB."""
    build_schema(mariadb_url)
    return mariadb_url


@pytest.fixture
def ctx(url: str, tmp_path: Path) -> Iterator[CheckContext]:
    yield from make_context(url, tmp_path)


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
