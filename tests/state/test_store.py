"""The state store against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runbook.errors import LockHeld, Refused, StateStoreError
from runbook.state import LOCK_STALE_AFTER, SCHEMA_VERSION, StateStore, new_run_id
from runbook.state.hosts import HostEnd
from runbook.state.schema import locks, metadata, runs, schema_version, step_attempts
from tests.state.store_tables import store_engine


@pytest.fixture
def store(db_url: str) -> Iterator[StateStore]:
    """An open store on SQLite and on PostgreSQL."""
    opened = StateStore.open(db_url)
    yield opened
    opened.close()


def new_run(store: StateStore, runbook: str = "deploy", env: str = "prod", *, dry_run: bool = False) -> str:
    return store.create_run(
        runbook=runbook, env=env, path="deploy.yaml", fingerprint="fp1", dry_run=dry_run, actor="alice", params={"v": 1}
    )


def raw_engine(url: str) -> sa.Engine:
    """A plain engine for inspecting or tampering with a store behind its back."""
    return store_engine(url)


def legacy_engine(url: str) -> sa.Engine:
    """A plain engine in the database's default schema (``public`` on PostgreSQL), where
    runbook before schema version 3 kept its tables."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def test_runs_attempts_events_roundtrip(store: StateStore) -> None:
    """A run, its attempts and its events read back as written, with UTC-aware timestamps."""
    run_id = new_run(store)
    run = store.get_run(run_id)
    assert run is not None
    assert (run.runbook, run.env, run.status, run.actor, run.dry_run) == ("deploy", "prod", "running", "alice", False)
    assert run.params == {"v": 1} and run.pid == os.getpid() and run.finished_at is None
    assert run.started_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - run.started_at) < timedelta(seconds=30)

    attempt = store.start_attempt(run_id, "migrate", fingerprint="s1")
    assert attempt == 1
    checks = [{"name": "c", "ok": True}]
    store.finish_attempt(run_id, "migrate", attempt, status="passed", outputs={"rows": 3}, checks=checks, log_path="l")
    store.append_event(run_id, "step_started", step_id="migrate", detail={"attempt": 1})
    store.append_event(run_id, "step_passed", step_id="migrate")
    store.set_run_status(run_id, "passed", finished=True)

    (got,) = store.attempts(run_id)
    assert (got.status, got.kind, got.outputs, got.checks, got.log_path, got.error) == (
        "passed", "step", {"rows": 3}, checks, "l", None,
    )
    assert got.finished_at is not None and got.finished_at >= got.started_at
    assert [(e.event, e.step_id, e.detail) for e in store.events(run_id)] == [
        ("step_started", "migrate", {"attempt": 1}),
        ("step_passed", "migrate", {}),
    ]
    assert store.events(run_id)[0].actor == store.actor
    finished = store.get_run(run_id)
    assert finished is not None and finished.status == "passed" and finished.finished_at is not None
    assert store.get_run("nope") is None
    with pytest.raises(ValueError):
        store.set_run_status(run_id, "exploded")


def test_host_attempts_are_journalled_and_finished_a_batch_at_a_time(store: StateStore) -> None:
    """A batch's hosts are written 'running' in one transaction, each with its next attempt
    number; their ends are recorded together."""
    run_id = new_run(store)
    assert store.start_host_attempts(run_id, "deploy", ["a", "b"], kind="step", batch=1) == {"a": 1, "b": 1}
    store.finish_host_attempts(run_id, "deploy", [HostEnd("a", 1, "passed", 0, None), HostEnd("b", 1, "failed", 3, "exited with status 3")])
    assert store.start_host_attempts(run_id, "deploy", ["b", "c"], kind="step", batch=2) == {"b": 2, "c": 1}
    got = {(a.host, a.attempt): (a.status, a.exit_code, a.batch) for a in store.host_attempts(run_id, "deploy")}
    assert got == {("a", 1): ("passed", 0, 1), ("b", 1): ("failed", 3, 1), ("b", 2): ("running", None, 2), ("c", 1): ("running", None, 2)}
    assert store.host_attempts(run_id, "other") == []


