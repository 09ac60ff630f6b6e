"""One active run per (runbook, env), across processes and machines.

A lock is a row of the ``locks`` table keyed by (runbook, env); the primary
key plus a write transaction (BEGIN IMMEDIATE on SQLite, SELECT ... FOR
UPDATE on PostgreSQL) makes acquisition race-free. A holder that died
without releasing is detected and taken over:

* same host: its pid is gone, is a zombie, or now belongs to a different
  process (the start time in /proc/<pid>/stat differs from the recorded one);
* other host: it has not heartbeaten for ``LOCK_STALE_AFTER`` seconds. Both
  the heartbeat and the "now" it is compared with are the store's clock
  (PostgreSQL's ``now()``, see clock.py), never a client's: hosts whose clocks
  disagree still agree on how long a holder has been silent.

Each acquisition writes a fresh random owner token into the row and hands it
back in a ``LockHandle``. Heartbeat, release and the ownership check match
the row by that token, never by run id alone: a ``--resume`` of the same run
by another process (after ``unlock --force``) holds the same run id, and the
old holder must neither refresh nor delete the new holder's row.
"""

from __future__ import annotations

import os
import secrets
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runbook.errors import LockHeld, RunbookError, StateStoreError
from runbook.state.clock import database_now, now_expression
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
    # None only in a row written before owner tokens existed (schema version 1).
    owner_token: str | None

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


# Selected in dataclass field order so rows map positionally.
_COLUMNS = tuple(locks.c[name] for name in LockRecord.__dataclass_fields__)


# Run before every step and every attempt: built once (building a statement costs
# about as much as running it on SQLite).
_OWNER_TOKEN = (
    sa.select(locks.c.owner_token)
    .where(locks.c.runbook == sa.bindparam("runbook"), locks.c.env == sa.bindparam("env"))
    .with_for_update(read=True)
)


@dataclass(slots=True)
class LockHandle:
    """One acquisition of a lock: what heartbeat, release and the ownership check need.

    ``previous`` is the dead holder taken over (and ``reason`` why), None when
    the lock was free or already ours. ``lost`` is set once the store showed the
    row no longer carries ``token``: the lock was broken or taken over.
    """

    runbook: str
    env: str
    run_id: str
    token: str
    previous: LockRecord | None = None
    reason: str | None = None
    lost: LockHeld | None = None

    def lose(self) -> LockHeld:
        """Record (once) and return the error that says this lock is gone."""
        if self.lost is None:
            self.lost = LockHeld(
                f"run {self.run_id} no longer holds the lock on {self.runbook} in {self.env}: it was broken or taken over",
                hint="another process may be running this runbook now; see `runbook status` before doing anything",
            )
        return self.lost


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


