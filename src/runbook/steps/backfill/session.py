"""The one connection a backfill uses, with its per-dialect settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from runbook import mysql

if TYPE_CHECKING:
    import sqlalchemy as sa


@contextmanager
def session(engine: sa.Engine, lock_timeout: float, write: bool, statement_timeout: float = 30.0) -> Iterator[sa.Connection]:
    """One connection for the whole backfill, with SQLite's lock wait and read-only mode set and restored.

    PostgreSQL's settings are per batch (``SET LOCAL`` through ``set_config``, sent with
    the keyset probe), so its connection needs nothing here. MySQL and MariaDB: see
    ``_mysql_session``.
    """
    if mysql.is_mysql(engine.dialect.name):
        with _mysql_session(engine, lock_timeout, statement_timeout) as conn:
            yield conn
        return
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            yield conn
            return
        # The pool hands this connection to other steps afterwards: put the pragmas back.
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        query_only = conn.exec_driver_sql("PRAGMA query_only").scalar_one()
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {round(lock_timeout * 1000)}")
        if not write:
            conn.exec_driver_sql("PRAGMA query_only = 1")
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy)}")
            conn.exec_driver_sql(f"PRAGMA query_only = {int(query_only)}")
            conn.commit()


@contextmanager
def _mysql_session(engine: sa.Engine, lock_timeout: float, statement_timeout: float) -> Iterator[sa.Connection]:
    """READ COMMITTED, as on PostgreSQL: each statement of a batch sees what others committed
    before it, so the rows counted, read and written by a batch's statements agree (under
    REPEATABLE READ the counting SELECT would read the transaction's first snapshot while the
    UPDATE reads the latest rows). Timeouts are session variables here, set once and put back
    (``DEFAULT``: the server's value) before the pool hands the connection to another step.
    A dry run makes each transaction read only instead of the session: the resolve form
    creates its temporary table in the first one, which MySQL refuses in read-only mode."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="READ COMMITTED")
        sets, _notes = mysql.timeout_statements(engine.dialect, lock_timeout, statement_timeout)
        for statement in sets:
            conn.exec_driver_sql(statement)
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            for statement in sets:
                conn.exec_driver_sql(statement.split("=")[0] + "= DEFAULT")
            conn.commit()

