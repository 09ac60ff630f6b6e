"""Shared fixtures: real databases only.

PostgreSQL comes from ``RUNBOOK_TEST_PG_URL`` when set, otherwise from the
embedded server shipped by the ``pgserver`` wheel, started once per session.
Each test that asks for ``pg_url`` gets its own freshly created database so
tests never see each other's tables.

MariaDB (or MySQL) comes from ``RUNBOOK_TEST_MARIADB_URL`` when set, which must
then answer, otherwise from ``mysql://root@127.0.0.1:3306`` if a server answers
there; without one, the tests that ask for ``mariadb_url`` are skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _admin_url() -> str:
    return os.environ.get("RUNBOOK_TEST_PG_URL", "")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """SQLAlchemy URL (psycopg 3 driver) of a PostgreSQL server for the session."""
    url = _admin_url()
    if url:
        yield _with_psycopg_driver(url)
        return
    import pgserver

    # Not under pytest's basetemp: pytest prunes old basetemps of concurrent sessions,
    # which would delete a running server's data directory.
    datadir = tempfile.mkdtemp(prefix="runbook-test-pg-")
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    try:
        yield _with_psycopg_driver(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


def _with_psycopg_driver(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped after the test."""
    with _fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture
def other_pg_url(pg_server_url: str) -> Iterator[str]:
    """A second fresh database, for comparing what two routes to the same schema did."""
    with _fresh_database(pg_server_url) as url:
        yield url


@contextmanager
def _fresh_database(pg_server_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


MARIADB_DEFAULT_URL = "mysql://root@127.0.0.1:3306"


@pytest.fixture(scope="session")
def mariadb_server_url() -> str:
    """SQLAlchemy URL (PyMySQL driver) of a MariaDB or MySQL server, without a database."""
    import sqlalchemy as sa

    from runbook.connections import normalize_url

    given = os.environ.get("RUNBOOK_TEST_MARIADB_URL", "")
    url = sa.engine.make_url(normalize_url(given or MARIADB_DEFAULT_URL)).set(database=None)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as err:
        where = url.render_as_string(hide_password=True)
        if given:
            pytest.fail(f"RUNBOOK_TEST_MARIADB_URL {where} does not answer: {err.orig}")
        pytest.skip(f"no MariaDB/MySQL server at {where} (set RUNBOOK_TEST_MARIADB_URL): {err.orig}")
    finally:
        engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.fixture
def mariadb_url(mariadb_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the MariaDB server; dropped after the test."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield sa.engine.make_url(mariadb_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # As PostgreSQL's DROP DATABASE ... WITH (FORCE): a session left open would block the drop.
            left = conn.exec_driver_sql(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()", (name,)
            ).scalars().all()
            for session in left:
                try:
                    conn.exec_driver_sql(f"KILL {int(session)}")
                except sa.exc.DBAPIError:  # it ended meanwhile
                    pass
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
