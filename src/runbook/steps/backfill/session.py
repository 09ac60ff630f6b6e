"""The one connection a backfill uses, with its per-dialect settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa


@contextmanager
def session(engine: sa.Engine, lock_timeout: float, write: bool) -> Iterator[sa.Connection]:
    """One connection for the whole backfill, with SQLite's lock wait and read-only mode set and restored.

    PostgreSQL's settings are per batch (``SET LOCAL`` through ``set_config``, sent with
    the keyset probe), so its connection needs nothing here.
    """
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
