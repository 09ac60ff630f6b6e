"""The durable record of runs: what ran, when, by whom, and how it ended.

``StateStore`` is a facade: each method is one short transaction around the
functions of runs, attempts, events, approvals and locks, committed before it
returns. The engine records each transition before acting on it, so a SIGKILL
at any instant leaves the store consistent and the run resumable. SQLite runs
in WAL mode with synchronous=NORMAL, which keeps every committed transaction
across a process crash (only an OS crash or power loss may drop the last few).
Database errors never escape as tracebacks: they become a one-line
StateStoreError with any password masked.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from runbook.errors import RunbookError, StateStoreError
from runbook.identity import current
from runbook.state import approvals as _approvals
from runbook.state import attempts as _attempts
from runbook.state import controls as _controls
from runbook.state import events as _events
from runbook.state import hosts as _hosts
from runbook.state import locks as _locks
from runbook.state import logs as _logs
from runbook.state import runs as _runs
from runbook.state.attempts import ATTEMPT_KINDS, ATTEMPT_STATUSES
from runbook.state.clock import database_now, local_now
from runbook.state.connect import DB_ERRORS, STATE_URL_ENV, WRITE_OPTION, Location, create_engine, in_schema, locate, store_error
from runbook.state.locks import Heartbeat, LockHandle, LockRecord, process_start_ticks
from runbook.state.records import ApprovalRecord, AttemptRecord, ControlRecord, EventRecord, LogChunk, RunRecord, Writer, require_one_of
from runbook.state.runs import RUN_STATUSES, UNFINISHED_RUN_STATUSES, new_run_id
from runbook.state.versions import ensure_schema

__all__ = [
    "ATTEMPT_KINDS", "ATTEMPT_STATUSES", "RUN_STATUSES", "STATE_URL_ENV", "UNFINISHED_RUN_STATUSES",
    "ApprovalRecord", "AttemptRecord", "EventRecord", "LogChunk", "RunRecord", "StateStore", "new_run_id",
]  # fmt: skip

# How often a colliding random run id is redrawn, and a lost insert race retried.
_INSERT_RETRIES = 5

_P = ParamSpec("_P")
_R = TypeVar("_R")


_S = TypeVar("_S", bound="_Transactions")


def _guarded(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Turn any database error into a one-line, password-masked StateStoreError."""

    @functools.wraps(method)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except DB_ERRORS as err:
            raise store_error(err, self.url_for_display, self._location.masker) from err

    return wrapper


def _is_duplicate_key(err: sa.exc.IntegrityError) -> bool:
    return getattr(err.orig, "sqlstate", None) == "23505"  # PostgreSQL unique_violation


