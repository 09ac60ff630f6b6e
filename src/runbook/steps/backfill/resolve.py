"""The ``resolve`` form: the author's SELECT of ``key``, ``value`` and ``candidates``.

Rows are classified (one candidate, several, none) and only the resolved ones
are written, each guarded by ``where`` so a row another writer set meanwhile
is never overwritten. On PostgreSQL the SELECT, the UPDATE and the counting
are one statement per batch (``pg_statement``); on MySQL and MariaDB a
temporary table holds them (``resolve_mysql``); on SQLite the rows are
classified here and written with one executemany.

With a one-column key the SELECT returns it as ``key``; with several, each
under its own name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbook import mysql
from runbook.steps.backfill.failures import BatchFailed
from runbook.steps.backfill.keys import Key, KeyValue
from runbook.steps.backfill.params import BackfillParams
from runbook.steps.backfill.progress import Batch
from runbook.steps.backfill.resolve_mysql import MysqlResolve
from runbook.steps.backfill.walk import Span, Walk

if TYPE_CHECKING:
    import sqlalchemy as sa

# (key, candidates, written) of the rows to report: those not taken (several candidates
# under ``skip``, or none), and those written with several candidates (``first``).
Detail = tuple[KeyValue, int, bool]
# What a batch's statements tell: the rows to report, the rows to do, the rows written, and
# the rows taken but refused by the guard (someone set them after the SELECT, or the SELECT
# disagrees with ``where``: theirs, not ours to count or report).
Outcome = tuple[list[Detail], int, int, int]


class ResolveForm:
    def __init__(self, p: BackfillParams, key: Key, walk: Walk, *, write: bool) -> None:
        import sqlalchemy as sa

        self.p, self.key, self.walk, self.write = p, key, walk, write
        self.first = p.ambiguous == "first"
        self.names = ["key"] if len(key.columns) == 1 else list(key.columns)
        sql = (p.resolve or "").strip().rstrip(";").strip()
        self.user = sa.text(sql).bindparams(*walk.lo, *walk.hi)
        self.mysql: MysqlResolve | None = None
        if walk.pg:
            self.statement = sa.text(pg_statement(p, key, walk, sql, write=write)).bindparams(*walk.lo, *walk.hi)
        elif mysql.is_mysql(walk.dialect):
            self.mysql = MysqlResolve(p, key, walk, sql, write=write)
        else:
            q, t = walk.quote, walk.table_sql
            self.todo_keys = sa.select(*key.cols).where(walk.in_batch()).where(sa.text(f"({p.where})"))
            same_key = " AND ".join(f"{q(c)} = :_rb_k{i}" for i, c in enumerate(key.columns))
            # Untyped binds: the values come straight from the database, as it returned them.
            self.write_one = sa.text(f"UPDATE {t} SET {q(p.set_column or '')} = :_rb_value WHERE {same_key} AND ({p.where})")

    def before_batch(self, conn: sa.Connection) -> None:
        """Outside the batch's transaction, before it begins."""
        if self.mysql is not None:
            self.mysql.before_batch(conn)

    def finish(self, conn: sa.Connection) -> None:
        if self.mysql is not None:
            self.mysql.finish(conn)

    def trial(self, conn: sa.Connection) -> str | None:
        """Run on an empty range (the caller rolls back); a problem with the SQL, or None."""
        result = conn.execute(self.user, self.walk.bounds(None, None))
        columns = set(result.keys()) if result.returns_rows else set()
        result.close()
        missing = [c for c in (*self.names, "value", "candidates") if c not in columns]
        if missing:
            return f"resolve must return the columns {', '.join([*self.names, 'value', 'candidates'])}; missing {', '.join(missing)}"
        if self.walk.pg:
            # Also what PostgreSQL checks before any row: the value's type against the column's.
            conn.execute(self.statement, {**self.walk.bounds(None, None), "_rb_first": self.first}).all()
        if self.mysql is not None:
            self.mysql.create(conn, self.walk.bounds(None, None))
            self.mysql.run(conn, self.walk.bounds(None, None), self.first)
        return None

    def run(self, conn: sa.Connection, span: Span) -> Batch:
        runner = self._run_pg if self.walk.pg else self._run_mysql if self.mysql is not None else self._run_local
        details, todo, written, refused = runner(conn, span)
        batch = Batch(span.lo, span.hi, span.rows, updated=written)
        for key, candidates, was_written in details:
            if candidates > 1:
                batch.ambiguous += 1
                batch.updated_ambiguous += was_written
                batch.flagged.append((key, "ambiguous_first" if was_written else "ambiguous_skipped", candidates))
            else:
                batch.unresolved += 1
                batch.flagged.append((key, "unresolved", candidates))
        batch.skipped_already_set = span.rows - todo + refused
        return batch

    # ------------------------------------------------------------ PostgreSQL

    def _run_pg(self, conn: sa.Connection, span: Span) -> Outcome:
        """The SELECT, the guarded UPDATE and the tally as one statement: the resolved
        values never travel to the client and back, only the rows worth reporting do."""
        bounds = self.walk.bounds(span.lo, span.hi)
        rows = conn.execute(self.statement, {**bounds, "_rb_first": self.first}).all()
        todo, distinct, outside, written, taken = (int(v) for v in rows[0][:5])
        if distinct != todo or outside:
            raise BatchFailed("resolve returned a key twice, NULL or outside the batch", lambda c: self._diagnose(c, bounds))
        n = len(self.key.columns)
        details = [(tuple(r[5 : 5 + n]), int(r[5 + n] or 0), bool(r[6 + n])) for r in rows if r[5] is not None]
        return details, todo, written, taken - written

    def _run_mysql(self, conn: sa.Connection, span: Span) -> Outcome:
        assert self.mysql is not None
        bounds = self.walk.bounds(span.lo, span.hi)
        outcome, keys_ok = self.mysql.run(conn, bounds, self.first)
        if not keys_ok:
            raise BatchFailed("resolve returned a key twice, NULL or outside the batch", lambda c: self._diagnose(c, bounds))
        return outcome

    def _diagnose(self, conn: sa.Connection, bounds: dict[str, Any]) -> str:
        """Which key the resolve SELECT returned twice, NULL or outside the batch."""
        rows = conn.execute(self.user, bounds).all()
        return self._bad_keys([self._key_of(r, list(rows[0]._fields) if rows else []) for r in rows], bounds)

    # ------------------------------------------------------------ elsewhere

    def _run_local(self, conn: sa.Connection, span: Span) -> Outcome:
        """SELECT, classify here, write with one executemany."""
        bounds = self.walk.bounds(span.lo, span.hi)
        result = conn.execute(self.user, bounds)
        columns = list(result.keys())
        at_value, at_candidates = columns.index("value"), columns.index("candidates")
        writes: dict[KeyValue, Any] = {}
        seen: list[tuple[KeyValue, int, bool]] = []
        keys: list[KeyValue] = []
        for row in result:
            key = self._key_of(row, columns)
            keys.append(key)
            value, candidates = row[at_value], int(row[at_candidates] or 0)
            take = value is not None and (candidates == 1 or (candidates > 1 and self.first))
            if take:
                self._check_type(key, value)
                writes[key] = value
            seen.append((key, candidates, take))
        if not all(_within(span, k) for k in keys) or len(set(keys)) != len(keys):
            raise BatchFailed(self._bad_keys(keys, bounds))
        written = self._write_local(conn, bounds, writes) if self.write else set(writes)
        details = [(key, c, key in written) for key, c, take in seen if not take or (c > 1 and key in written)]
        refused = sum(1 for key, _, take in seen if take and key not in written)
        return details, len(seen), len(written), refused

    def _write_local(self, conn: sa.Connection, bounds: dict[str, Any], writes: dict[KeyValue, Any]) -> set[KeyValue]:
        if not writes:
            return set()
        # The batch holds SQLite's write lock since BEGIN IMMEDIATE, so the rows matching
        # ``where`` now are exactly the ones the guarded UPDATE will write.
        todo = {tuple(row) for row in conn.execute(self.todo_keys, bounds)}
        chosen = [k for k in writes if k in todo]
        if chosen:
            conn.execute(
                self.write_one,
                [{"_rb_value": writes[k], **{f"_rb_k{i}": v for i, v in enumerate(k)}} for k in chosen],
            )
        return set(chosen)

    def _check_type(self, key: KeyValue, value: Any) -> None:
        """SQLite stores any value in any column; a value the column's type cannot hold is the
        resolve SELECT's mistake, refused here as PostgreSQL refuses it."""
        expected = self.key.set_type
        accepted: dict[type, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float)}
        if expected in accepted and not isinstance(value, accepted[expected]):
            raise BatchFailed(
                f"resolve returned {type(value).__name__} {value!r} for {self.key.show(key)}, but {self.p.target}"
                f" holds {expected.__name__} values"
            )

    # ------------------------------------------------------------ shared

    def _key_of(self, row: Any, columns: list[str]) -> KeyValue:
        return tuple(row[columns.index(name)] for name in self.names)

    def _bad_keys(self, keys: list[KeyValue], bounds: dict[str, Any]) -> str:
        what = self.key.text()
        seen: set[KeyValue] = set()
        for key in keys:
            if any(v is None for v in key):
                return f"resolve returned a NULL {what}: it must return the key of each row it resolves"
            if key in seen:
                return f"resolve returned {what} {self.key.show(key)} twice: it must return each row at most once"
            seen.add(key)
        lo, hi = self.walk.bounds_of(bounds)
        return (
            f"resolve returned {what} outside the batch {self.key.show(lo)}..{self.key.show(hi)}:"
            " it must filter on the batch's bounds (:lo and :hi)"
        )


