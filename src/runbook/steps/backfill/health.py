"""Health-aware throttling: wait while the database is unwell instead of hurting it.

As GitLab's batched background migrations do, the backfill evaluates its
``pause_when`` checks before the first batch and then every ``health_every``
(seconds or batches). While any holds, it waits between batches, with no
transaction open: it re-checks after 1 s, then 2, 4, 8, 16 and every 30 s
(``BACKOFF_FIRST_S`` doubling to ``BACKOFF_MAX_S``), says when and why it
waits, and goes on by itself once every check is clear. A wait longer than
``max_pause`` fails the step, which a resume continues after the last
committed batch. After a pause the batch size is halved: the adaptive sizing
grows it back as batches prove fast again.

Built in, on PostgreSQL, MySQL and MariaDB (on SQLite, which has neither
replicas nor a view of other sessions, they are reported once as not
applicable):

- ``replication_lag``: on a primary, the largest ``replay_lag`` in
  ``pg_stat_replication``; on a standby, the time since the last transaction
  it replayed.
- ``transactions_older_than``: a transaction open longer than the limit that
  holds a lock on the backfilled table (another session's; a plain SELECT
  holds one until it ends), which keeps vacuum from cleaning up behind the
  backfill's updates.

On MySQL and MariaDB a primary does not know its replicas' lag: there
``replication_lag`` reads ``SHOW REPLICA STATUS`` on the check's connection
(give it a replica's), and pauses while a replication channel is stopped; on
a server that is no replica it is noted once and ignored. Long transactions
come from ``information_schema.INNODB_TRX`` (as ``no_long_transactions``),
any of this database's sessions: InnoDB does not say which tables a
transaction has read.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runbook import mysql
from runbook.connections import describe_db_error
from runbook.expect import parse_expectation
from runbook.model import format_duration
from runbook.steps.backfill.params import BackfillParams, PauseCheck

if TYPE_CHECKING:
    import sqlalchemy as sa

    from runbook.steps.base import StepContext

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
# While waiting, a "still waiting" line at most this often (or when the reason changes).
WAIT_LINE_EVERY_S = 10.0

_REPLICATION_LAG = """
SELECT CASE WHEN pg_is_in_recovery()
            THEN EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())
            ELSE (SELECT max(EXTRACT(EPOCH FROM replay_lag)) FROM pg_stat_replication) END
"""
_OLD_TRANSACTION = """
SELECT a.pid, EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start) AS age, a.state
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = to_regclass(:table)
   AND l.pid <> pg_backend_pid()
   AND EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start) > :secs
 ORDER BY a.xact_start
 LIMIT 1