class _Transactions:
    """The store's connections and who writes through them: reads, one-statement
    writes, and inserts that may lose a race for a new key."""

    def __init__(self, engine: Engine, location: Location) -> None:
        self._engine = engine
        self._reader = in_schema(engine, location.schema)
        self._writer = self._reader.execution_options(**{WRITE_OPTION: True})
        # A change of one statement on PostgreSQL runs in autocommit: one round trip instead of
        # BEGIN, statement, COMMIT, and as durable (the statement is its own transaction).
        self._autocommit = None if location.schema is None else self._reader.execution_options(isolation_level="AUTOCOMMIT")
        self._location = location
        self.url_for_display = location.display
        # The PostgreSQL schema holding the tables; None for SQLite.
        self.schema = location.schema
        self.host = socket.gethostname()
        # Who writes, by the OS (real uid): $USER and $LOGNAME are anyone's to set.
        self.actor = f"{current().user}@{self.host}"
        self._me = Writer(self.actor, self.host, os.getpid(), process_start_ticks(os.getpid()))
        # Locks this store took, by run id. An attempt of such a run starts only
        # while the lock is still ours, checked in the transaction that records
        # it: a process whose lock was broken or taken over starts nothing more.
        self._fences: dict[str, LockHandle] = {}

    def _read(self, query: Callable[Concatenate[Connection, _P], _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._reader.connect() as conn:
            return query(conn, *args, **kwargs)

    def _write(self, change: Callable[Concatenate[Connection, _P], _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Make a change of ONE statement, committed before this returns."""
        if self._autocommit is not None:
            with self._autocommit.connect() as conn:
                return change(conn, *args, **kwargs)
        with self._writer.begin() as conn:
            return change(conn, *args, **kwargs)

    def close(self) -> None:
        self._engine.dispose()

    def _missing(self, what: str) -> StateStoreError:
        return StateStoreError(f"no {what} in the state store")

    def _racing_insert(self, insert: Callable[[Connection], _R], what: str) -> _R:
        """``insert`` in a transaction of its own. PostgreSQL lets two writers compute the
        same new key (an attempt number, a free lock); the loser retries. Anything else
        (e.g. an unknown run) is final."""
        for _ in range(_INSERT_RETRIES):
            try:
                with self._writer.begin() as conn:
                    return insert(conn)
            except sa.exc.IntegrityError as err:
                if not _is_duplicate_key(err):
                    raise
        raise StateStoreError(f"state store {self.url_for_display}: could not {what}")


class _StepRecords(_Transactions):
    """What a step keeps besides its attempts: per-host attempts of fleet steps,
    checkpoints of resumable steps, and its output in chunks."""

    # -- per-host attempts of fleet steps -----------------------------------

    @_guarded
    def start_host_attempts(self, run_id: str, step_id: str, hosts: list[str], *, kind: str, batch: int) -> dict[str, int]:
        """Journal the hosts about to start, together (one transaction, however many hosts)."""
        with self._writer.begin() as conn:
            return _hosts.start(conn, run_id, step_id, hosts, kind=kind, batch=batch)

    @_guarded
    def finish_host_attempts(self, run_id: str, step_id: str, ends: list[_hosts.HostEnd]) -> None:
        """Record how the hosts' attempts ended, together (one transaction)."""
        with self._writer.begin() as conn:
            _hosts.finish(conn, run_id, step_id, ends)

    @_guarded
    def host_attempts(self, run_id: str, step_id: str) -> list[_hosts.HostAttempt]:
        return self._read(_hosts.of_step, run_id, step_id)

    @_guarded
    def save_checkpoint(self, run_id: str, step_id: str, data: dict[str, Any]) -> None:
        self._write(_approvals.save_checkpoint, run_id, step_id, data)

    @_guarded
    def load_checkpoint(self, run_id: str, step_id: str) -> dict[str, Any] | None:
        return self._read(_approvals.load_checkpoint, run_id, step_id)

    @_guarded
    def clear_checkpoint(self, run_id: str, step_id: str) -> None:
        self._write(_approvals.clear_checkpoint, run_id, step_id)

    # -- step logs ----------------------------------------------------------

    @_guarded
    def append_log(self, run_id: str, step_id: str, attempt: int, seq: int, text: str, *, stream: str = "output") -> None:
        """One chunk of an attempt's output (already masked), committed before this returns."""
        self._write(_logs.insert, run_id, step_id, attempt, seq, text, stream=stream)

    @_guarded
    def log_chunks(
        self, run_id: str, *, step_id: str | None = None, attempt: int | None = None, after: int = 0, limit: int | None = None
    ) -> list[LogChunk]:
        """The run's stored output after chunk id ``after``, oldest first (see state/logs.py)."""
        return self._read(_logs.of_run, run_id, step_id=step_id, attempt=attempt, after=after, limit=limit)


class StateStore(_StepRecords):
    """Runs, step attempts, events, approvals, checkpoints and locks."""

    @classmethod
    def open(cls, url: str | None = None, *, workdir: Path | None = None) -> StateStore:
        """Open (creating or upgrading) the store.

        ``url`` defaults to $RUNBOOK_STATE_URL, then to the SQLite file
        ``<workdir>/.runbook/state.db`` (workdir defaults to the current directory).
        """
        location = locate(url, workdir)
        store = cls(create_engine(location), location)
        try:
            ensure_schema(store._reader, store._writer, schema=location.schema, host=store.host)
        except DB_ERRORS as err:
            store.close()
            raise store_error(err, location.display, location.masker) from err
        except RunbookError:
            store.close()
            raise
        return store

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------

    @_guarded
    def create_run(
        self, *, runbook: str, env: str, path: str, fingerprint: str, dry_run: bool, actor: str,
        params: dict[str, Any], run_id: str | None = None, workdir: str | None = None,
    ) -> str:  # fmt: skip
        """Record a new running run; returns its id, ``run_id`` if given (see new_run_id).
        ``workdir``: the directory it starts in (the host is this store's)."""
        fields = {"runbook": runbook, "env": env, "path": path, "fingerprint": fingerprint, "dry_run": dry_run, "workdir": workdir}
        for _ in range(_INSERT_RETRIES):
            now = local_now()
            candidate = run_id or new_run_id(now)
            try:
                self._write(_runs.insert, candidate, writer=self._me, started_at=now, actor=actor, params=params, **fields)
                return candidate
            except sa.exc.IntegrityError as err:
                # A given id may already guard a lock, so it is never swapped for another.
                if run_id is not None:
                    raise StateStoreError(f"run {run_id} already exists in the state store") from err
                # Otherwise two runs started in the same second drew the same suffix: draw again.
        raise StateStoreError(f"state store {self.url_for_display}: could not allocate a unique run id")

    @_guarded
    def get_run(self, run_id: str) -> RunRecord | None:
        return self._read(_runs.get, run_id)

    @_guarded
    def set_run_status(self, run_id: str, status: str, *, finished: bool = False) -> None:
        """Set the run's status; a no-op in a process whose lock on the run was taken by
        another process resuming the same run, which records the run from then on."""
        require_one_of(status, RUN_STATUSES, "run status")
        fence = self._fences.get(run_id)
        with self._writer.begin() as conn:
            if fence is not None and _locks.resumed_elsewhere(conn, fence):
                return
            if not _runs.set_status(conn, run_id, status, finished=finished):
                raise self._missing(f"run {run_id}")

    @_guarded
    def mark_finished(self, run_id: str) -> None:
        """The run no longer owns its environment; its status stays as it was recorded."""
        self._write(_runs.mark_finished, run_id)

    @_guarded
    def owner_run(self, runbook: str, env: str) -> RunRecord | None:
        """The newest real run of ``runbook`` in ``env`` that is not finished: it owns the
        environment until it passes, is rolled back or is abandoned."""
        return self._read(_runs.owner, runbook, env)

    @_guarded
    def latest_run(
        self, runbook: str, env: str, *, unfinished: bool = False, dry_run: bool | None = False
    ) -> RunRecord | None:
        """The newest run of ``runbook`` in ``env``; ``dry_run=None`` matches both kinds."""
        return self._read(_runs.latest, runbook, env, unfinished=unfinished, dry_run=dry_run)

    @_guarded
    def list_runs(self, runbook: str | None = None, env: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Newest first."""
        return self._read(_runs.newest, runbook, env, limit)

    # -- step attempts ------------------------------------------------------

    @_guarded
    def start_attempt(self, run_id: str, step_id: str, *, fingerprint: str, kind: str = "step") -> int:
        """Record a new running attempt; returns its number (1, 2, ... per run and step)."""
        require_one_of(kind, ATTEMPT_KINDS, "attempt kind")
        return self._insert_attempt(run_id, step_id, kind=kind, status="running", fingerprint=fingerprint)

    @_guarded
    def finish_attempt(
        self, run_id: str, step_id: str, attempt: int, *, status: str, outputs: dict[str, Any] | None = None,
        error: str | None = None, checks: list[dict[str, Any]] | None = None, log_path: str | None = None,
    ) -> None:  # fmt: skip
        ended = dict[str, Any](status=status, outputs=outputs, error=error, checks=checks, log_path=log_path)
        if not self._write(_attempts.finish, run_id, step_id, attempt, **ended):
            raise self._missing(f"attempt {attempt} of step {step_id} in run {run_id}")

    @_guarded
    def record_step(
        self, run_id: str, step_id: str, *, status: str, fingerprint: str, reason: str | None = None
    ) -> None:
        """Record an attempt that ends as it starts (skipped, refused, awaiting approval)."""
        require_one_of(status, ATTEMPT_STATUSES, "attempt status")
        self._insert_attempt(run_id, step_id, kind="step", status=status, fingerprint=fingerprint, error=reason)

    def _insert_attempt(self, run_id: str, step_id: str, **fields: Any) -> int:
        fence = self._fences.get(run_id) if fields["status"] == "running" else None

        def insert(conn: Connection) -> int:
            if fence is not None:
                _locks.confirm(conn, fence)
            return _attempts.insert(conn, run_id, step_id, writer=self._me, **fields)

        return self._racing_insert(insert, f"number an attempt of {step_id}")

    @_guarded
    def carry_attempt(self, run_id: str, source: AttemptRecord) -> None:
        """Record in ``run_id`` that ``source`` (a passed attempt of an earlier run) counts there."""
        self._insert_attempt(
            run_id, source.step_id, kind="carried", status=source.status, fingerprint=source.fingerprint,
            outputs=source.outputs, error=f"carried over from run {source.run_id}", log_path=source.log_path,
        )  # fmt: skip

    @_guarded
    def step_states(self, run_id: str) -> dict[str, AttemptRecord]:
        """The latest 'step' attempt of every step of the run, in the order they started."""
        return self._read(_attempts.latest_per_step, run_id)

    @_guarded
    def latest_attempts(self, runbook: str, env: str, *, exclude_run: str | None = None) -> dict[str, AttemptRecord]:
        """The newest real attempt of every step across the real runs of ``runbook`` in
        ``env`` (copies carried over by --from/--only and rollback bodies left out)."""
        return self._read(_attempts.latest_real, runbook, env, exclude_run=exclude_run)

    @_guarded
    def running_attempts(self, runbook: str, env: str) -> list[AttemptRecord]:
        """Attempts still marked 'running' in real (not dry) runs of ``runbook`` in ``env``, oldest first."""
        return self._read(_attempts.running, runbook, env)

    @_guarded
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRecord]:
        """Every attempt of the run (or of one step), oldest first."""
        return self._read(_attempts.of_run, run_id, step_id)

    @_guarded
    def mark_interrupted(self, run_id: str, step_id: str, attempt: int) -> None:
        """Close an attempt left running by a dead process; a finished one is left as it ended."""
        self._write(_attempts.mark_interrupted, run_id, step_id, attempt)

    # -- events, approvals, checkpoints --------------------------------------

    @_guarded
    def append_event(
        self, run_id: str, event: str, *, step_id: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        self._write(_events.insert, run_id, event, writer=self._me, step_id=step_id, detail=detail)

    @_guarded
    def events(self, run_id: str) -> list[EventRecord]:
        """The run's events in the order they were appended."""
        return self._read(_events.of_run, run_id)

    @_guarded
    def record_approval(
        self, run_id: str, step_id: str, *, by: str, comment: str | None, fingerprint: str,
        os_user: str | None = None, decision: str = "approved",
    ) -> None:  # fmt: skip
        """An approval (or, with ``decision='rejected'``, a rejection); ``os_user`` is who ran the command."""
        self._write(
            _approvals.insert, run_id, step_id, by=by, comment=comment, fingerprint=fingerprint,
            writer=self._me, os_user=os_user, decision=decision,
        )  # fmt: skip

    @_guarded
    def decisions(self, run_id: str, step_id: str) -> list[ApprovalRecord]:
        """The step's approvals and rejections, oldest first."""
        return self._read(_approvals.of_run, run_id, step_id)

    @_guarded
    def request_control(self, run_id: str, action: str, *, by: str, step_id: str | None = None, params: dict[str, Any] | None = None) -> None:
        """Ask the process running ``run_id`` to cancel, pause, continue or change a setting."""
        require_one_of(action, _controls.CONTROL_ACTIONS, "control action")
        self._write(_controls.insert, run_id, action, step_id=step_id, params=params or {}, by=by, writer=self._me)

    @_guarded
    def controls_since(self, run_id: str, after: int) -> list[ControlRecord]:
        return self._read(_controls.since, run_id, after)

    @_guarded
    def last_control_id(self, run_id: str) -> int:
        return self._read(_controls.last_id, run_id)

    @_guarded
    def approval(self, run_id: str, step_id: str) -> ApprovalRecord | None:
        """The latest approval of the step, if any."""
        return self._read(_approvals.latest, run_id, step_id)

    @_guarded
    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        return self._read(_approvals.of_run, run_id)

    # -- locks --------------------------------------------------------------

    @_guarded
    def acquire_lock(self, runbook: str, env: str, run_id: str) -> LockHandle:
        """Take the (runbook, env) lock for ``run_id``, taking over a dead holder's.

        Raises LockHeld naming the holder while it is alive. The handle carries
        this acquisition's owner token and, after a takeover, the dead holder.
        """

        def take(conn: Connection) -> LockHandle:
            handle = _locks.acquire(conn, runbook=runbook, env=env, run_id=run_id, actor=self.actor, host=self.host)
            if handle.previous is not None:
                detail = {"runbook": runbook, "env": env, "reason": handle.reason, "previous": handle.previous.as_detail()}
                _events.insert(conn, run_id, "lock_taken_over", writer=self._me, step_id=None, detail=detail)
            return handle

        handle = self._racing_insert(take, f"settle the lock on {runbook} in {env}")
        self._fences[run_id] = handle
        return handle

    @_guarded
    def heartbeat(self, lock: LockHandle) -> None:
        """Prove the holder alive; raises LockHeld if the lock was broken or taken over."""
        self._write(_locks.heartbeat, lock)

    @_guarded
    def confirm_lock(self, lock: LockHandle) -> None:
        """Raise LockHeld at once if the lock is no longer ours (one primary-key read)."""
        with self._reader.connect() as conn:
            _locks.confirm(conn, lock)

    @_guarded
    def release_lock(self, lock: LockHandle) -> bool:
        """Release the lock if it is still ours; a lock since broken or taken over is left alone (False)."""
        self._fences.pop(lock.run_id, None)
        return self._write(_locks.release, lock)

    @_guarded
    def lock_holder(self, runbook: str, env: str) -> LockRecord | None:
        return self._read(_locks.read, runbook, env)

    @_guarded
    def database_now(self) -> datetime:
        """The store's clock, which lock heartbeats are stamped with: pass it to ``locks.stale_reason``."""
        with self._reader.connect() as conn:
            return database_now(conn)

    @_guarded
    def force_unlock(self, runbook: str, env: str, *, by: str) -> LockRecord | None:
        """Break the lock whoever holds it; audited on the holder's run. Returns the holder."""
        with self._writer.begin() as conn:
            holder = _locks.remove(conn, runbook=runbook, env=env)
            if holder is not None:
                detail = {"runbook": runbook, "env": env, "by": by, "holder": holder.as_detail()}
                _events.insert(conn, holder.run_id, "lock_broken", writer=self._me, step_id=None, detail=detail)
        return holder

    def start_heartbeat(self, lock: LockHandle, interval: float = 10.0, *, poll: Callable[[], None] | None = None) -> Heartbeat:
        """Heartbeat the lock from a daemon thread every ``interval`` seconds until ``.stop()``.

        Each beat checks a connection out of the pool for itself (pre-pinged on
        PostgreSQL), so the thread never shares a connection with the caller.
        ``check()`` on the result reads the lock row at once.
        """
        return Heartbeat(
            lambda: self.heartbeat(lock),
            interval,
            name=f"runbook-heartbeat-{lock.run_id}",
            confirm=lambda: self.confirm_lock(lock),
            poll=poll,
        ).start()
