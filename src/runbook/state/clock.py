"""The store's clock: what lock heartbeats are stamped with and staleness is judged by.

On PostgreSQL that is the server's ``now()``, never a client's clock: two
hosts whose clocks disagree by minutes then still agree on how long a holder
has been silent. A SQLite store has no server; its clock is the clock of the
machine the file is on, which is this process's.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.state.schema import UTCDateTime


def now_expression(conn: Connection) -> sa.ColumnElement[datetime]:
    """The store's current time, as a value to write in a statement on ``conn``.

    PostgreSQL's ``now()`` is the start of the current transaction: every
    statement of one transaction sees the same instant.
    """
    if conn.dialect.name == "postgresql":
        return sa.func.now(type_=UTCDateTime())
    return sa.literal(datetime.now(UTC), UTCDateTime())


def database_now(conn: Connection) -> datetime:
    """The store's current time, read (UTC-aware)."""
    if conn.dialect.name == "postgresql":
        now: datetime = conn.execute(sa.select(now_expression(conn))).scalar_one()
        return now
    return datetime.now(UTC)


def local_now() -> datetime:
    """This process's clock: for what rows record (a run's start, an event's time), never for lock decisions."""
    return datetime.now(UTC)
