"""What alembic's migrations leave behind on MySQL and MariaDB when one fails.

There DDL is not transactional: alembic runs each migration in a transaction,
but every DDL statement in it commits on its own. When a migration fails
after one, that change stays while ``alembic_version`` still names the
revision before, and running the migration again stops at the same
statement (the table already exists).

While the alembic step runs alembic, ``MigrationDdl`` listens to SQLAlchemy's
cursor events on MySQL connections made in this thread: each DDL statement
that succeeds is kept in the step's checkpoint under its migration
(``upgrade a -> b``), and forgotten once the migration is committed with its
version row. So a failure (or a crash) leaves in the checkpoint exactly the
statements that stayed; the step's error names them, and the next attempt
(``--resume``) runs them again through ``KeptDdl.run_again``: one that fails
because its change is already there counts as done, and the driver is given
a no-op (``DO 0``) in its place.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runbook import mysql
from runbook.steps.kept_ddl import KeptDdl

if TYPE_CHECKING:
    import sqlalchemy as sa

    from runbook.masking import Masker
    from runbook.steps.base import Checkpoints

# What the driver runs instead of a statement already applied: MySQL's no-op.
NO_OP = "DO 0"
SHOWN_CHARS = 100
# "( id ... )" of a flattened CREATE TABLE, shown as "(id ...)".
_PAREN_SPACE = re.compile(r"\( | \)")


class MigrationDdl:
    """The DDL of the running migration that committed, and of earlier attempts."""

    def __init__(
        self, checkpoints: Checkpoints, masker: Masker, running: Callable[[], str | None], output: Callable[[str], None]
    ) -> None:
        self._checkpoints = checkpoints
        self._masker = masker
        self._running = running  # the migration alembic announced last, as "upgrade a -> b"
        self._output = output
        self._kept: KeptDdl | None = None  # read from the checkpoint at the first MySQL statement
        self._thread = threading.get_ident()
        self._ran: set[str] = set()  # migrations this attempt ran (or began)
        self.flavour = "MySQL"

    @contextmanager
    def watching(self) -> Iterator[None]:
        import sqlalchemy as sa

        listeners: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
            ("before_cursor_execute", self._before, {"retval": True}),
            ("after_cursor_execute", self._after, {}),
            ("commit", self._commit, {}),
        ]
        for name, fn, options in listeners:
            sa.event.listen(sa.engine.Engine, name, fn, **options)
        try:
            yield
        finally:
            for name, fn, _options in listeners:
                sa.event.remove(sa.engine.Engine, name, fn)

    def passed(self) -> None:
        """Every migration is committed: nothing is left half applied."""
        if self._kept is not None:
            self._kept.clear()

    def left_applied(self) -> dict[str, list[str]]:
        """Per migration, the statements that stayed although it did not complete (masked)."""
        return self._kept.groups if self._kept else {}

    def describe(self, failed: str) -> str:
        """``MariaDB kept 1 statement of it: CREATE TABLE ...`` for the failure's message, or ""."""
        parts = [
            f"{len(statements)} statement{'s' if len(statements) != 1 else ''} of {'it' if group == failed else group}: "
            + " | ".join(_shown(s) for s in statements)
            for group, statements in self.left_applied().items()
        ]
        return f"; {self.flavour} kept {'; '.join(parts)}, as each DDL statement commits as it runs" if parts else ""

    # ------------------------------------------------------------ SQLAlchemy events

    def _migration(self, conn: sa.Connection) -> str | None:
        if threading.get_ident() != self._thread or not mysql.is_mysql(conn.dialect.name):
            return None
        migration = self._running()
        if migration is not None:
            self.flavour = mysql.flavour(conn.dialect)
            if self._kept is None:
                self._kept = KeptDdl(self._checkpoints, self._masker)
        return migration

    def _before(
        self, conn: sa.Connection, cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> tuple[str, Any]:
        migration = self._migration(conn)
        if migration is None or self._kept is None or executemany or parameters:
            return statement, parameters
        self._ran.add(migration)
        if not self._kept.kept_earlier(migration, statement):
            return statement, parameters
        # Run here, where an 'already there' error can be told apart; a real error propagates.
        _result, done_before = self._kept.run_again(migration, statement, lambda: cursor.execute(statement, parameters))
        if done_before:
            self._output(f"already applied by an earlier attempt ({done_before}), taken as done: {_shown(statement)}")
        self._kept.keep(migration, statement)
        return NO_OP, parameters

    def _after(
        self, conn: sa.Connection, _cursor: Any, statement: str, _parameters: Any, _context: Any, _executemany: bool
    ) -> None:
        migration = self._migration(conn)
        if migration is None or self._kept is None or statement == NO_OP:
            return
        self._ran.add(migration)
        if mysql.commits_implicitly(statement):
            self._kept.keep(migration, statement)
            # It committed what ran before it: the migrations before this one, version rows included.
            for group in list(self._kept.groups):
                if group != migration and group in self._ran:
                    self._kept.forget(group)

    def _commit(self, conn: sa.Connection) -> None:
        # alembic commits on MySQL after each migration and its version row: those that ran are complete.
        if self._migration(conn) is None or self._kept is None:
            return
        for group in list(self._kept.groups):
            if group in self._ran:
                self._kept.forget(group)


def _shown(statement: str) -> str:
    flat = _PAREN_SPACE.sub(lambda m: m[0].strip(), " ".join(statement.split()))
    return flat if len(flat) <= SHOWN_CHARS else flat[:SHOWN_CHARS] + " ..."
