"""Errors for the operator, and the one way database errors are written to logs."""

from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError

# PostgreSQL words it three ways depending on the statement (bare, qualified,
# INSERT column list); SQLite two ways (SELECT, INSERT).
_MISSING_COLUMN = re.compile(
    r'column "?(?:\w+\.)?(?P<pg>\w+)"? (?:of relation "\w+" )?does not exist'
    r"|no such column: (?:\w+\.)?(?P<select>\w+)"
    r"|has no column named (?P<insert>\w+)"
)


class IspError(Exception):
    """An error meant for the operator: printed as one line, exit status 1."""


def describe_db_error(err: DBAPIError) -> str:
    """One log line for a database error.

    A missing column is always written in the seed's PostgreSQL wording,
    ``ProgrammingError: column "x" does not exist``, whatever the database or
    statement, because that is the line operators grep for; the driver's own
    text follows when it differs.
    """
    native = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
    match = _MISSING_COLUMN.search(native)
    if match is None:
        return f"{type(err).__name__}: {native}"
    column = match["pg"] or match["select"] or match["insert"]
    canonical = f'column "{column}" does not exist'
    suffix = "" if native == canonical else f" (driver: {native})"
    return f"ProgrammingError: {canonical}{suffix}"