"""


class HealthFailed(Exception):
    """A pause_when check could not be evaluated, or the database stayed unwell past max_pause."""


class Health:
    def __init__(self, p: BackfillParams, ctx: StepContext, conn: sa.Connection, table_sql: str) -> None:
        self.p, self.ctx, self.conn, self.table_sql = p, ctx, conn, table_sql
        self.checks = list(p.pause_when)
        self.last_at = time.monotonic()
        self.last_batches = 0
        self.noted: set[str] = set()
        self.checked = False

    def due(self, batches: int) -> bool:
        """Time to evaluate the checks: before the first batch, then every ``health_every``."""
        if not self.checks:
            return False
        if not self.checked:
            return True
        every = self.p.health_every
        if every.batches is not None:
            return batches - self.last_batches >= every.batches
        return time.monotonic() - self.last_at >= (every.seconds or 0.0)

    def wait_until_healthy(self, batches: int, stop: Callable[[], bool], waiting: Callable[[str], None]) -> float:
        """Returns the seconds waited (0 when healthy at once); raises ``HealthFailed``.
        Returns early, unhealthy, when ``stop()`` says the step must end."""
        self.last_batches, self.checked = batches, True
        found = self.unhealthy()
        self.last_at = time.monotonic()
        if found is None:
            return 0.0
        label, reason = found
        started = last_line = time.monotonic()
        delay = min(BACKOFF_FIRST_S, self.p.max_pause)
        self.ctx.output(f"pausing after batch {batches}: {reason}; re-checking in {format_duration(delay)}")
        waiting(reason)
        while True:
            if not self._sleep(delay, stop):
                return time.monotonic() - started
            found = self.unhealthy()
            waited = time.monotonic() - started
            self.last_at = time.monotonic()
            if found is None:
                self.ctx.output(f"resuming after a pause of {format_duration(round(waited, 1))}: every pause_when check is clear")
                return waited
            if waited >= self.p.max_pause:
                raise HealthFailed(
                    f"paused {format_duration(round(waited))} (max_pause {format_duration(self.p.max_pause)}) and still {found[1]}"
                )
            delay = min(delay * 2, BACKOFF_MAX_S, max(self.p.max_pause - waited, 0.05))
            # A line when another check holds now, else every WAIT_LINE_EVERY_S: the ages in the text change at each look.
            if found[0] != label or time.monotonic() - last_line >= WAIT_LINE_EVERY_S:
                label, last_line = found[0], time.monotonic()
                self.ctx.output(f"still pausing ({format_duration(round(waited))}): {found[1]}")
                waiting(found[1])

    def _sleep(self, seconds: float, stop: Callable[[], bool]) -> bool:
        """Sleep, waking early for a stop request; False when the step must end."""
        deadline = time.monotonic() + seconds
        supervisor = self.ctx.supervisor
        wake = supervisor.wake_fd if supervisor is not None else None
        while not stop() and (left := deadline - time.monotonic()) > 0:
            if wake is not None:
                select.select([wake], [], [], min(left, 1.0))
            else:
                time.sleep(min(left, 0.05))
        return not stop()

    # ------------------------------------------------------------ checks

    def unhealthy(self) -> tuple[str, str] | None:
        """The check that holds now and why the backfill must wait, or None."""
        for check in self.checks:
            reason = self._evaluate(check)
            if reason is not None:
                return check.label, reason
        return None

    def _evaluate(self, check: PauseCheck) -> str | None:
        import sqlalchemy as sa

        try:
            if check.connection is None or check.connection == self.p.connection:
                return self._on(self.conn, check)
            with self.ctx.connections.engine(check.connection).connect() as conn:
                return self._on(conn, check)
        except sa.exc.SQLAlchemyError as err:
            raise HealthFailed(
                f"pause_when check {check.label!r} could not be evaluated: {describe_db_error(err, self.ctx.masker)}"
            ) from err

    def _on(self, conn: sa.Connection, check: PauseCheck) -> str | None:
        import sqlalchemy as sa

        dialect = conn.dialect.name
        try:
            if check.sql is not None:
                value = conn.execute(sa.text(check.sql)).scalar()
                expectation = parse_expectation(check.is_)
                return f"{check.label} is {_shown(value)} ({expectation})" if expectation.holds(value) else None
            if mysql.is_mysql(dialect):
                return self._on_mysql(conn, check)
            if dialect != "postgresql":
                if check.label not in self.noted:
                    self.noted.add(check.label)
                    self.ctx.output(f"pause_when: {check.label} is not applicable on {dialect}; ignored")
                return None
            if check.replication_lag is not None:
                lag = conn.execute(sa.text(_REPLICATION_LAG)).scalar()
                if lag is not None and float(lag) > check.replication_lag:
                    return f"{check.label} {_seconds(lag)} over {format_duration(check.replication_lag)}"
                return None
            row = conn.execute(
                sa.text(_OLD_TRANSACTION), {"table": self.table_sql, "secs": check.transactions_older_than}
            ).first()
            if row is None:
                return None
            limit = format_duration(check.transactions_older_than or 0.0)
            return f"{check.label}: pid {row.pid} ({row.state}) open {_seconds(row.age)} on {self.p.table}, over {limit}"
        finally:
            conn.rollback()


    def _on_mysql(self, conn: sa.Connection, check: PauseCheck) -> str | None:
        import sqlalchemy as sa

        # Here, not at the top: the check module's imports cost 15 ms of every backfill's start elsewhere.
        from runbook.checks.transactions import MYSQL_LONG_TRANSACTIONS

        if check.replication_lag is not None:
            lag = _mysql_replica_lag(conn)
            if lag is _NOT_A_REPLICA:
                if check.label not in self.noted:
                    self.noted.add(check.label)
                    self.ctx.output(
                        f"pause_when: {check.label}: this server is not a replica (give the check a replica's connection); ignored"
                    )
                return None
            if lag is None:
                return f"{check.label} unknown: replication is stopped on the replica"
            if float(lag) > check.replication_lag:
                return f"{check.label} {_seconds(lag)} over {format_duration(check.replication_lag)}"
            return None
        row = conn.execute(sa.text(MYSQL_LONG_TRANSACTIONS), {"secs": check.transactions_older_than}).first()
        if row is None:
            return None
        limit = format_duration(check.transactions_older_than or 0.0)
        # InnoDB does not say which tables a transaction has read: any in this database counts.
        return f"{check.label}: thread {row.pid} ({row.state}) open {_seconds(row.age)} in this database, over {limit}"


_NOT_A_REPLICA = object()


def _mysql_replica_lag(conn: sa.Connection) -> Any:
    """``Seconds_Behind_Master`` (``_Source`` on MySQL 8.0.22+), the largest over the replication
    channels; None when one is stopped (its lag unknown and growing); ``_NOT_A_REPLICA`` without any."""
    import sqlalchemy as sa

    try:
        result = conn.exec_driver_sql("SHOW REPLICA STATUS")
    except sa.exc.ProgrammingError:
        # Before MySQL 8.0.22 and MariaDB 10.5.1.
        conn.rollback()
        result = conn.exec_driver_sql("SHOW SLAVE STATUS")
    rows = [dict(r._mapping) for r in result]
    if not rows:
        return _NOT_A_REPLICA
    lags = [r.get("Seconds_Behind_Source", r.get("Seconds_Behind_Master")) for r in rows]
    known = [float(lag) for lag in lags if lag is not None]
    return max(known) if len(known) == len(lags) else None


def _seconds(value: Any) -> str:
    return format_duration(round(float(value), 1))


def _shown(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)
