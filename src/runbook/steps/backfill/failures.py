"""What a failed batch means: worth retrying smaller, or a mistake retrying only repeats."""

from __future__ import annotations

from typing import Any


class BatchFailed(Exception):
    """A mistake in the step's SQL or data that retrying cannot fix; the batch was rolled back."""


def retryable(err: BaseException) -> bool:
    """Lock and statement timeouts, deadlocks, a dropped connection: the database's state of the
    moment, worth a smaller retry. Wrong types, constraint violations and SQL errors are the
    author's or the data's: every retry would fail the same way."""
    import sqlalchemy as sa

    permanent: tuple[type[Any], ...] = (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.ProgrammingError)
    return not isinstance(err, permanent)
