"""The durable record of runs: what ran, when, by whom, and how it ended.

Every write is its own short transaction, committed before the method
returns: the engine records each transition before acting on it, so a
SIGKILL at any instant leaves the store consistent and the run resumable.
SQLite runs in WAL mode with synchronous=NORMAL, which keeps every committed
transaction across a process crash (only an OS crash or power loss may drop
the last few). Database errors never escape as tracebacks: they become a
one-line StateStoreError with any password masked.
"""

from __future__ import annotations

import functools
import getpass
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from runbook.connections import normalize_url
from runbook.errors import StateStoreError
from runbook.masking import Masker
from runbook.state import locks as _locks
from runbook.state.locks import Heartbeat, LockHandle, LockRecord, process_start_ticks
from runbook.status import RESUMABLE_RUN_STATUSES, RunStatus, StepStatus
from runbook.state.schema import approvals, checkpoints, ensure_schema, events, runs, step_attempts

STATE_URL_ENV = "RUNBOOK_STATE_URL"
STATE_DIR = ".runbook"
STATE_FILE = "state.db"

RUN_STATUSES = frozenset(RunStatus)
UNFINISHED_RUN_STATUSES = RESUMABLE_RUN_STATUSES
ATTEMPT_STATUSES = frozenset(StepStatus) - {StepStatus.RUNNING}
# "carried": a copy of a step that passed in an earlier run, counted by --from/--only.
ATTEMPT_KINDS = frozenset({"step", "rollback", "carried"})

# Concurrent runbook processes wait this long for SQLite's write lock
# instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
# Custom execution option marking transactions that will write (see _sqlite_engine).
_WRITE_OPTION = "runbook_write"
# How often a colliding random run id is redrawn, and a lost insert race retried.
_INSERT_RETRIES = 5


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    runbook: str
    env: str
    path: str
    fingerprint: str
    dry_run: bool
    status: str
    actor: str
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    run_id: str
    step_id: str
    attempt: int
    kind: str
    status: str
    fingerprint: str
    pid: int
    pid_started: int | None
    host: str
    started_at: datetime
    finished_at: datetime | None
    outputs: dict[str, Any] | None
    error: str | None
    checks: list[dict[str, Any]] | None
    log_path: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    run_id: str
    step_id: str | None
    event: str
    at: datetime
    actor: str
    pid: int
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    run_id: str
    step_id: str
    by: str
    comment: str | None
    fingerprint: str
    at: datetime
    host: str


# Selected in dataclass field order so rows map positionally (cheapest).
_RUN_COLUMNS = tuple(runs.c[name] for name in RunRecord.__dataclass_fields__)
_ATTEMPT_COLUMNS = tuple(step_attempts.c[name] for name in AttemptRecord.__dataclass_fields__)
_EVENT_COLUMNS = tuple(events.c[name] for name in EventRecord.__dataclass_fields__)
_APPROVAL_COLUMNS = (
    approvals.c.run_id,
    approvals.c.step_id,
    approvals.c.approved_by,
    approvals.c.comment,
    approvals.c.fingerprint,
    approvals.c.at,
    approvals.c.host,
)