def test_create_run_keeps_a_given_id(store: StateStore) -> None:
    """A run id drawn beforehand (to take the lock first) is kept as is; reusing one is refused."""
    run_id = new_run_id()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run_id)
    kwargs: dict[str, Any] = dict(
        runbook="deploy", env="prod", path="p", fingerprint="f", dry_run=False, actor="a", params={}
    )
    assert store.create_run(run_id=run_id, **kwargs) == run_id
    with pytest.raises(StateStoreError, match="already exists"):
        store.create_run(run_id=run_id, **kwargs)
    assert store.create_run(**kwargs) != run_id


def test_latest_run_filters(store: StateStore) -> None:
    """latest_run picks the newest run, filtered by unfinished status and dry-run."""
    first = new_run(store)
    store.set_run_status(first, "failed", finished=True)
    second = new_run(store)
    store.set_run_status(second, "passed", finished=True)
    dry = new_run(store, dry_run=True)
    new_run(store, env="staging")

    assert _id(store.latest_run("deploy", "prod")) == second
    assert _id(store.latest_run("deploy", "prod", unfinished=True)) == first
    assert _id(store.latest_run("deploy", "prod", dry_run=True)) == dry
    assert _id(store.latest_run("deploy", "prod", dry_run=None)) == dry
    assert store.latest_run("deploy", "dev") is None
    assert [r.run_id for r in store.list_runs("deploy", "prod")] == [dry, second, first]
    assert len(store.list_runs(limit=2)) == 2


def _id(run: object) -> str | None:
    return getattr(run, "run_id", None)


def test_list_runs_is_fast_with_many_runs(db_url: str) -> None:
    """list_runs and step_states answer well under 100 ms with 100 runs x 20 steps."""
    now = datetime.now(UTC)
    run_ids = [f"20260101-{i:06d}-beef" for i in range(100)]
    run_rows: list[dict[str, Any]] = [
        {
            "run_id": run_id, "runbook": f"rb{i % 5}", "env": "prod", "path": "p", "fingerprint": "f",
            "dry_run": False, "status": "passed", "actor": "a", "host": "h", "pid": 1,
            "started_at": now + timedelta(seconds=i), "finished_at": None, "params": {},
        }
        for i, run_id in enumerate(run_ids)
    ]
    attempt_rows: list[dict[str, Any]] = [
        {
            "run_id": run_id, "step_id": f"step{s}", "attempt": 1, "kind": "step", "status": "passed",
            "fingerprint": "f", "pid": 1, "host": "h", "started_at": now, "finished_at": now,
            "outputs": {"k": s}, "error": None, "checks": [], "log_path": None,
        }
        for run_id in run_ids
        for s in range(20)
    ]
    with StateStore.open(db_url) as store:
        engine = raw_engine(db_url)
        with engine.begin() as conn:
            conn.execute(sa.insert(runs), run_rows)
            conn.execute(sa.insert(step_attempts), attempt_rows)
        engine.dispose()

        def best_of_5(call: Callable[[], object]) -> float:
            times = []
            for _ in range(5):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            return min(times)

        assert best_of_5(lambda: store.list_runs()) < 0.1
        assert best_of_5(lambda: store.list_runs("rb3", "prod")) < 0.1
        assert best_of_5(lambda: store.step_states(run_ids[50])) < 0.1
        assert [r.run_id for r in store.list_runs(limit=3)] == run_ids[:-4:-1]
        assert len(store.step_states(run_ids[50])) == 20


