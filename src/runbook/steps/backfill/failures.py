"""What a failed batch means: worth retrying smaller, or a mistake retrying only repeats."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa


class BatchFailed(Exception):
    """A mistake in the step's SQL or data that retrying cannot fix; the batch was rolled back.

    ``diagnose``, when given, says what exactly went wrong by looking again once the batch is
    rolled back (inside the batch, its own writes hide the rows that were wrong)."""

    def __init__(self, message: str, diagnose: Callable[[sa.Connection], str] | None = None) -> None:
        super().__init__(message)
        self.diagnose = diagnose

    def explain(self, conn: sa.Connection) -> str:
        if self.diagnose is None:
            return str(self)
        with conn.begin() as looking:
            try:
                return self.diagnose(conn)
            finally:
                looking.rollback()


def retryable(err: BaseException) -> bool:
    """Lock and statement timeouts, deadlocks, a dropped connection: the database's state of the
    moment, worth a smaller retry. Wrong types, constraint violations and SQL errors are the
    author's or the data's: every retry would fail the same way."""
    import sqlalchemy as sa

    permanent: tuple[type[Any], ...] = (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.ProgrammingError)
    return not isinstance(err, permanent)