# Statements on the per-step path are built once and executed with parameters:
# building a Core statement costs about as much as executing it on SQLite.
_INSERT_RUN = sa.insert(runs)
_INSERT_EVENT = sa.insert(events)
_INSERT_ATTEMPT = (
    sa.insert(step_attempts)
    .values(
        attempt=sa.select(sa.func.coalesce(sa.func.max(step_attempts.c.attempt), 0) + 1)
        .where(
            step_attempts.c.run_id == sa.bindparam("key_run_id"),
            step_attempts.c.step_id == sa.bindparam("key_step_id"),
        )
        .scalar_subquery()
    )
    .returning(step_attempts.c.attempt)
)
# Bound names differ from column names: an UPDATE reads column-named parameters as SET values.
_ATTEMPT_KEY = sa.and_(
    step_attempts.c.run_id == sa.bindparam("key_run_id"),
    step_attempts.c.step_id == sa.bindparam("key_step_id"),
    step_attempts.c.attempt == sa.bindparam("key_attempt"),
)
_FINISH_ATTEMPT = sa.update(step_attempts).where(_ATTEMPT_KEY)
_INTERRUPT_ATTEMPT = (
    sa.update(step_attempts).where(_ATTEMPT_KEY, step_attempts.c.status == "running").values(status="interrupted")
)
_GET_RUN = sa.select(*_RUN_COLUMNS).where(runs.c.run_id == sa.bindparam("run_id"))
_LOAD_CHECKPOINT = sa.select(checkpoints.c.data).where(
    checkpoints.c.run_id == sa.bindparam("run_id"), checkpoints.c.step_id == sa.bindparam("step_id")
)