def test_step_states_picks_latest_step_attempt(store: StateStore) -> None:
    """step_states returns each step's latest 'step' attempt; rollbacks share the numbering but are not states."""
    run_id = new_run(store)
    a1 = store.start_attempt(run_id, "migrate", fingerprint="s1")
    store.finish_attempt(run_id, "migrate", a1, status="failed", error="boom")
    a2 = store.start_attempt(run_id, "migrate", fingerprint="s1")
    store.finish_attempt(run_id, "migrate", a2, status="passed")
    rb = store.start_attempt(run_id, "migrate", fingerprint="s1", kind="rollback")
    store.finish_attempt(run_id, "migrate", rb, status="rolled_back")
    store.record_step(run_id, "approve", status="awaiting_approval", fingerprint="s2", reason="needs sign-off")
    stuck = store.start_attempt(run_id, "smoke", fingerprint="s3")
    store.mark_interrupted(run_id, "smoke", stuck)
    store.mark_interrupted(run_id, "migrate", a2)  # already finished: left as it ended

    assert (a1, a2, rb) == (1, 2, 3)
    states = store.step_states(run_id)
    assert list(states) == ["migrate", "approve", "smoke"]
    assert (states["migrate"].attempt, states["migrate"].status) == (2, "passed")
    assert (states["approve"].status, states["approve"].error) == ("awaiting_approval", "needs sign-off")
    assert states["approve"].finished_at is not None
    assert states["smoke"].status == "interrupted"
    numbered = [(a.attempt, a.kind) for a in store.attempts(run_id, "migrate")]
    assert numbered == [(1, "step"), (2, "step"), (3, "rollback")]
    assert len(store.attempts(run_id)) == 5
    with pytest.raises(StateStoreError):
        store.finish_attempt(run_id, "migrate", 99, status="passed")


def test_checkpoints_upsert(store: StateStore) -> None:
    """save_checkpoint overwrites the previous checkpoint; clear removes it."""
    run_id = new_run(store)
    assert store.load_checkpoint(run_id, "backfill") is None
    store.save_checkpoint(run_id, "backfill", {"last_key": 100, "rows": 100})
    store.save_checkpoint(run_id, "backfill", {"last_key": 200, "rows": 200})
    store.save_checkpoint(run_id, "other", {"last_key": 1})
    assert store.load_checkpoint(run_id, "backfill") == {"last_key": 200, "rows": 200}
    store.clear_checkpoint(run_id, "backfill")
    assert store.load_checkpoint(run_id, "backfill") is None
    assert store.load_checkpoint(run_id, "other") == {"last_key": 1}


def test_approvals(store: StateStore) -> None:
    """approval returns the latest approval of a step; approvals lists them all in order."""
    run_id = new_run(store)
    assert store.approval(run_id, "deploy") is None
    store.record_approval(run_id, "deploy", by="bob", comment=None, fingerprint="old")
    store.record_approval(run_id, "deploy", by="carol", comment="lgtm", fingerprint="new")
    latest = store.approval(run_id, "deploy")
    assert latest is not None
    assert (latest.by, latest.comment, latest.fingerprint, latest.host) == ("carol", "lgtm", "new", store.host)
    assert latest.at.utcoffset() == timedelta(0)
    assert [a.by for a in store.approvals(run_id)] == ["bob", "carol"]


def test_default_store_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a URL the store is <workdir>/.runbook/state.db, directory 0700 and file 0600."""
    monkeypatch.delenv("RUNBOOK_STATE_URL", raising=False)
    with StateStore.open(workdir=tmp_path) as store:
        new_run(store)
        assert store.url_for_display == str(tmp_path / ".runbook" / "state.db")
    assert (tmp_path / ".runbook").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / ".runbook" / "state.db").stat().st_mode & 0o777 == 0o600


def test_env_url_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RUNBOOK_STATE_URL chooses the store when no URL is given."""
    target = tmp_path / "elsewhere.db"
    monkeypatch.setenv("RUNBOOK_STATE_URL", f"sqlite:///{target}")
    with StateStore.open(workdir=tmp_path) as store:
        new_run(store)
    assert target.exists() and not (tmp_path / ".runbook").exists()