def _within(span: Span, key: KeyValue) -> bool:
    try:
        return span.lo <= key <= span.hi
    except TypeError:
        return False


def pg_statement(p: BackfillParams, key: Key, walk: Walk, sql: str, *, write: bool) -> str:
    """PostgreSQL: the resolve SELECT, the guarded UPDATE and the tally as one statement.

    One row of counts always comes back (todo, distinct keys, keys outside the
    batch, written, taken), joined to the rows to report: those not taken, and
    those written with several candidates (which the UPDATE returns). The
    resolved values never travel to the client and back. ``_rb_take`` must say
    what ``ResolveForm._run_local`` says.

    Cheap and safe per row, since the author's SELECT is most of the cost:
    distinct keys are counted by hashing (``count(DISTINCT ...)`` sorts, and
    sorting text keys under a libc collation calls strcoll every comparison);
    nothing is joined but the UPDATE to the resolved rows. That join's bounds
    are sub-selects, which the planner cannot see into: it estimates the range
    as a fixed share of the table. With the values themselves it would
    estimate a range of text or UUID keys (long shared prefixes) at one row,
    nest a loop over the resolved rows inside a loop over the batch, and take
    seconds per batch.
    """
    q, t = walk.quote, walk.table_sql
    n = len(key.columns)
    source = ['"key"'] if n == 1 else [q(c) for c in key.columns]
    rk = [f"_rb_k{i}" for i in range(n)]
    lo, hi = [b.key for b in walk.lo], [b.key for b in walk.hi]

    def row(cols: list[str]) -> str:
        return cols[0] if n == 1 else f"({', '.join(cols)})"

    def in_batch(cols: list[str], bounds: list[list[str]]) -> str:
        return f"{row(cols)} >= {row(bounds[0])} AND {row(cols)} <= {row(bounds[1])}"

    binds = [[f":{b}" for b in lo], [f":{b}" for b in hi]]
    hidden = [[f"(SELECT :{b})" for b in lo], [f"(SELECT :{b})" for b in hi]]
    picked = ", ".join(rk)
    if write:
        table_keys = [f"{t}.{q(c)}" for c in key.columns]
        change = (
            f"UPDATE {t} SET {q(p.set_column or '')} = _rb_r._rb_value FROM _rb_r"
            f" WHERE {' AND '.join(f'{tk} = _rb_r.{k}' for tk, k in zip(table_keys, rk, strict=True))}"
            # The range keeps the planner on the key's index; hidden, as said above.
            f" AND _rb_r._rb_take AND {in_batch(table_keys, hidden)} AND ({p.where})"
            f" RETURNING {', '.join(f'{tk} AS {k}' for tk, k in zip(table_keys, rk, strict=True))},"
            " _rb_r._rb_candidates AS _rb_candidates"
        )
        ctes = f", _rb_w AS ({change})"
        written = "(SELECT count(*) FROM _rb_w)"
        details = (
            f"SELECT {picked}, _rb_candidates, false AS _rb_written FROM _rb_r WHERE NOT _rb_take"
            f" UNION ALL SELECT {picked}, _rb_candidates, true FROM _rb_w WHERE _rb_candidates > 1"
        )
    else:
        ctes = ""
        written = "count(*) FILTER (WHERE _rb_take)"
        details = f"SELECT {picked}, _rb_candidates, _rb_take FROM _rb_r WHERE NOT _rb_take OR _rb_candidates > 1"
    keys = ", ".join(f"{s} AS {k}" for s, k in zip(source, rk, strict=True))
    return (
        f"WITH _rb_q AS ({sql}),"
        f" _rb_r AS MATERIALIZED (SELECT {keys}, \"value\" AS _rb_value, candidates AS _rb_candidates,"
        '  ("value" IS NOT NULL AND (candidates = 1 OR (candidates > 1 AND :_rb_first))) AS _rb_take FROM _rb_q)'
        f"{ctes}"
        " SELECT n.*, d.* FROM"
        f" (SELECT count(*) AS todo, (SELECT count(*) FROM (SELECT DISTINCT {picked} FROM _rb_r) _rb_d) AS keys,"
        f"  count(*) FILTER (WHERE NOT ({in_batch(rk, binds)})) AS outside,"
        f"  {written} AS written, count(*) FILTER (WHERE _rb_take) AS taken FROM _rb_r) n"
        f" LEFT JOIN ({details}) d ON true"
    )