# What the database (or the pool waiting for it) can raise at run time; any
# other SQLAlchemy error is a bug in this module and keeps its traceback.
_DB_ERRORS = (sa.exc.DBAPIError, sa.exc.TimeoutError)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(method: Callable[Concatenate[StateStore, _P], _R]) -> Callable[Concatenate[StateStore, _P], _R]:
    """Turn any database error into a one-line, password-masked StateStoreError."""

    @functools.wraps(method)
    def wrapper(self: StateStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except _DB_ERRORS as err:
            raise _store_error(err, self.url_for_display, self._masker) from err

    return wrapper


def _store_error(err: BaseException, where: str, masker: Masker) -> StateStoreError:
    cause: BaseException = err.orig if isinstance(err, sa.exc.DBAPIError) and err.orig is not None else err
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    # SQLAlchemy appends "(Background on this error at: ...)" lines; the first line says it all.
    reason = lines[0] if lines else type(cause).__name__
    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        reason = f"connection lost: {reason}"
    return StateStoreError(masker.mask(f"state store {where}: {reason}"))


def _now() -> datetime:
    return datetime.now(UTC)


def new_run_id(now: datetime | None = None) -> str:
    """A short, time-sortable run id; the engine draws it before taking the lock."""
    return f"{(now or _now()):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER, e.g. in a bare container
        return str(os.getuid())


def _is_duplicate_key(err: sa.exc.IntegrityError) -> bool:
    return getattr(err.orig, "sqlstate", None) == "23505"  # PostgreSQL unique_violation


def _check_choice(value: str, allowed: frozenset[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(allowed)}")


def _prepare_state_dir(workdir: Path) -> Path:
    """Create ``<workdir>/.runbook`` private to the user; refuse a planted symlink."""
    state_dir = workdir / STATE_DIR
    if state_dir.is_symlink():
        raise StateStoreError(
            f"refusing to use {state_dir}: it is a symlink", hint="remove it; runbook creates the directory itself"
        )
    try:
        state_dir.mkdir(mode=0o700, exist_ok=True)
    except OSError as err:
        raise StateStoreError(f"cannot create {state_dir}: {err.strerror}") from err
    return state_dir / STATE_FILE


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file readable by its owner only; refuse a symlink."""
    if path.is_symlink():
        raise StateStoreError(
            f"refusing to use {path}: it is a symlink", hint="a state store must be a regular file; remove the link"
        )
    try:
        # O_NOFOLLOW closes the gap between the check above and the open.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise StateStoreError(f"cannot open state store {path}: {err.strerror}") from err
    os.close(fd)


def _create_engine(url: sa.URL, display: str) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            _prepare_sqlite_file(Path(url.database))
        return _sqlite_engine(url)
    if backend == "postgresql":
        # pre-ping replaces pooled connections whose backend died while idle.
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    raise StateStoreError(f"unsupported state store {display}: use a sqlite:// or postgresql:// URL")


def _sqlite_engine(url: sa.URL) -> Engine:
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the driver so _begin below can choose its flavour.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A deferred transaction that reads then writes cannot wait for the
        # write lock in WAL mode (SQLITE_BUSY at once, busy_timeout or not);
        # IMMEDIATE takes it up front, which also serializes lock acquisition.
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class StateStore:
    """Runs, step attempts, events, approvals, checkpoints and locks."""

    def __init__(self, engine: Engine, *, url_for_display: str, masker: Masker) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE_OPTION: True})
        self._masker = masker
        upsert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(checkpoints)
        self._save_checkpoint = upsert.on_conflict_do_update(
            index_elements=[checkpoints.c.run_id, checkpoints.c.step_id],
            set_={"data": upsert.excluded.data, "updated_at": upsert.excluded.updated_at},
        )
        self.url_for_display = url_for_display
        self.host = socket.gethostname()
        self.actor = f"{_current_user()}@{self.host}"
        self._pid_started = process_start_ticks(os.getpid())
        # Locks this store took, by run id. An attempt of such a run starts only
        # while the lock is still ours, checked in the transaction that records
        # it: a process whose lock was broken or taken over starts nothing more.
        self._fences: dict[str, LockHandle] = {}

    @classmethod
    def open(cls, url: str | None = None, *, workdir: Path | None = None) -> StateStore:
        """Open (creating or upgrading) the store.

        ``url`` defaults to $RUNBOOK_STATE_URL, then to the SQLite file
        ``<workdir>/.runbook/state.db`` (workdir defaults to the current directory).
        """
        url = url or os.environ.get(STATE_URL_ENV) or None
        masker = Masker()
        if url is None:
            path = _prepare_state_dir(workdir or Path.cwd())
            parsed = sa.URL.create("sqlite", database=str(path))
            display = str(path)
        else:
            display = masker.mask(url)
            try:
                parsed = sa.make_url(normalize_url(url))
            except sa.exc.ArgumentError as err:
                raise StateStoreError(f"invalid state store URL {display}") from err
            masker.add(parsed.password)
            display = masker.mask(parsed.render_as_string(hide_password=False))
        try:
            engine = _create_engine(parsed, display)
        except (sa.exc.ArgumentError, ImportError) as err:  # unknown driver, or one not installed
            raise StateStoreError(masker.mask(f"cannot use state store {display}: {err}")) from err
        store = cls(engine, url_for_display=display, masker=masker)
        try:
            ensure_schema(engine, store._writer)
        except _DB_ERRORS as err:
            engine.dispose()
            raise _store_error(err, display, masker) from err
        except StateStoreError:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------

    @_guarded
    def create_run(
        self,
        *,
        runbook: str,
        env: str,
        path: str,
        fingerprint: str,
        dry_run: bool,
        actor: str,
        params: dict[str, Any],
        run_id: str | None = None,
    ) -> str:
        """Record a new running run; returns its id, ``run_id`` if given (see new_run_id)."""
        for _ in range(_INSERT_RETRIES):
            now = _now()
            candidate = run_id or new_run_id(now)
            try:
                with self._writer.begin() as conn:
                    conn.execute(
                        _INSERT_RUN,
                        {
                            "run_id": candidate,
                            "runbook": runbook,
                            "env": env,
                            "path": path,
                            "fingerprint": fingerprint,
                            "dry_run": dry_run,
                            "status": "running",
                            "actor": actor,
                            "host": self.host,
                            "pid": os.getpid(),
                            "started_at": now,
                            "finished_at": None,
                            "params": params,
                        },
                    )
                return candidate
            except sa.exc.IntegrityError as err:
                # A given id may already guard a lock, so it is never swapped for another.
                if run_id is not None:
                    raise StateStoreError(f"run {run_id} already exists in the state store") from err
                # Otherwise two runs started in the same second drew the same suffix: draw again.
        raise StateStoreError(f"state store {self.url_for_display}: could not allocate a unique run id")

    @_guarded
    def get_run(self, run_id: str) -> RunRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(_GET_RUN, {"run_id": run_id}).first()
        return None if row is None else RunRecord(*row)

    @_guarded
    def set_run_status(self, run_id: str, status: str, *, finished: bool = False) -> None:
        """Set the run's status; a no-op in a process whose lock on the run was taken by
        another process resuming the same run, which records the run from then on."""
        _check_choice(status, RUN_STATUSES, "run status")
        values: dict[str, Any] = {"status": status}
        if finished:
            values["finished_at"] = _now()
        fence = self._fences.get(run_id)
        with self._writer.begin() as conn:
            if fence is not None and _locks.resumed_elsewhere(conn, fence):
                return
            if conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(**values)).rowcount == 0:
                raise StateStoreError(f"no run {run_id} in the state store")

    @_guarded
    def mark_finished(self, run_id: str) -> None:
        """The run no longer owns its environment; its status stays as it was recorded."""
        with self._writer.begin() as conn:
            conn.execute(sa.update(runs).where(runs.c.run_id == run_id, runs.c.finished_at.is_(None)).values(finished_at=_now()))

    @_guarded
    def owner_run(self, runbook: str, env: str) -> RunRecord | None:
        """The newest real run of ``runbook`` in ``env`` that is not finished: it owns the
        environment until it passes, is rolled back or is abandoned."""
        query = (
            sa.select(*_RUN_COLUMNS)
            .where(runs.c.runbook == runbook, runs.c.env == env, runs.c.dry_run == sa.false(), runs.c.finished_at.is_(None))
            .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else RunRecord(*row)

    @_guarded
    def latest_run(
        self, runbook: str, env: str, *, unfinished: bool = False, dry_run: bool | None = False
    ) -> RunRecord | None:
        """The newest run of ``runbook`` in ``env``; ``dry_run=None`` matches both kinds."""
        query = sa.select(*_RUN_COLUMNS).where(runs.c.runbook == runbook, runs.c.env == env)
        if unfinished:
            query = query.where(runs.c.status.in_(sorted(UNFINISHED_RUN_STATUSES)))
        if dry_run is not None:
            query = query.where(runs.c.dry_run == dry_run)
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else RunRecord(*row)

    @_guarded
    def list_runs(self, runbook: str | None = None, env: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Newest first."""
        query = sa.select(*_RUN_COLUMNS)
        if runbook is not None:
            query = query.where(runs.c.runbook == runbook)
        if env is not None:
            query = query.where(runs.c.env == env)
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [RunRecord(*row) for row in conn.execute(query)]

    # -- step attempts ------------------------------------------------------

    @_guarded
    def start_attempt(self, run_id: str, step_id: str, *, fingerprint: str, kind: str = "step") -> int:
        """Record a new running attempt; returns its number (1, 2, ... per run and step)."""
        _check_choice(kind, ATTEMPT_KINDS, "attempt kind")
        return self._insert_attempt(run_id, step_id, kind=kind, status="running", fingerprint=fingerprint)

    @_guarded
    def finish_attempt(
        self,
        run_id: str,
        step_id: str,
        attempt: int,
        *,
        status: str,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        checks: list[dict[str, Any]] | None = None,
        log_path: str | None = None,
    ) -> None:
        _check_choice(status, ATTEMPT_STATUSES, "attempt status")
        values = {
            "key_run_id": run_id,
            "key_step_id": step_id,
            "key_attempt": attempt,
            "status": status,
            "finished_at": _now(),
            "outputs": outputs,
            "error": error,
            "checks": checks,
            "log_path": log_path,
        }
        with self._writer.begin() as conn:
            if conn.execute(_FINISH_ATTEMPT, values).rowcount == 0:
                raise StateStoreError(f"no attempt {attempt} of step {step_id} in run {run_id}")

    @_guarded
    def record_step(
        self, run_id: str, step_id: str, *, status: str, fingerprint: str, reason: str | None = None
    ) -> None:
        """Record an attempt that ends as it starts (skipped, refused, awaiting approval)."""
        _check_choice(status, ATTEMPT_STATUSES, "attempt status")
        self._insert_attempt(run_id, step_id, kind="step", status=status, fingerprint=fingerprint, error=reason)

    def _insert_attempt(
        self, run_id: str, step_id: str, *, kind: str, status: str, fingerprint: str, error: str | None = None
    ) -> int:
        now = _now()
        values = {
            "key_run_id": run_id,
            "key_step_id": step_id,
            "run_id": run_id,
            "step_id": step_id,
            "kind": kind,
            "status": status,
            "fingerprint": fingerprint,
            "pid": os.getpid(),
            "pid_started": self._pid_started,
            "host": self.host,
            "started_at": now,
            "finished_at": None if status == "running" else now,
            "outputs": None,
            "error": error,
            "checks": None,
            "log_path": None,
        }
        fence = self._fences.get(run_id) if status == "running" else None
        for _ in range(_INSERT_RETRIES):
            try:
                with self._writer.begin() as conn:
                    if fence is not None:
                        _locks.confirm(conn, fence)
                    return int(conn.execute(_INSERT_ATTEMPT, values).scalar_one())
            except sa.exc.IntegrityError as err:
                # PostgreSQL lets two writers compute the same next number; the
                # loser retries. Anything else (e.g. an unknown run) is final.
                if not _is_duplicate_key(err):
                    raise
        raise StateStoreError(f"state store {self.url_for_display}: could not number an attempt of {step_id}")

    @_guarded
    def step_states(self, run_id: str) -> dict[str, AttemptRecord]:
        """The latest 'step' attempt of every step of the run, in the order they started."""
        latest = (
            sa.select(step_attempts.c.step_id, sa.func.max(step_attempts.c.attempt).label("attempt"))
            .where(step_attempts.c.run_id == run_id, step_attempts.c.kind.in_(("step", "carried")))
            .group_by(step_attempts.c.step_id)
            .subquery()
        )
        query = (
            sa.select(*_ATTEMPT_COLUMNS)
            .join(
                latest,
                sa.and_(step_attempts.c.step_id == latest.c.step_id, step_attempts.c.attempt == latest.c.attempt),
            )
            .where(step_attempts.c.run_id == run_id)
            .order_by(step_attempts.c.started_at, step_attempts.c.step_id)
        )
        with self._engine.connect() as conn:
            return {row.step_id: AttemptRecord(*row) for row in conn.execute(query)}

    @_guarded
    def latest_attempts(self, runbook: str, env: str, *, exclude_run: str | None = None) -> dict[str, AttemptRecord]:
        """The newest real attempt of every step across the real runs of ``runbook`` in
        ``env`` (copies carried over by --from/--only and rollback bodies left out)."""
        query = (
            sa.select(*_ATTEMPT_COLUMNS)
            .join(runs, runs.c.run_id == step_attempts.c.run_id)
            .where(runs.c.runbook == runbook, runs.c.env == env, runs.c.dry_run == sa.false(), step_attempts.c.kind == "step")
            .order_by(step_attempts.c.started_at, step_attempts.c.attempt)
        )
        if exclude_run is not None:
            query = query.where(runs.c.run_id != exclude_run)
        with self._engine.connect() as conn:
            return {row.step_id: AttemptRecord(*row) for row in conn.execute(query)}

    @_guarded
    def carry_attempt(self, run_id: str, source: AttemptRecord) -> None:
        """Record in ``run_id`` that ``source`` (a passed attempt of an earlier run) counts there."""
        with self._writer.begin() as conn:
            conn.execute(
                _INSERT_ATTEMPT,
                {
                    "key_run_id": run_id,
                    "key_step_id": source.step_id,
                    "run_id": run_id,
                    "step_id": source.step_id,
                    "kind": "carried",
                    "status": source.status,
                    "fingerprint": source.fingerprint,
                    "pid": os.getpid(),
                    "pid_started": self._pid_started,
                    "host": self.host,
                    "started_at": _now(),
                    "finished_at": _now(),
                    "outputs": source.outputs,
                    "error": f"carried over from run {source.run_id}",
                    "checks": None,
                    "log_path": source.log_path,
                },
            )

    @_guarded
    def running_attempts(self, runbook: str, env: str) -> list[AttemptRecord]:
        """Attempts still marked 'running' in real (not dry) runs of ``runbook`` in ``env``, oldest first."""
        query = (
            sa.select(*_ATTEMPT_COLUMNS)
            .join(runs, runs.c.run_id == step_attempts.c.run_id)
            .where(
                runs.c.runbook == runbook,
                runs.c.env == env,
                runs.c.dry_run == sa.false(),
                step_attempts.c.status == "running",
            )
            .order_by(step_attempts.c.started_at, step_attempts.c.step_id)
        )
        with self._engine.connect() as conn:
            return [AttemptRecord(*row) for row in conn.execute(query)]

    @_guarded
    def attempts(self, run_id: str, step_id: str | None = None) -> list[AttemptRecord]:
        """Every attempt of the run (or of one step), oldest first."""
        query = sa.select(*_ATTEMPT_COLUMNS).where(step_attempts.c.run_id == run_id)
        if step_id is not None:
            query = query.where(step_attempts.c.step_id == step_id)
        query = query.order_by(step_attempts.c.started_at, step_attempts.c.step_id, step_attempts.c.attempt)
        with self._engine.connect() as conn:
            return [AttemptRecord(*row) for row in conn.execute(query)]

    @_guarded
    def mark_interrupted(self, run_id: str, step_id: str, attempt: int) -> None:
        """Close an attempt left running by a dead process; a finished one is left as it ended."""
        with self._writer.begin() as conn:
            conn.execute(
                _INTERRUPT_ATTEMPT,
                {"key_run_id": run_id, "key_step_id": step_id, "key_attempt": attempt, "finished_at": _now()},
            )

    # -- events -------------------------------------------------------------

    @_guarded
    def append_event(
        self, run_id: str, event: str, *, step_id: str | None = None, detail: dict[str, Any] | None = None
    ) -> None:
        with self._writer.begin() as conn:
            self._insert_event(conn, run_id, event, step_id=step_id, detail=detail)

    def _insert_event(
        self,
        conn: Connection,
        run_id: str,
        event: str,
        *,
        step_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            _INSERT_EVENT,
            {
                "run_id": run_id,
                "step_id": step_id,
                "event": event,
                "at": _now(),
                "actor": self.actor,
                "pid": os.getpid(),
                "detail": detail or {},
            },
        )

    @_guarded
    def events(self, run_id: str) -> list[EventRecord]:
        """The run's events in the order they were appended."""
        query = sa.select(*_EVENT_COLUMNS).where(events.c.run_id == run_id).order_by(events.c.id)
        with self._engine.connect() as conn:
            return [EventRecord(*row) for row in conn.execute(query)]

    # -- approvals ----------------------------------------------------------

    @_guarded
    def record_approval(self, run_id: str, step_id: str, *, by: str, comment: str | None, fingerprint: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.insert(approvals).values(
                    run_id=run_id,
                    step_id=step_id,
                    approved_by=by,
                    comment=comment,
                    fingerprint=fingerprint,
                    at=_now(),
                    host=self.host,
                )
            )

    @_guarded
    def approval(self, run_id: str, step_id: str) -> ApprovalRecord | None:
        """The latest approval of the step, if any."""
        query = (
            sa.select(*_APPROVAL_COLUMNS)
            .where(approvals.c.run_id == run_id, approvals.c.step_id == step_id)
            .order_by(approvals.c.id.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else ApprovalRecord(*row)

    @_guarded
    def approvals(self, run_id: str) -> list[ApprovalRecord]:
        query = sa.select(*_APPROVAL_COLUMNS).where(approvals.c.run_id == run_id).order_by(approvals.c.id)
        with self._engine.connect() as conn:
            return [ApprovalRecord(*row) for row in conn.execute(query)]

    # -- checkpoints --------------------------------------------------------

    @_guarded
    def save_checkpoint(self, run_id: str, step_id: str, data: dict[str, Any]) -> None:
        values = {"run_id": run_id, "step_id": step_id, "data": data, "updated_at": _now()}
        with self._writer.begin() as conn:
            conn.execute(self._save_checkpoint, values)

    @_guarded
    def load_checkpoint(self, run_id: str, step_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            data: dict[str, Any] | None = conn.execute(
                _LOAD_CHECKPOINT, {"run_id": run_id, "step_id": step_id}
            ).scalar_one_or_none()
        return data

    @_guarded
    def clear_checkpoint(self, run_id: str, step_id: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(sa.delete(checkpoints).where(checkpoints.c.run_id == run_id, checkpoints.c.step_id == step_id))

    # -- locks --------------------------------------------------------------

    @_guarded
    def acquire_lock(self, runbook: str, env: str, run_id: str) -> LockHandle:
        """Take the (runbook, env) lock for ``run_id``, taking over a dead holder's.

        Raises LockHeld naming the holder while it is alive. The handle carries
        this acquisition's owner token and, after a takeover, the dead holder.
        """
        for _ in range(_INSERT_RETRIES):
            try:
                with self._writer.begin() as conn:
                    handle = _locks.acquire(
                        conn, runbook=runbook, env=env, run_id=run_id, actor=self.actor, host=self.host, now=_now()
                    )
                    if handle.previous is not None:
                        self._insert_event(
                            conn,
                            run_id,
                            "lock_taken_over",
                            detail={
                                "runbook": runbook,
                                "env": env,
                                "reason": handle.reason,
                                "previous": handle.previous.as_detail(),
                            },
                        )
                self._fences[run_id] = handle
                return handle
            except sa.exc.IntegrityError as err:
                # Lost the race to insert a free lock on PostgreSQL; look again.
                if not _is_duplicate_key(err):
                    raise
        raise StateStoreError(f"state store {self.url_for_display}: could not settle the lock on {runbook} in {env}")

    @_guarded
    def heartbeat(self, lock: LockHandle) -> None:
        """Prove the holder alive; raises LockHeld if the lock was broken or taken over."""
        with self._writer.begin() as conn:
            _locks.heartbeat(conn, lock, now=_now())

    @_guarded
    def confirm_lock(self, lock: LockHandle) -> None:
        """Raise LockHeld at once if the lock is no longer ours (one primary-key read)."""
        with self._engine.connect() as conn:
            _locks.confirm(conn, lock)

    @_guarded
    def release_lock(self, lock: LockHandle) -> bool:
        """Release the lock if it is still ours; a lock since broken or taken over is left alone (False)."""
        self._fences.pop(lock.run_id, None)
        with self._writer.begin() as conn:
            return _locks.release(conn, lock)

    @_guarded
    def lock_holder(self, runbook: str, env: str) -> LockRecord | None:
        with self._engine.connect() as conn:
            return _locks.read(conn, runbook, env)

    @_guarded
    def force_unlock(self, runbook: str, env: str, *, by: str) -> LockRecord | None:
        """Break the lock whoever holds it; audited on the holder's run. Returns the holder."""
        with self._writer.begin() as conn:
            holder = _locks.remove(conn, runbook=runbook, env=env)
            if holder is not None:
                self._insert_event(
                    conn,
                    holder.run_id,
                    "lock_broken",
                    detail={"runbook": runbook, "env": env, "by": by, "holder": holder.as_detail()},
                )
        return holder

    def start_heartbeat(self, lock: LockHandle, interval: float = 10.0) -> Heartbeat:
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
        ).start()
