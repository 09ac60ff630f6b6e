"""Shared fixtures: real databases only.

PostgreSQL comes from ``RUNBOOK_TEST_PG_URL`` when set, otherwise from the
embedded server shipped by the ``pgserver`` wheel, started once per session.
Each test that asks for ``pg_url`` gets its own freshly created database so
tests never see each other's tables. The demo app's seeded database is built once
per session and copied for each test that needs it (``seeded_demo_databases``).

MariaDB (or MySQL) comes from ``RUNBOOK_TEST_MARIADB_URL`` when set, which must
then answer, otherwise from ``mysql://root@127.0.0.1:3306`` if a server answers
there; without one, the tests that ask for ``mariadb_url`` are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from runbook.process import ProcessSupervisor

ROOT = Path(__file__).resolve().parent.parent


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
    # The server's socket lives in its data directory (0700): other OS users, who approve
    # in tests/team, may pass through to it (not list it). PostgreSQL checks the mode at start only.
    os.chmod(datadir, 0o711)
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
def _fresh_database(pg_server_url: str, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template`` when given), dropped afterwards."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
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


# The fixture that makes a fresh database of each kind, by the id a parametrized test shows.
DATABASE_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "pg_url", "mariadb": "mariadb_url"}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(DATABASE_FIXTURES[request.param]))


@pytest.fixture(params=list(DATABASE_FIXTURES))
def any_db_url(request: pytest.FixtureRequest) -> str:
    """Run the test on SQLite, PostgreSQL and MariaDB (skipped without a MariaDB server).
    ``@pytest.mark.parametrize("any_db_url", ["postgresql", "mariadb"], indirect=True)`` picks some."""
    return str(request.getfixturevalue(DATABASE_FIXTURES[request.param]))


@pytest.fixture
def supervisor() -> Iterator[ProcessSupervisor]:
    """A process supervisor installed in this (main) thread: real signals to this process reach it."""
    from runbook.process import ProcessSupervisor

    supervisor = ProcessSupervisor()
    supervisor.install()
    try:
        yield supervisor
    finally:
        supervisor.uninstall()


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


# ---------------------------------------------------------------- the demo app's database, seeded once

ISPCTL = ROOT / "examples" / "isp" / "ispctl.py"


class SeededDemoDatabases:
    """The demo app's database at the state before the change (``ispctl init``) with
    generated data (``ispctl generate --rows N --seed S``), built once per session for
    each (backend, rows, seed) and copied for each test: every test still gets its own
    fresh database, without paying for the migrations and the seeding again."""

    def __init__(self, request: pytest.FixtureRequest, workdir: Path) -> None:
        self._request = request
        self._workdir = workdir
        self._sqlite: dict[tuple[int, int], Path] = {}
        self._postgresql: dict[tuple[int, int], str] = {}
        self._server: str | None = None

    def _seed(self, url: str, rows: int, seed: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ISP_"))}
        env.update(ISP_DATABASE_URL=url, ISP_HOME=str(self._workdir / f"home-{uuid.uuid4().hex[:8]}"))
        for args in (["init"], ["generate", "--rows", str(rows), "--seed", str(seed)]):
            done = subprocess.run([sys.executable, str(ISPCTL), *args], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"ispctl {' '.join(args)}: {done.stderr}"

    @contextmanager
    def copy(self, backend: str, dest: Path, *, rows: int, seed: int) -> Iterator[str]:
        """A fresh copy's URL: a SQLite file at ``dest``, or a new PostgreSQL database (dropped after)."""
        key = (rows, seed)
        if backend == "sqlite":
            if key not in self._sqlite:
                self._sqlite[key] = self._workdir / f"isp-{rows}-{seed}.db"
                self._seed(f"sqlite:///{self._sqlite[key]}", rows, seed)
            for suffix in ("", "-wal"):  # the WAL is folded in when the last connection closes; copied if not
                if Path(f"{self._sqlite[key]}{suffix}").exists():
                    shutil.copyfile(f"{self._sqlite[key]}{suffix}", f"{dest}{suffix}")
            yield f"sqlite:///{dest}"
            return
        server = self._server = self._request.getfixturevalue("pg_server_url")
        if key not in self._postgresql:
            # Unique: test sessions may share one server (RUNBOOK_TEST_PG_URL).
            self._postgresql[key] = f"tpl_isp_{rows}_{seed}_{uuid.uuid4().hex[:8]}"
            self._create_template(server, self._postgresql[key], rows, seed)
        with _fresh_database(server, template=self._postgresql[key]) as url:
            yield url

    def _create_template(self, server: str, name: str, rows: int, seed: int) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        self._seed(sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False), rows, seed)

    def drop_templates(self) -> None:
        """On a server that outlives the session (RUNBOOK_TEST_PG_URL); the embedded one goes whole."""
        if self._server is None or not _admin_url():
            return
        import sqlalchemy as sa

        admin = sa.create_engine(self._server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for name in self._postgresql.values():
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


@pytest.fixture(scope="session")
def seeded_demo_databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededDemoDatabases]:
    """See SeededDemoDatabases: ``with seeded_demo_databases.copy("sqlite", path, rows=600, seed=42) as url``."""
    databases = SeededDemoDatabases(request, tmp_path_factory.mktemp("seeded-demo"))
    yield databases
    databases.drop_templates()


def stop_demo_server(home: Path) -> None:
    """What ``ispctl down`` does (SIGTERM, then SIGKILL after 10 s), without starting a Python
    process that imports the app to do it: teardown only, so a test's own work still goes
    through ispctl."""
    import signal
    import time

    try:
        pid = int((home / "api-server.pid").read_text())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while _running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    (home / "api-server.pid").unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited server waits for init to reap it)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (rare): reap it
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