@pytest.mark.parametrize("planted", [".runbook", ".runbook/state.db"])
def test_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str) -> None:
    """A symlink planted at .runbook or .runbook/state.db is refused, and its target untouched."""
    monkeypatch.delenv("RUNBOOK_STATE_URL", raising=False)
    target = tmp_path / "target"
    target.mkdir()
    if planted == ".runbook":
        (tmp_path / ".runbook").symlink_to(target)
    else:
        (tmp_path / ".runbook").mkdir(mode=0o700)
        (tmp_path / planted).symlink_to(target / "state.db")
    with pytest.raises(StateStoreError, match="symlink"):
        StateStore.open(workdir=tmp_path)
    assert list(target.iterdir()) == []


def test_old_store_is_upgraded_in_place(db_url: str) -> None:
    """A version-0 store (no kind column, checkpoints or schema_version) is upgraded, keeping its data
    (and, on PostgreSQL, moved out of ``public``, where runbook then kept it)."""
    engine = legacy_engine(db_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE checkpoints"))
        conn.execute(sa.text("DROP TABLE schema_version"))
        conn.execute(sa.text("DROP INDEX ix_runs_started"))
        conn.execute(sa.text("ALTER TABLE step_attempts DROP COLUMN kind"))
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_id, runbook, env, path, fingerprint, dry_run, status, actor, host, pid,"
                " started_at, params) VALUES ('old-run', 'deploy', 'prod', 'p', 'f', false, 'failed', 'a', 'h', 1,"
                " '2025-01-01 00:00:00', '{}')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO step_attempts (run_id, step_id, attempt, status, fingerprint, pid, host, started_at)"
                " VALUES ('old-run', 'migrate', 1, 'failed', 'f', 1, 'h', '2025-01-01 00:00:00')"
            )
        )

    with StateStore.open(db_url) as store:
        assert store.step_states("old-run")["migrate"].kind == "step"
        store.save_checkpoint("old-run", "migrate", {"k": 1})
        assert store.start_attempt("old-run", "migrate", fingerprint="f") == 2
    engine.dispose()
    engine = raw_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalars().all() == list(range(1, SCHEMA_VERSION + 1))
        schema = "runbook" if conn.dialect.name == "postgresql" else None
        assert "ix_runs_started" in {ix["name"] for ix in sa.inspect(conn).get_indexes("runs", schema=schema)}
        if schema is not None:
            assert sa.inspect(conn).get_table_names(schema="public") == []
    engine.dispose()


def test_version_1_store_gains_owner_tokens_and_its_locks_still_work(db_url: str) -> None:
    """A version-1 store (locks without owner_token, attempts without pid_started) is
    upgraded in place; a lock row it holds (NULL token) is still judged by its pid:
    kept while that process lives, taken over once it is gone. On PostgreSQL, where
    such a store is in ``public``, it is not even moved while its holder lives: the
    older runbook would lose its tables mid-run."""
    engine = legacy_engine(db_url)
    metadata.create_all(engine)
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE locks DROP COLUMN owner_token"))
        conn.execute(sa.text("ALTER TABLE step_attempts DROP COLUMN pid_started"))
        conn.execute(sa.insert(schema_version).values(version=1, applied_at=now))
        for env, pid in (("prod", alive.pid), ("staging", gone.pid)):
            conn.execute(
                sa.text(
                    "INSERT INTO locks (runbook, env, run_id, actor, host, pid, acquired_at, heartbeat_at)"
                    " VALUES ('deploy', :env, :run, 'a', :host, :pid, :now, :now)"
                ),
                {"env": env, "run": f"old-{env}", "host": socket.gethostname(), "pid": pid, "now": now.replace(tzinfo=None)},
            )
    engine.dispose()
    try:
        if db_url.startswith("postgresql"):
            with pytest.raises(Refused, match=f"run old-prod .*pid {alive.pid}.* is using it") as caught:
                StateStore.open(db_url)
            assert not isinstance(caught.value, LockHeld)
            assert _tables(db_url, "public") >= {"runs", "locks", "schema_version"} and _tables(db_url, "runbook") == set()
        else:
            with StateStore.open(db_url) as store, pytest.raises(LockHeld, match="old-prod"):
                store.acquire_lock("deploy", "prod", "new-prod")
    finally:
        alive.kill()
        alive.wait()
    with StateStore.open(db_url) as store:
        for env in ("prod", "staging"):
            lock = store.acquire_lock("deploy", env, f"new-{env}")
            assert lock.previous is not None and lock.previous.run_id == f"old-{env}" and lock.previous.owner_token is None
            holder = store.lock_holder("deploy", env)
            assert holder is not None and holder.owner_token == lock.token
            assert store.release_lock(lock)
    engine = raw_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalars().all() == list(range(1, SCHEMA_VERSION + 1))
    engine.dispose()


