"""``check: no_long_transactions`` - nothing old holds locks on the tables a
migration is about to alter.

A DDL statement waits behind any open transaction that touched its table (even
a plain SELECT holds a lock until commit), and every later query on the table
queues behind the DDL: one forgotten ``idle in transaction`` session turns a
one-second ALTER into an outage. SQLite has no such sessions to inspect, so
there the check is reported as not applicable.

PostgreSQL: ``pg_stat_activity``, and ``pg_locks`` for the tables each holds.
MySQL and MariaDB: ``information_schema.INNODB_TRX`` with ``PROCESSLIST``
(reading other sessions needs the PROCESS privilege). A plain SELECT there
takes no row lock, only a metadata lock, which information_schema does not
show: with ``tables``, every long transaction of a session using this
database counts, since any of them may hold such a lock on one of the tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from runbook import mysql
from runbook.checks.base import CheckContext, CheckResult
from runbook.checks.schema import TableName, quote_table, reading, split_table
from runbook.model import Duration, format_duration

QUERY_EXCERPT = 100

# Other client sessions of this database whose transaction is older than
# :secs; with :names, only those holding a lock on one of those tables.
_LONG_TRANSACTIONS = """
SELECT a.pid,
       EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start) AS age,
       a.state,
       a.query,
       ARRAY(SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE l.pid = a.pid AND l.database = d.oid
               AND l.relation IN (SELECT to_regclass(x) FROM unnest(CAST(:names AS text[])) AS x)) AS locked
FROM pg_stat_activity a
JOIN pg_database d ON d.datname = current_database()
WHERE a.datid = d.oid
  AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start) > :secs
ORDER BY a.xact_start
"""

# Transactions older than :secs of other sessions whose database is this one.
MYSQL_LONG_TRANSACTIONS = """
SELECT t.trx_mysql_thread_id AS pid,
       TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1000000 AS age,
       CASE WHEN p.COMMAND = 'Sleep' THEN 'idle in transaction' ELSE LOWER(t.trx_state) END AS state,
       COALESCE(t.trx_query, p.INFO) AS query
FROM information_schema.INNODB_TRX t
JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
WHERE t.trx_mysql_thread_id <> CONNECTION_ID()
  AND p.DB = DATABASE()
  AND TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) > :secs * 1000000
ORDER BY t.trx_started
"""
# ER_SPECIFIC_ACCESS_DENIED_ERROR: INNODB_TRX needs the PROCESS privilege.
_NEEDS_PROCESS_PRIVILEGE = 1227

if TYPE_CHECKING:
    import sqlalchemy as sa


class NoLongTransactionsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str
    # Empty: any transaction older than older_than counts.
    tables: list[TableName] = []
    older_than: Duration


def _expected(params: NoLongTransactionsParams) -> str:
    text = f"no transaction open longer than {format_duration(params.older_than)}"
    return text + (f" holding locks on {', '.join(params.tables)}" if params.tables else "")


def _excerpt(query: str) -> str:
    """The start of ``query`` on one line. Give it masked text: a secret cut here escapes masking."""
    flat = " ".join(query.split())
    return flat if len(flat) <= QUERY_EXCERPT else flat[:QUERY_EXCERPT] + "…"


class NoLongTransactionsCheck:
    name: ClassVar[str] = "no_long_transactions"
    Params: ClassVar[type[BaseModel]] = NoLongTransactionsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: NoLongTransactionsParams) -> str:
        return f"[{params.connection}] {_expected(params)}"

    def evaluate(self, params: NoLongTransactionsParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        expected = _expected(params)
        dialect = ctx.connections.dialect(params.connection)
        if dialect != "postgresql" and not mysql.is_mysql(dialect):
            return CheckResult(True, dialect, expected, f"not applicable on {dialect}", applicable=False)
        with reading(ctx, params.connection) as conn:
            inspector = sa.inspect(conn)
            missing = [t for t in params.tables if not inspector.has_table(split_table(t)[1], schema=split_table(t)[0])]
            if missing:
                return CheckResult(False, "no such table", expected, f"table {', '.join(missing)} does not exist")
            try:
                rows = _pg_rows(conn, params) if dialect == "postgresql" else _mysql_rows(conn, params)
            except sa.exc.DBAPIError as err:
                if getattr(err.orig, "args", (None,))[0] == _NEEDS_PROCESS_PRIVILEGE:
                    return CheckResult.errored(
                        "the connection's user cannot see other sessions' transactions: it needs the PROCESS privilege"
                    )
                raise
        if not rows:
            return CheckResult(True, "none", expected)
        first = rows[0]
        observed = f"pid {first['pid']} open {_age(first['age'])}" + (f" (+{len(rows) - 1} more)" if len(rows) > 1 else "")
        detail = "; ".join(
            f"pid {r['pid']} ({r['state']}, open {_age(r['age'])}"
            + (f", locks {', '.join(r['locked'])}" if r["locked"] else "")
            + f"): {_excerpt(ctx.masker.mask(r['query'] or ''))}"
            for r in rows
        )
        return CheckResult(False, observed, expected, ctx.masker.mask(detail))


def _pg_rows(conn: sa.Connection, params: NoLongTransactionsParams) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    # Quoted, so to_regclass resolves exactly the named table.
    names = [quote_table(conn, t) for t in params.tables]
    rows = [dict(r._mapping) for r in conn.execute(sa.text(_LONG_TRANSACTIONS), {"names": names, "secs": params.older_than})]
    return [r for r in rows if r["locked"]] if params.tables else rows


def _mysql_rows(conn: sa.Connection, params: NoLongTransactionsParams) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    rows = conn.execute(sa.text(MYSQL_LONG_TRANSACTIONS), {"secs": params.older_than})
    return [{**r._mapping, "locked": None, "query": r.query or "(between statements)"} for r in rows]


def _age(seconds: float) -> str:
    return format_duration(round(float(seconds), 1))


KIND = NoLongTransactionsCheck()
