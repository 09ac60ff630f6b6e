"""One active run per (runbook, env), across processes and machines.

A lock is a row of the ``locks`` table keyed by (runbook, env); the primary
key plus a write transaction (BEGIN IMMEDIATE on SQLite, SELECT ... FOR
UPDATE on PostgreSQL) makes acquisition race-free. A holder that died
without releasing is detected and taken over:

* same host: its pid is gone, is a zombie, or now belongs to a different
  process (the start time in /proc/<pid>/stat differs from the recorded one);
* other host: it has not heartbeaten for ``LOCK_STALE_AFTER`` seconds. This
  compares the taker's clock with the holder's, so hosts sharing a store are
  assumed to keep their clocks in sync (NTP) to well within that margin.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.errors import LockHeld, RunbookError, StateStoreError
from runbook.state.schema import locks

# A remote holder silent this long is presumed dead. Twelve missed beats at the
# default 10 s interval: long enough to ride out a GC pause or a slow store.
LOCK_STALE_AFTER = 120.0


@dataclass(frozen=True, slots=True)
class LockRecord:
    """The current holder of a (runbook, env) lock."""

    runbook: str
    env: str
    run_id: str
    actor: str
    host: str
    pid: int
    pid_started: int | None
    acquired_at: datetime
    heartbeat_at: datetime

    def describe(self) -> str:
        return (
            f"run {self.run_id} ({self.actor}, pid {self.pid} on {self.host}, "
            f"since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"
        )

    def as_detail(self) -> dict[str, object]:
        """The holder as JSON-ready event detail."""
        return {
            "run_id": self.run_id,
            "actor": self.actor,
            "host": self.host,
            "pid": self.pid,
            "acquired_at": self.acquired_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
        }


_COLUMNS = (
    locks.c.runbook,
    locks.c.env,
    locks.c.run_id,
    locks.c.actor,
    locks.c.host,
    locks.c.pid,
    locks.c.pid_started,
    locks.c.acquired_at,
    locks.c.heartbeat_at,
)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None without /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and parentheses; fields after
        # its closing parenthesis are fixed: state is field 3, starttime field 22.
        fields = raw[raw.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When the process started (ticks since boot), if the platform tells."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _process_gone(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, ticks = stat
    return state == "Z" or (started is not None and ticks != started)


def stale_reason(holder: LockRecord, *, host: str, now: datetime) -> str | None:
    """Why ``holder`` may be taken over, or None while it is presumed alive."""
    if holder.host == host:
        if _process_gone(holder.pid, holder.pid_started):
            return f"process {holder.pid} on {holder.host} is gone"
        return None
    silent = (now - holder.heartbeat_at).total_seconds()
    if silent > LOCK_STALE_AFTER:
        return f"no heartbeat from {holder.host} for {silent:.0f} s"
    return None


def read(conn: Connection, runbook: str, env: str, *, for_update: bool = False) -> LockRecord | None:
    query = sa.select(*_COLUMNS).where(locks.c.runbook == runbook, locks.c.env == env)
    if for_update:
        query = query.with_for_update()  # ignored by SQLite, whose BEGIN IMMEDIATE already excludes writers
    row = conn.execute(query).first()
    return None if row is None else LockRecord(*row)


def acquire(
    conn: Connection,
    *,
    runbook: str,
    env: str,
    run_id: str,
    actor: str,
    host: str,
    now: datetime,
) -> tuple[LockRecord | None, str | None]:
    """Take the lock inside the caller's write transaction.

    Returns the previous holder and why it was taken over, or (None, None)
    when the lock was free or already ours. Raises LockHeld when a live run
    holds it. On PostgreSQL two inserts into a free lock race; the loser gets
    an IntegrityError and must retry in a new transaction.
    """
    pid = os.getpid()
    mine = {
        "run_id": run_id,
        "actor": actor,
        "host": host,
        "pid": pid,
        "pid_started": process_start_ticks(pid),
        "acquired_at": now,
        "heartbeat_at": now,
    }
    holder = read(conn, runbook, env, for_update=True)
    if holder is None:
        conn.execute(sa.insert(locks).values(runbook=runbook, env=env, **mine))
        return None, None
    if holder.run_id == run_id and holder.host == host and holder.pid == pid:
        conn.execute(_where(runbook, env, run_id).values(heartbeat_at=now))
        return None, None
    reason = stale_reason(holder, host=host, now=now)
    if reason is None:
        raise LockHeld(
            f"{runbook} in {env} is locked by {holder.describe()}",
            hint="wait for that run to finish; if it is truly dead, force-unlock it (the break is audited)",
        )
    conn.execute(_where(runbook, env, holder.run_id).values(**mine))
    return holder, reason


def heartbeat(conn: Connection, *, runbook: str, env: str, run_id: str, now: datetime) -> None:
    if conn.execute(_where(runbook, env, run_id).values(heartbeat_at=now)).rowcount == 0:
        raise LockHeld(f"run {run_id} no longer holds the lock on {runbook} in {env}: it was broken or taken over")


def release(conn: Connection, *, runbook: str, env: str, run_id: str) -> None:
    conn.execute(sa.delete(locks).where(locks.c.runbook == runbook, locks.c.env == env, locks.c.run_id == run_id))


def remove(conn: Connection, *, runbook: str, env: str) -> LockRecord | None:
    """Delete the lock whoever holds it; returns who did."""
    holder = read(conn, runbook, env, for_update=True)
    if holder is not None:
        conn.execute(sa.delete(locks).where(locks.c.runbook == runbook, locks.c.env == env))
    return holder


def _where(runbook: str, env: str, run_id: str) -> sa.Update:
    return sa.update(locks).where(locks.c.runbook == runbook, locks.c.env == env, locks.c.run_id == run_id)


class Heartbeat:
    """Refreshes a lock from a daemon thread until stopped.

    Transient store errors are kept in ``error`` and retried at the next
    beat; losing the lock (broken or taken over) stops the thread and leaves
    the LockHeld in ``error`` for the engine to act on.
    """

    def __init__(self, beat: Callable[[], None], interval: float, *, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()
        self.error: RunbookError | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    @property
    def lost(self) -> bool:
        return isinstance(self.error, LockHeld)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except LockHeld as err:
                self.error = err
                return
            except StateStoreError as err:
                self.error = err
            else:
                self.error = None

    def stop(self) -> None:
        self._stopped.set()
        # Only an in-flight beat delays the join; a hung store must not hang shutdown.
        self._thread.join(timeout=5.0)