def _tables(url: str, schema: str) -> set[str]:
    engine = legacy_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names(schema=schema))
    finally:
        engine.dispose()


def test_newer_store_is_refused(sqlite_url: str) -> None:
    """A store written by a newer schema version is refused rather than misread."""
    StateStore.open(sqlite_url).close()
    engine = raw_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION + 1, applied_at=datetime.now(UTC)))
    engine.dispose()
    with pytest.raises(StateStoreError, match="newer"):
        StateStore.open(sqlite_url)


def test_second_acquire_raises_lock_held(store: StateStore) -> None:
    """A live holder keeps the lock: another run gets LockHeld naming user, host, pid, start and run id."""
    first, second = new_run(store), new_run(store)
    lock = store.acquire_lock("deploy", "prod", first)
    assert store.acquire_lock("deploy", "prod", first).token == lock.token  # re-entrant for the holder itself
    with pytest.raises(LockHeld) as caught:
        store.acquire_lock("deploy", "prod", second)
    message = str(caught.value)
    for part in (first, store.actor, store.host, f"pid {os.getpid()}", "since"):
        assert part in message
    # What to do: the exact command that breaks the lock, and the flag that waits for it.
    assert "runbook unlock deploy --env prod --force" in caught.value.hint and "--lock-timeout" in caught.value.hint
    staging = store.acquire_lock("deploy", "staging", second)  # another env is another lock
    assert store.release_lock(staging)
    assert not store.release_lock(staging)  # no longer ours: nothing changes
    assert _id(store.lock_holder("deploy", "prod")) == first
    assert store.release_lock(lock)
    assert store.lock_holder("deploy", "prod") is None
    store.acquire_lock("deploy", "prod", second)


def test_owner_token_not_run_id_decides_who_holds_the_lock(store: StateStore, db_url: str) -> None:
    """Two acquisitions for the same run id (a resume by another process after unlock
    --force): the old handle's heartbeat, check and release change nothing of the new
    holder's row and mark the old handle lost; the old holder cannot start an attempt
    of the run, nor set its status, while the new one can."""
    run_id = new_run(store)
    old = store.acquire_lock("deploy", "prod", run_id)
    store.force_unlock("deploy", "prod", by="carol@ops")
    with StateStore.open(db_url) as other:
        new = other.acquire_lock("deploy", "prod", run_id)
        assert new.token != old.token
        before = store.lock_holder("deploy", "prod")
        with pytest.raises(LockHeld, match="no longer holds the lock"):
            store.heartbeat(old)
        with pytest.raises(LockHeld):
            store.confirm_lock(old)
        assert old.lost is not None and new.lost is None
        with pytest.raises(LockHeld):
            store.start_attempt(run_id, "migrate", fingerprint="f")
        store.set_run_status(run_id, "refused", finished=True)
        assert not store.release_lock(old)
        holder = store.lock_holder("deploy", "prod")
        assert holder == before and holder is not None and holder.owner_token == new.token
        run = store.get_run(run_id)
        assert run is not None and run.status == "running"
        assert other.start_attempt(run_id, "migrate", fingerprint="f") == 1
        other.confirm_lock(new)
        assert other.release_lock(new)
    assert store.attempts(run_id)[0].pid_started is not None


HOLD_LOCK = """
import sys, time
from runbook.state import StateStore
store = StateStore.open(sys.argv[1])
store.acquire_lock("deploy", "prod", sys.argv[2])
print("locked", flush=True)
time.sleep(60)
"""


