"""Keyset SQL: the next batch of keys after a position, never OFFSET from the start.

A batch is the next ``size`` keys after the last committed one, found by two
index probes in one statement: the first key after the position and the
``size``-th (``ORDER BY key LIMIT 1 OFFSET size - 1``). Both read only the
index, so finding a batch costs the same at the end of the table as at the
start. The batch is then the closed range ``lo..hi``, which is what the
author's SQL binds and what our guards filter on.

Comparisons of several columns use row values, ``(a, b) > (:a, :b)``, where
the dialect has them and uses the index for them (PostgreSQL, SQLite);
elsewhere the expanded form ``a > :a OR (a = :a AND b > :b)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook.steps.backfill.keys import Key, KeyValue
from runbook.steps.backfill.params import bind_names

if TYPE_CHECKING:
    import sqlalchemy as sa

ROW_VALUE_DIALECTS = frozenset({"postgresql", "sqlite"})


@dataclass(frozen=True)
class Span:
    """One batch: the keys ``lo..hi`` (both included), ``rows`` of them when it was found."""

    lo: KeyValue
    hi: KeyValue
    rows: int


def compare(op: str, cols: Sequence[Any], values: Sequence[Any], dialect: str) -> sa.ColumnElement[bool]:
    """``cols OP values`` in key order, for ``op`` one of ``>``, ``>=``, ``<``, ``<=``."""
    import sqlalchemy as sa

    ops = {">": "__gt__", ">=": "__ge__", "<": "__lt__", "<=": "__le__"}
    if len(cols) == 1:
        return getattr(cols[0], ops[op])(values[0])
    if dialect in ROW_VALUE_DIALECTS:
        return getattr(sa.tuple_(*cols), ops[op])(sa.tuple_(*values))
    strict = ops[op[0]]
    terms = []
    for i in range(len(cols)):
        equal = [cols[j] == values[j] for j in range(i)]
        last = getattr(cols[i], ops[op] if i == len(cols) - 1 else strict)(values[i])
        terms.append(sa.and_(*equal, last))
    return sa.or_(*terms)


class Walk:
    """The statements that find batches of one key, built once and reused (SQLAlchemy caches their compiled form)."""

    def __init__(self, key: Key, dialect: sa.Dialect) -> None:
        import sqlalchemy as sa

        self.key, self.dialect, self.sa_dialect = key, dialect.name, dialect
        self.pg = dialect.name == "postgresql"
        # Identifiers in SQL built as text (around the author's SQL) are quoted for the dialect.
        self.quote = dialect.identifier_preparer.quote
        self.table_sql = dialect.identifier_preparer.format_table(key.table)
        cols = key.cols
        types = [c.type for c in cols]
        self.after = [sa.bindparam(f"_rb_after{i}", type_=t) for i, t in enumerate(types)]
        self.upto = [sa.bindparam(f"_rb_upto{i}", type_=t) for i, t in enumerate(types)]
        lo, hi = bind_names(list(key.columns))
        # The batch's bounds, under the names the author's SQL uses for them.
        self.lo = [sa.bindparam(n, type_=t) for n, t in zip(lo, types, strict=True)]
        self.hi = [sa.bindparam(n, type_=t) for n, t in zip(hi, types, strict=True)]
        self._probes = {start: self._probe(from_start=start) for start in (True, False)}
        self._tails = {start: self._tail(from_start=start) for start in (True, False)}
        self.last_key = sa.select(*cols).order_by(*[c.desc() for c in cols]).limit(1)

    # ------------------------------------------------------------ predicates

    def in_batch(self, cols: Sequence[Any] | None = None) -> sa.ColumnElement[bool]:
        """``key BETWEEN lo AND hi`` over ``cols`` (the table's key columns by default)."""
        import sqlalchemy as sa

        cols = list(cols) if cols is not None else self.key.cols
        return sa.and_(compare(">=", cols, self.lo, self.dialect), compare("<=", cols, self.hi, self.dialect))

    def bounds(self, lo: KeyValue | None, hi: KeyValue | None) -> dict[str, Any]:
        """Bind values for ``lo``/``hi``; None binds NULL (an empty range, for trials)."""
        lo_values = lo if lo is not None else (None,) * len(self.lo)
        hi_values = hi if hi is not None else (None,) * len(self.hi)
        return {
            **{p.key: v for p, v in zip(self.lo, lo_values, strict=True)},
            **{p.key: v for p, v in zip(self.hi, hi_values, strict=True)},
        }

    def bounds_of(self, binds: dict[str, Any]) -> tuple[KeyValue, KeyValue]:
        return tuple(binds[p.key] for p in self.lo), tuple(binds[p.key] for p in self.hi)

    # ------------------------------------------------------------ statements

    def _range(self, from_start: bool) -> list[sa.ColumnElement[bool]]:
        cols = self.key.cols
        where = [compare("<=", cols, self.upto, self.dialect)]
        if not from_start:
            where.append(compare(">", cols, self.after, self.dialect))
        return where

    def _probe(self, from_start: bool) -> sa.Select[Any]:
        import sqlalchemy as sa

        cols = self.key.cols
        base = sa.select(*cols).where(*self._range(from_start)).order_by(*cols)
        first = base.limit(1).subquery("_rb_f")
        last = base.offset(sa.bindparam("_rb_skip", type_=sa.Integer)).limit(1).subquery("_rb_l")
        columns = [first.c[c].label(f"_rb_f{i}") for i, c in enumerate(self.key.columns)]
        columns += [last.c[c].label(f"_rb_l{i}") for i, c in enumerate(self.key.columns)]
        joined: Any = first.outerjoin(last, sa.true())
        if self.pg:
            # The batch's SET LOCAL settings ride along with the probe, saving a round trip.
            settings = sa.select(
                sa.func.set_config("lock_timeout", sa.bindparam("_rb_lock"), sa.true()).label("_rb_s1"),
                sa.func.set_config("statement_timeout", sa.bindparam("_rb_stmt"), sa.true()).label("_rb_s2"),
                sa.func.set_config("transaction_read_only", sa.bindparam("_rb_ro"), sa.true()).label("_rb_s3"),
                # No JIT for the batch's statements: the resolve form's plans are costed over
                # jit_above_cost (the UPDATE's range hidden in sub-selects, see resolve.pg_statement;
                # a text key's range misjudged), and compiling them took ~30 ms of every batch.
                sa.func.set_config("jit", "off", sa.true()).label("_rb_s4"),
            ).subquery("_rb_c")
            joined = settings.join(first, sa.true()).outerjoin(last, sa.true())
        return sa.select(*columns).select_from(joined)

    def _tail(self, from_start: bool) -> sa.Select[Any]:
        """The rows left and the last key, for the final batch (fewer than ``size`` rows remain)."""
        import sqlalchemy as sa

        cols = self.key.cols
        where = self._range(from_start)
        last = sa.select(*cols).where(*where).order_by(*[c.desc() for c in cols]).limit(1).subquery("_rb_t")
        count = sa.select(sa.func.count()).select_from(sa.select(*cols).where(*where).subquery()).scalar_subquery()
        return sa.select(count.label("_rb_n"), *[last.c[c] for c in self.key.columns])

    def next_batch(
        self, conn: sa.Connection, after: KeyValue | None, upto: KeyValue, size: int, settings: dict[str, str] | None = None
    ) -> Span | None:
        """The next ``size`` keys after ``after`` up to ``upto``; None when none is left."""
        n = len(self.key.columns)
        binds: dict[str, Any] = {p.key: v for p, v in zip(self.upto, upto, strict=True)}
        if after is not None:
            binds.update({p.key: v for p, v in zip(self.after, after, strict=True)})
        binds["_rb_skip"] = size - 1
        if self.pg:
            binds.update(settings or {"_rb_lock": "0", "_rb_stmt": "0", "_rb_ro": "off"})
        row = conn.execute(self._probes[after is None], binds).first()
        if row is None:
            return None
        lo, hi = tuple(row[:n]), tuple(row[n:])
        # Key columns are never NULL (inspect_key sees to it): a NULL says there is no size-th key.
        if hi[0] is not None:
            return Span(lo, hi, size)
        tail = conn.execute(self._tails[after is None], binds).one()
        return Span(lo, tuple(tail[1:]), int(tail[0]))
