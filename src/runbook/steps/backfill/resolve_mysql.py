"""The ``resolve`` form on MySQL and MariaDB: the batch's resolved rows in a temporary table.

As on PostgreSQL, the resolved values never travel to the client and back:
the author's SELECT fills a temporary table (``INSERT ... SELECT``), one
multi-table UPDATE joins it to write the rows taken (guarded by ``where``)
and marks them written, and two reads return the batch's counts and the rows
to report. A temporary table rather than one statement: MySQL has no
``UPDATE ... RETURNING`` and no data-changing CTEs, and fetching every
resolved row to write it back with one UPDATE per row (PyMySQL's
``executemany`` of an UPDATE is one round trip per row) costs about ten times
as much. MySQL cannot open one temporary table twice in a statement (MariaDB
can), hence the counts and the details as two reads.

The table is the session's own (other sessions never see it), created once
by the trial before the first batch, with the column types of the author's
SELECT, and dropped when the backfill ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbook.steps.backfill.failures import BatchFailed
from runbook.steps.backfill.keys import Key
from runbook.steps.backfill.params import BackfillParams
from runbook.steps.backfill.walk import Span, Walk

if TYPE_CHECKING:
    import sqlalchemy as sa

    from runbook.steps.backfill.resolve import Outcome

TABLE = "_rb_resolved"


class MysqlResolve:
    def __init__(self, p: BackfillParams, key: Key, walk: Walk, sql: str, *, write: bool) -> None:
        import sqlalchemy as sa

        q, t = walk.quote, walk.table_sql
        n = len(key.columns)
        self.n, self.write = n, write
        source = [q("key")] if n == 1 else [q(c) for c in key.columns]
        rk = [f"_rb_k{i}" for i in range(n)]
        keys = ", ".join(f"_rb_q.{s} AS {k}" for s, k in zip(source, rk, strict=True))
        taken = f"(_rb_q.{q('value')} IS NOT NULL AND (_rb_q.candidates = 1 OR (_rb_q.candidates > 1 AND :_rb_first)))"
        select = f"SELECT {keys}, _rb_q.{q('value')} AS _rb_value, _rb_q.candidates AS _rb_candidates"
        # Created from the SELECT itself (with NULL bounds: no row), so the keys have the SELECT's types;
        # the value has the column's, so that a value the column cannot hold fails as the batch fills it.
        value_type = key.table.c[p.set_column or ""].type.compile(dialect=walk.sa_dialect)
        self.creating = sa.text(
            f"CREATE TEMPORARY TABLE {TABLE} (_rb_value {value_type})"
            f" AS {select}, 0 AS _rb_take, 0 AS _rb_written FROM ({sql}) _rb_q WHERE 1 = 0"
        ).bindparams(*walk.lo, *walk.hi)
        self.target = p.target
        self.clear = f"TRUNCATE TABLE {TABLE}"
        self.fill = sa.text(f"INSERT INTO {TABLE} {select}, {taken}, 0 FROM ({sql}) _rb_q").bindparams(*walk.lo, *walk.hi)
        table_keys = [f"{t}.{q(c)}" for c in key.columns]
        same = " AND ".join(f"{tk} = {TABLE}.{k}" for tk, k in zip(table_keys, rk, strict=True))
        self.change = sa.text(
            f"UPDATE {t} JOIN {TABLE} ON {same}"
            f" SET {t}.{q(p.set_column or '')} = {TABLE}._rb_value, {TABLE}._rb_written = 1"
            f" WHERE {TABLE}._rb_take = 1 AND ({p.where})"
        )
        lo, hi = [f":{b.key}" for b in walk.lo], [f":{b.key}" for b in walk.hi]
        outside = f"NOT ({_at_least(rk, lo)} AND {_at_least(hi, rk)})"
        self.counts = sa.text(
            f"SELECT count(*), count(DISTINCT {', '.join(rk)}), COALESCE(sum({outside}), 0),"
            f" COALESCE(sum({'_rb_written' if write else '_rb_take'}), 0), COALESCE(sum(_rb_take), 0) FROM {TABLE}"
        ).bindparams(*walk.lo, *walk.hi)
        written = "_rb_written" if write else "_rb_take"
        self.details = sa.text(
            f"SELECT {', '.join(rk)}, _rb_candidates, {written} FROM {TABLE} WHERE _rb_take = 0 OR _rb_candidates > 1"
        )
        self.drop = f"DROP TEMPORARY TABLE IF EXISTS {TABLE}"

    def create(self, conn: sa.Connection, empty: dict[str, Any]) -> None:
        """In the trial's transaction: a temporary table outlives its rollback."""
        conn.exec_driver_sql(self.drop)
        conn.execute(self.creating, empty)

    def finish(self, conn: sa.Connection) -> None:
        import sqlalchemy as sa

        try:
            conn.rollback()
            conn.exec_driver_sql(self.drop)
            conn.commit()
        except sa.exc.DBAPIError:
            # The connection is gone (what ended the backfill, reported already): the table went with it.
            pass

    def before_batch(self, conn: sa.Connection) -> None:
        """Empty the table, outside any transaction: TRUNCATE commits implicitly (nothing, here).
        Not DELETE: InnoDB keeps a temporary table's deleted rows until purge, and every scan
        of it walks them; after a thousand batches each took ten times as long."""
        conn.exec_driver_sql(self.clear)
        conn.commit()

    def run(self, conn: sa.Connection, bounds: dict[str, Any], first: bool) -> tuple[Outcome, bool]:
        """The batch's outcome, and whether its keys were all distinct and inside the batch."""
        import sqlalchemy as sa

        try:
            conn.execute(self.fill, {**bounds, "_rb_first": first})
        except sa.exc.DataError as err:
            # Strict mode's 1366/1264/1406 (the default; otherwise MySQL stores 0, a cut string or the type's limit).
            args: tuple[Any, ...] = tuple(getattr(err.orig, "args", ()))
            said = str(args[1]) if len(args) > 1 else str(err.orig)
            raise BatchFailed(f"resolve returned a value that {self.target} cannot hold: {said.split(' for column ')[0]}") from err
        if self.write:
            conn.execute(self.change)
        todo, distinct, outside, written, taken = (int(v) for v in conn.execute(self.counts, bounds).one())
        n = self.n
        details = [(tuple(r[:n]), int(r[n] or 0), bool(r[n + 1])) for r in conn.execute(self.details)]
        return (details, todo, written, taken - written), distinct == todo and not outside


def _at_least(a: list[str], b: list[str]) -> str:
    """``a >= b`` in key order, expanded (MySQL does not use an index for row-value comparisons)."""
    if len(a) == 1:
        return f"{a[0]} >= {b[0]}"
    terms = []
    for i in range(len(a)):
        equal = [f"{a[j]} = {b[j]}" for j in range(i)]
        last = f"{a[i]} {'>=' if i == len(a) - 1 else '>'} {b[i]}"
        terms.append("(" + " AND ".join([*equal, last]) + ")")
    return "(" + " OR ".join(terms) + ")"