def test_dead_holder_on_same_host_is_taken_over(store: StateStore, db_url: str) -> None:
    """When the holding process is SIGKILLed, the next run takes the lock over and records who it replaced."""
    dead_run, next_run = new_run(store), new_run(store)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db_url, dead_run], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            store.acquire_lock("deploy", "prod", next_run)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    store.acquire_lock("deploy", "prod", next_run)
    assert _id(store.lock_holder("deploy", "prod")) == next_run
    (event,) = [e for e in store.events(next_run) if e.event == "lock_taken_over"]
    assert event.detail["previous"]["run_id"] == dead_run
    assert event.detail["previous"]["pid"] == holder.pid


def test_reused_pid_is_taken_over(sqlite_url: str) -> None:
    """A live pid whose process start time differs from the recorded one is a reused pid: taken over."""
    with StateStore.open(sqlite_url) as store:
        old, new = new_run(store), new_run(store)
        store.acquire_lock("deploy", "prod", old)
        holder = store.lock_holder("deploy", "prod")
        assert holder is not None and holder.pid_started is not None
        engine = raw_engine(sqlite_url)
        with engine.begin() as conn:
            conn.execute(sa.update(locks).values(pid_started=holder.pid_started - 1))
        engine.dispose()
        store.acquire_lock("deploy", "prod", new)
        assert _id(store.lock_holder("deploy", "prod")) == new


def test_remote_lock_taken_over_only_after_heartbeat_deadline(store: StateStore, db_url: str) -> None:
    """A lock held from another host is respected until its heartbeat is LOCK_STALE_AFTER seconds old."""
    remote, local = new_run(store), new_run(store)
    store.acquire_lock("deploy", "prod", remote)
    engine = raw_engine(db_url)

    def beat_ago(seconds: float) -> None:
        with engine.begin() as conn:
            at = datetime.now(UTC) - timedelta(seconds=seconds)
            conn.execute(sa.update(locks).values(host="far-away", actor="bob@far-away", heartbeat_at=at))

    beat_ago(LOCK_STALE_AFTER - 10)
    with pytest.raises(LockHeld, match="bob@far-away"):
        store.acquire_lock("deploy", "prod", local)
    beat_ago(LOCK_STALE_AFTER + 10)
    store.acquire_lock("deploy", "prod", local)
    engine.dispose()
    (event,) = [e for e in store.events(local) if e.event == "lock_taken_over"]
    assert event.detail["previous"]["host"] == "far-away"
    assert "no heartbeat" in event.detail["reason"]


def test_heartbeat_thread_and_force_unlock(store: StateStore) -> None:
    """The heartbeat thread refreshes the lock; force_unlock breaks it, is audited, and the thread notices."""
    run_id = new_run(store)
    lock = store.acquire_lock("deploy", "prod", run_id)
    before = store.lock_holder("deploy", "prod")
    assert before is not None
    beat = store.start_heartbeat(lock, interval=0.02)
    try:
        deadline = time.monotonic() + 5
        while (now := store.lock_holder("deploy", "prod")) is not None and now.heartbeat_at == before.heartbeat_at:
            assert time.monotonic() < deadline, "heartbeat never refreshed the lock"
            time.sleep(0.01)
        broken = store.force_unlock("deploy", "prod", by="carol@ops")
        assert _id(broken) == run_id
        assert store.lock_holder("deploy", "prod") is None
        while not beat.lost:
            assert time.monotonic() < deadline, "heartbeat never noticed the broken lock"
            time.sleep(0.01)
    finally:
        beat.stop()
    (event,) = [e for e in store.events(run_id) if e.event == "lock_broken"]
    assert event.detail["by"] == "carol@ops" and event.detail["holder"]["run_id"] == run_id
    assert store.force_unlock("deploy", "prod", by="carol@ops") is None
    with pytest.raises(LockHeld):
        store.heartbeat(lock)
    with pytest.raises(LockHeld):
        beat.check()