def process_gone(pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` (started at ``started`` ticks, if known) on this host has ended."""
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
    """Why ``holder`` may be taken over, or None while it is presumed alive.

    ``now`` must be the store's clock (``clock.database_now``), the clock its heartbeats were stamped with.
    """
    if holder.host == host:
        if process_gone(holder.pid, holder.pid_started):
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
) -> LockHandle:
    """Take the lock inside the caller's write transaction.

    The handle names the previous holder and why it was taken over, if one
    was. Raises LockHeld when a live run holds it. On PostgreSQL two inserts
    into a free lock race; the loser gets an IntegrityError and must retry in
    a new transaction.
    """
    pid = os.getpid()
    started = process_start_ticks(pid)
    holder = read(conn, runbook, env, for_update=True)
    now = now_expression(conn)
    if (
        holder is not None
        and holder.owner_token is not None
        and (holder.run_id, holder.host, holder.pid, holder.pid_started) == (run_id, host, pid, started)
    ):
        # Re-entrant: this very process holds it for this run already.
        conn.execute(_owned(runbook, env, holder.owner_token).values(heartbeat_at=now))
        return LockHandle(runbook, env, run_id, holder.owner_token)
    token = secrets.token_hex(16)
    mine = {
        "run_id": run_id,
        "actor": actor,
        "host": host,
        "pid": pid,
        "pid_started": started,
        "acquired_at": now,
        "heartbeat_at": now,
        "owner_token": token,
    }
    handle = LockHandle(runbook, env, run_id, token)
    if holder is None:
        conn.execute(sa.insert(locks).values(runbook=runbook, env=env, **mine))
        return handle
    reason = stale_reason(holder, host=host, now=database_now(conn))
    if reason is None:
        raise LockHeld(
            f"{runbook} in {env} is locked by {holder.describe()}",
            hint=(
                "wait for that run to finish (or wait for its lock: --lock-timeout 5m); if it is truly dead, "
                f"break its lock (audited): runbook unlock {shlex.quote(runbook)} --env {shlex.quote(env)} --force"
            ),
        )
    # The row is locked (FOR UPDATE / BEGIN IMMEDIATE); matching the old token too keeps this a compare-and-swap.
    conn.execute(_owned(runbook, env, holder.owner_token).values(**mine))
    handle.previous, handle.reason = holder, reason
    return handle


def heartbeat(conn: Connection, handle: LockHandle) -> None:
    """Refresh the lock (stamped with the store's clock); raises LockHeld (and marks the handle lost) if it is no longer ours."""
    if handle.lost is not None:
        raise handle.lost
    stamp = now_expression(conn)
    if conn.execute(_owned(handle.runbook, handle.env, handle.token).values(heartbeat_at=stamp)).rowcount == 0:
        raise handle.lose()


def confirm(conn: Connection, handle: LockHandle) -> None:
    """Raise LockHeld (and mark the handle lost) unless the row still carries our token.

    One primary-key read: cheap enough before every step and every attempt.
    On PostgreSQL it takes a share lock on the row (FOR SHARE), so a takeover
    cannot commit between this check and the caller's next write in the same
    transaction; on SQLite the caller's BEGIN IMMEDIATE already excludes it.
    """
    if handle.lost is not None:
        raise handle.lost
    token = conn.execute(_OWNER_TOKEN, {"runbook": handle.runbook, "env": handle.env}).scalar_one_or_none()
    if token != handle.token:
        raise handle.lose()


def resumed_elsewhere(conn: Connection, handle: LockHandle) -> bool:
    """Whether another process now holds the lock for the handle's own run (a ``--resume``
    after the lock was broken): the run is that process's to record from then on."""
    try:
        confirm(conn, handle)
    except LockHeld:
        holder = read(conn, handle.runbook, handle.env)
        return holder is not None and holder.run_id == handle.run_id
    return False


def release(conn: Connection, handle: LockHandle) -> bool:
    """Delete the lock if it is still ours; otherwise change nothing, mark the handle lost and return False."""
    deleted = conn.execute(
        sa.delete(locks).where(
            locks.c.runbook == handle.runbook, locks.c.env == handle.env, locks.c.owner_token == handle.token
        )
    ).rowcount
    if deleted == 0:
        handle.lose()
    return bool(deleted)


def remove(conn: Connection, *, runbook: str, env: str) -> LockRecord | None:
    """Delete the lock whoever holds it; returns who did."""
    holder = read(conn, runbook, env, for_update=True)
    if holder is not None:
        conn.execute(sa.delete(locks).where(locks.c.runbook == runbook, locks.c.env == env))
    return holder


def _owned(runbook: str, env: str, token: str | None) -> sa.Update:
    # IS NOT DISTINCT FROM: a row from before owner tokens has NULL, and "= NULL" matches nothing.
    return sa.update(locks).where(
        locks.c.runbook == runbook, locks.c.env == env, locks.c.owner_token.is_not_distinct_from(token)
    )


class Heartbeat:
    """Refreshes a lock from a daemon thread until stopped.

    Transient store errors are kept in ``error`` and retried at the next
    beat; losing the lock (broken or taken over) stops the thread and leaves
    the LockHeld in ``error`` for the engine to act on. The thread only
    notices every ``interval`` seconds; ``check()`` asks the store at once.
    """

    def __init__(
        self, beat: Callable[[], None], interval: float, *, name: str, confirm: Callable[[], None] | None = None,
        poll: Callable[[], None] | None = None, poll_interval: float = 1.0,
    ) -> None:  # fmt: skip
        self._beat = beat
        self._confirm = confirm
        self._interval = interval
        # Between beats, every ``poll_interval``: the run's control requests (engine/control.py).
        self._poll = poll
        self._poll_interval = poll_interval
        self._stopped = threading.Event()
        self.error: RunbookError | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    @property
    def lost(self) -> bool:
        return isinstance(self.error, LockHeld)

    def check(self) -> None:
        """Raise LockHeld now if the lock is no longer ours: a store read, not the last beat's news."""
        if self.lost:
            assert self.error is not None
            raise self.error
        if self._confirm is None:
            return
        try:
            self._confirm()
        except LockHeld as err:
            self.error = err
            self._stopped.set()
            raise

    def _run(self) -> None:
        tick = self._interval if self._poll is None else min(self._poll_interval, self._interval)
        next_beat = time.monotonic() + self._interval
        while not self._stopped.wait(tick):
            if self._poll is not None:
                try:
                    self._poll()
                except StateStoreError:
                    pass  # a store hiccup: the next poll asks again
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self._interval
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
