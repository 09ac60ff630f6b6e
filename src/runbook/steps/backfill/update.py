"""The ``update`` form: the author's own UPDATE for the batch's key range.

Counting what it did needs the rows that matched ``where`` before and still
match it after. On PostgreSQL the UPDATE runs inside a statement that returns
only the count of changed rows (its guard makes them the rows that matched
``where``) and the keys still matching (``RETURNING`` evaluates ``where`` on
the new rows): one round trip, no extra scan of the batch, about 8 % more work
than the bare UPDATE. Where that cannot be used (SQLite, an UPDATE that does
not start with UPDATE or has its own RETURNING, or whose FROM makes the names
in ``where`` ambiguous), the rows matching ``where`` are counted before and
listed after, two index range scans of the batch; on MySQL and MariaDB the
UPDATE's own count of matched rows replaces the count before.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from runbook import mysql
from runbook.steps.backfill.keys import Key
from runbook.steps.backfill.progress import Batch
from runbook.steps.backfill.walk import Span, Walk

if TYPE_CHECKING:
    import sqlalchemy as sa

_RETURNING = re.compile(r"\breturning\b", re.I)


class UpdateForm:
    def __init__(self, sql: str, where: str, key: Key, walk: Walk, *, write: bool) -> None:
        import sqlalchemy as sa

        self.key, self.walk, self.write = key, walk, write
        self.user = sa.text(sql).bindparams(*walk.lo, *walk.hi)
        todo = sa.select(*key.cols).where(walk.in_batch()).where(sa.text(f"({where})"))
        self.todo_keys = todo.order_by(*key.cols)
        self.todo_count = sa.select(sa.func.count()).select_from(todo.subquery())
        self.counted: sa.TextClause | None = None
        # MySQL and MariaDB report the rows an UPDATE matched (SQLAlchemy's drivers set
        # CLIENT_FOUND_ROWS), which its guard makes the rows that matched ``where``.
        self.matched = mysql.is_mysql(walk.dialect)
        if walk.pg and _RETURNING.search(sql) is None and sql.lstrip()[:6].lower() == "update":
            self.counted = _counted(sql, where, key, walk)

    def before_batch(self, conn: sa.Connection) -> None:
        """Nothing to prepare outside the batch's transaction."""

    def finish(self, conn: sa.Connection) -> None:
        """Nothing to clean up."""

    def trial(self, conn: sa.Connection) -> str | None:
        """Runs what a batch runs on an empty range; the caller rolls back. Falls back from the
        counting statement if PostgreSQL will not take it (raises what the plain form raises)."""
        import sqlalchemy as sa

        empty = self.walk.bounds(None, None)
        if not self.write:
            conn.execute(self.todo_count, empty)
            return None
        if self.counted is not None:
            savepoint = conn.begin_nested()
            try:
                conn.execute(self.counted, empty).all()
                savepoint.commit()
                return None
            except sa.exc.DBAPIError:
                savepoint.rollback()
                self.counted = None
        conn.execute(self.user, empty)
        conn.execute(self.todo_keys, empty).all()
        return None

    def run(self, conn: sa.Connection, span: Span) -> Batch:
        bounds = self.walk.bounds(span.lo, span.hi)
        batch = Batch(span.lo, span.hi, span.rows)
        if not self.write:
            # Without running the UPDATE nothing tells which rows it would resolve.
            todo = conn.execute(self.todo_count, bounds).scalar_one()
            batch.updated = todo
            batch.skipped_already_set = span.rows - todo
            return batch
        if self.counted is not None:
            touched, keys = conn.execute(self.counted, bounds).one()
            left = [tuple(k) if isinstance(k, list) else (k,) for k in keys or ()]
            todo, still = int(touched), len(left)
        elif self.matched:
            todo = conn.execute(self.user, bounds).rowcount
            left = [tuple(r) for r in conn.execute(self.todo_keys, bounds)]
            still = len(left)
        else:
            todo = conn.execute(self.todo_count, bounds).scalar_one()
            conn.execute(self.user, bounds)
            left = [tuple(r) for r in conn.execute(self.todo_keys, bounds)]
            still = len(left)
        batch.updated, batch.unresolved = todo - still, still
        batch.skipped_already_set = span.rows - todo
        batch.flagged = [(k, "unresolved", None) for k in left]
        return batch


def _counted(sql: str, where: str, key: Key, walk: Walk) -> sa.TextClause:
    """PostgreSQL: the UPDATE in a CTE returning, for each changed row, its key if it still
    matches ``where`` (else NULL); the statement returns how many rows changed and the keys
    still matching, aggregated: one scan of what the UPDATE returned."""
    import sqlalchemy as sa

    cols = [walk.quote(c) for c in key.columns]
    # Several columns travel as one JSON array per key (an array of records would lose their types).
    value = cols[0] if len(cols) == 1 else f"json_build_array({', '.join(cols)})"
    aggregate = "array_agg" if len(cols) == 1 else "json_agg"
    statement = (
        f"WITH _rb_u AS ({sql.strip().rstrip(';').rstrip()}\n RETURNING CASE WHEN ({where}) THEN {value} END AS _rb_left)"
        f" SELECT count(*), {aggregate}(_rb_left) FILTER (WHERE _rb_left IS NOT NULL) FROM _rb_u"
    )
    return sa.text(statement).bindparams(*walk.lo, *walk.hi)