def test_heartbeat_check_asks_the_store_at_once(store: StateStore) -> None:
    """check() reads the lock row: a broken lock is noticed before the next beat is due."""
    lock = store.acquire_lock("deploy", "prod", new_run(store))
    beat = store.start_heartbeat(lock, interval=3600)
    try:
        beat.check()
        store.force_unlock("deploy", "prod", by="carol@ops")
        with pytest.raises(LockHeld, match="no longer holds the lock"):
            beat.check()
        assert beat.lost
    finally:
        beat.stop()


RACE = """
import sys, time
from pathlib import Path
from runbook.errors import LockHeld
from runbook.state import StateStore
url, run_id, ready, go, done = sys.argv[1:6]
store = StateStore.open(url)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.002)
try:
    store.acquire_lock("deploy", "prod", run_id)
except LockHeld:
    print("held", flush=True)
else:
    print("won", flush=True)
# Stay alive so the winner is not mistaken for a dead holder by a slow loser.
while not Path(done).exists():
    time.sleep(0.01)
"""


def test_eight_processes_race_for_the_lock(db_url: str, tmp_path: Path) -> None:
    """Eight processes opening a fresh store and acquiring the same lock at once: exactly one wins."""
    run_ids = [f"race-{i}" for i in range(8)]
    go, done = tmp_path / "go", tmp_path / "done"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, db_url, run_id, str(tmp_path / f"ready{i}"), str(go), str(done)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, run_id in enumerate(run_ids)
    ]
    try:
        deadline = time.monotonic() + 90  # eight interpreters importing SQLAlchemy on a loaded 2-core machine
        while not all((tmp_path / f"ready{i}").exists() for i in range(8)):
            assert time.monotonic() < deadline, "racers never became ready"
            time.sleep(0.01)
        go.touch()
        outcomes = [p.stdout.readline().strip() for p in procs if p.stdout is not None]
    finally:
        done.touch()
        for p in procs:
            p.wait(timeout=60)
    assert sorted(outcomes) == ["held"] * 7 + ["won"]
    with StateStore.open(db_url) as store:
        assert _id(store.lock_holder("deploy", "prod")) == run_ids[outcomes.index("won")]


def test_pg_backend_terminated_mid_use(pg_url: str) -> None:
    """A PostgreSQL backend killed mid-write gives a one-line StateStoreError; the store then reconnects."""
    store = StateStore.open(pg_url)
    run_id = new_run(store)
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            store.append_event(run_id, "blocked")
        except BaseException as err:  # the assertion below reports whatever escaped
            outcome.append(err)
        else:
            outcome.append(None)

    with admin.connect() as blocker:
        # Park the store's write behind a table lock so it is provably mid-transaction when killed.
        blocker.execute(sa.text("BEGIN"))
        blocker.execute(sa.text("LOCK TABLE runbook.events IN ACCESS EXCLUSIVE MODE"))
        writer = threading.Thread(target=write)
        writer.start()
        with admin.connect() as ctl:
            deadline = time.monotonic() + 10
            while not (
                waiting := ctl.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                ).scalars().all()
            ):
                assert time.monotonic() < deadline, "the store's write never blocked"
                time.sleep(0.01)
            ctl.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": waiting[0]})
        writer.join(timeout=10)
        blocker.execute(sa.text("ROLLBACK"))
    admin.dispose()

    (err,) = outcome
    assert isinstance(err, StateStoreError), repr(err)
    assert "\n" not in err.message and "connection lost" in err.message
    # Idle pooled connections that died with it are replaced thanks to pre-ping.
    store.append_event(run_id, "after")
    assert [e.event for e in store.events(run_id)] == ["after"]
    store.close()


def test_unreachable_server_masks_password() -> None:
    """A connection failure is a one-line StateStoreError with the URL's password masked."""
    with pytest.raises(StateStoreError) as caught:
        StateStore.open("postgresql://deployer:Sup3r-s3cret@127.0.0.1:1/state")
    message = str(caught.value)
    assert "Sup3r-s3cret" not in message and "deployer:***@" in message
    assert "\n" not in message
