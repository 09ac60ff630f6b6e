"""What runbook needs to know about MySQL and MariaDB.

Both are the ``mysql`` dialect of SQLAlchemy (``mariadb`` when a URL asks for
it by name); ``is_mariadb`` tells the servers apart once connected. The facts
that shape the steps:

- DDL is not transactional: each DDL statement commits the transaction it
  runs in, before it runs, and cannot be rolled back. A script or migration
  that fails after one has left it, and what ran before it, applied.
- Timeouts are session variables, in whole seconds for lock waits, and the
  statement timeout differs: MariaDB's ``max_statement_time`` (seconds, any
  statement), MySQL's ``max_execution_time`` (milliseconds, SELECT only).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

DIALECTS = frozenset({"mysql", "mariadb"})

# Statements that commit implicitly (the common ones a migration runs). CREATE
# TEMPORARY TABLE and DROP TEMPORARY TABLE are the exceptions that do not.
_IMPLICIT_COMMIT = re.compile(
    r"\s*(?:CREATE|ALTER|DROP|RENAME|TRUNCATE|GRANT|REVOKE|LOCK\s+TABLES|UNLOCK\s+TABLES)\b(?!\s+TEMPORARY\b)",
    re.IGNORECASE,
)

# Errors that a DDL statement gives when its change is already there (or, for a
# DROP or RENAME, already gone): run again after it committed, it fails with one of these.
ALREADY_APPLIED_ERRORS = {
    1050: "table already exists",
    1051: "table already dropped",
    1054: "column already renamed or dropped",
    1060: "column already exists",
    1061: "index already exists",
    1091: "already dropped",
    1146: "table already renamed or dropped",
    1304: "routine already exists",
    1305: "routine already dropped",
    1359: "trigger already exists",
    1360: "trigger already dropped",
    1826: "foreign key already exists",
    3822: "check constraint already exists",
}
# MariaDB reports a foreign key that already exists as "Can't create table ... (errno: 121 ...)".
_DUPLICATE_FOREIGN_KEY = 1005, "errno: 121"
# Errors of these drivers carry MySQL's error code as their first argument.
_DRIVER_MODULES = ("pymysql", "MySQLdb", "mariadb", "mysql.connector")


def is_mysql(dialect_name: str) -> bool:
    return dialect_name in DIALECTS


def flavour(dialect: sa.Dialect) -> str:
    """``MariaDB`` or ``MySQL``, as the server said when the engine first connected."""
    return "MariaDB" if getattr(dialect, "is_mariadb", False) else "MySQL"


def commits_implicitly(statement: str) -> bool:
    return bool(_IMPLICIT_COMMIT.match(statement))


def already_applied(err: BaseException) -> str | None:
    """Why a DDL statement that ran before failed again, when its change is already there."""
    orig = getattr(err, "orig", err)
    if not type(orig).__module__.startswith(_DRIVER_MODULES):
        return None
    args: tuple[Any, ...] = orig.args
    code = args[0] if args and isinstance(args[0], int) else None
    if code == _DUPLICATE_FOREIGN_KEY[0] and _DUPLICATE_FOREIGN_KEY[1] in str(args[1:]):
        return "foreign key already exists"
    return ALREADY_APPLIED_ERRORS.get(code) if code is not None else None


def timeout_statements(dialect: sa.Dialect, lock_timeout: float | None, statement_timeout: float | None) -> tuple[list[str], list[str]]:
    """Session SETs for the step's timeouts, and notes on how they were applied.

    Lock waits are whole seconds, at least one: a metadata lock (DDL waiting
    behind an open transaction) uses ``lock_wait_timeout``, a row lock
    ``innodb_lock_wait_timeout``; both are set. Only numbers reach the SQL."""
    sets: list[str] = []
    notes: list[str] = []
    if lock_timeout is not None:
        seconds = max(1, math.ceil(lock_timeout))
        sets += [f"SET SESSION lock_wait_timeout = {seconds}", f"SET SESSION innodb_lock_wait_timeout = {seconds}"]
        if seconds != lock_timeout:
            notes.append(f"lock_timeout rounded up to {seconds}s: {flavour(dialect)} counts lock waits in whole seconds")
    if statement_timeout is not None:
        if flavour(dialect) == "MariaDB":
            sets.append(f"SET SESSION max_statement_time = {float(statement_timeout):.3f}")
        else:
            sets.append(f"SET SESSION max_execution_time = {max(1, round(statement_timeout * 1000))}")
            notes.append("statement_timeout applies to SELECT statements only on MySQL (max_execution_time)")
    return sets, notes
