"""From a state store URL to an engine: where the store is and how to reach it.

SQLite stores are one file (default ``.runbook/state.db``). A PostgreSQL store
keeps every table in a schema of its own, ``runbook`` unless the URL's
``schema`` parameter or $RUNBOOK_STATE_SCHEMA names another, so it can share a
database with an application without touching its tables or its ``public``
schema. Statements name tables without a schema; the engine's
``schema_translate_map`` qualifies them, which works through connection poolers
that forget session settings such as ``search_path``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from runbook.connections import normalize_url
from runbook.errors import MissingExtra, StateStoreError, StateStoreUnusable
from runbook.masking import Masker

STATE_URL_ENV = "RUNBOOK_STATE_URL"
STATE_SCHEMA_ENV = "RUNBOOK_STATE_SCHEMA"
SCHEMA_PARAMETER = "schema"
DEFAULT_SCHEMA = "runbook"
STATE_DIR = ".runbook"
STATE_FILE = "state.db"

# Concurrent runbook processes wait this long for SQLite's write lock
# instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
# Custom execution option marking transactions that will write (see _sqlite_engine).
WRITE_OPTION = "runbook_write"

# Lower case only: PostgreSQL folds unquoted names, and a name that needs quotes
# would be spelled differently in every psql session that looks at it.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_RESERVED_SCHEMAS = frozenset({"public", "information_schema"})

# What the database (or the pool waiting for it) can raise at run time; any
# other SQLAlchemy error is a bug and keeps its traceback.
DB_ERRORS = (sa.exc.DBAPIError, sa.exc.TimeoutError)


@dataclass(frozen=True, slots=True)
class Location:
    """A store's URL (without runbook's own parameters), how to show it, and its schema."""

    url: sa.URL
    display: str
    masker: Masker
    # The PostgreSQL schema holding the tables; None for SQLite.
    schema: str | None


def locate(url: str | None, workdir: Path | None) -> Location:
    """Where the store is: ``url``, else $RUNBOOK_STATE_URL, else ``<workdir>/.runbook/state.db``."""
    url = url or os.environ.get(STATE_URL_ENV) or None
    masker = Masker()
    if url is None:
        path = _prepare_state_dir(workdir or Path.cwd())
        return Location(sa.URL.create("sqlite", database=str(path)), str(path), masker, None)
    display = masker.mask(url)
    try:
        parsed = sa.make_url(normalize_url(url))
    except sa.exc.ArgumentError as err:
        raise StateStoreError(f"invalid state store URL {display}") from err
    masker.add(parsed.password)
    display = masker.mask(parsed.render_as_string(hide_password=False))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if SCHEMA_PARAMETER in parsed.query:
            raise StateStoreUnusable(
                f"state store {display}: a SQLite store has no schemas",
                hint=f"drop ?{SCHEMA_PARAMETER}=...; it applies to PostgreSQL stores only",
            )
        return Location(parsed, display, masker, None)
    if backend != "postgresql":
        raise StateStoreError(f"unsupported state store {display}: use a sqlite:// or postgresql:// URL")
    # The driver would reject a parameter it does not know; the schema is runbook's.
    given = parsed.query.get(SCHEMA_PARAMETER)
    if isinstance(given, tuple):
        raise StateStoreUnusable(f"state store {display}: ?{SCHEMA_PARAMETER}= is given more than once")
    schema = _schema_name(given, display)
    return Location(parsed.difference_update_query([SCHEMA_PARAMETER]), display, masker, schema)


def _schema_name(from_url: str | None, display: str) -> str:
    name = from_url if from_url is not None else os.environ.get(STATE_SCHEMA_ENV) or DEFAULT_SCHEMA
    where = f"?{SCHEMA_PARAMETER}= of {display}" if from_url is not None else f"${STATE_SCHEMA_ENV}"
    if not _SCHEMA_NAME.fullmatch(name):
        raise StateStoreUnusable(
            f"invalid state store schema {name!r} (from {where})",
            hint="use lower-case letters, digits and _, starting with a letter or _, at most 63 characters",
        )
    if name in _RESERVED_SCHEMAS or name.startswith("pg_"):
        raise StateStoreUnusable(
            f"state store schema {name!r} (from {where}) is not runbook's to use",
            hint=f"runbook keeps its tables in a schema of their own; the default is {DEFAULT_SCHEMA!r}",
        )
    return name


def create_engine(location: Location) -> Engine:
    """The engine for ``location``; on PostgreSQL its statements land in the store's schema."""
    url = location.url
    try:
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                _prepare_sqlite_file(Path(url.database))
            return _sqlite_engine(url)
        # pre-ping replaces pooled connections whose backend died while idle.
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    except ImportError as err:  # a driver not installed: name the extra that installs it
        missing = MissingExtra.of_import_error(err, f"the state store {location.display}")
        if missing is not None:
            raise missing from None
        raise StateStoreError(location.masker.mask(f"cannot use state store {location.display}: {err}")) from err
    except sa.exc.ArgumentError as err:  # unknown driver
        raise StateStoreError(location.masker.mask(f"cannot use state store {location.display}: {err}")) from err
    return engine


def in_schema(engine: Engine, schema: str | None) -> Engine:
    """``engine`` with every unqualified table placed in ``schema`` (unchanged for None)."""
    return engine if schema is None else engine.execution_options(schema_translate_map={None: schema})


def quoted_schema(conn: Connection, schema: str) -> str:
    return conn.dialect.identifier_preparer.quote_schema(schema)


def store_error(err: BaseException, where: str, masker: Masker) -> StateStoreError:
    """One masked line for a database error; the driver's extra lines and SQLAlchemy's links dropped."""
    cause: BaseException = err.orig if isinstance(err, sa.exc.DBAPIError) and err.orig is not None else err
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        reason = f"connection lost: {reason}"
    return StateStoreError(masker.mask(f"state store {where}: {reason}"))


def _prepare_state_dir(workdir: Path) -> Path:
    """Create ``<workdir>/.runbook`` private to the user; refuse a planted symlink."""
    state_dir = workdir / STATE_DIR
    if state_dir.is_symlink():
        raise StateStoreError(
            f"refusing to use {state_dir}: it is a symlink", hint="remove it; runbook creates the directory itself"
        )
    try:
        state_dir.mkdir(mode=0o700, exist_ok=True)
    except OSError as err:
        raise StateStoreError(f"cannot create {state_dir}: {err.strerror}") from err
    return state_dir / STATE_FILE


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file readable by its owner only; refuse a symlink."""
    if path.is_symlink():
        raise StateStoreError(
            f"refusing to use {path}: it is a symlink", hint="a state store must be a regular file; remove the link"
        )
    try:
        # O_NOFOLLOW closes the gap between the check above and the open.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise StateStoreError(f"cannot open state store {path}: {err.strerror}") from err
    os.close(fd)


def _sqlite_engine(url: sa.URL) -> Engine:
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the driver so _begin below can choose its flavour.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A deferred transaction that reads then writes cannot wait for the
        # write lock in WAL mode (SQLITE_BUSY at once, busy_timeout or not);
        # IMMEDIATE takes it up front, which also serializes lock acquisition.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
