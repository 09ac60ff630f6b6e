"""A run whose process is gone shows as interrupted in status/history/show, without a resume,
and a backfill's progress shows in status from another process sharing the store."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from runbook.state import LOCK_STALE_AFTER, LockRecord, RunRecord, StateStore
from runbook.state.liveness import shown_status
from runbook.state.locks import process_start_ticks
from tests.engine.conftest import Project

SLOW = """
name: k
steps:
  - id: first
    kind: command
    run: echo first
    irreversible: true
  - id: slow
    kind: command
    run: touch slow.running; sleep 30
    irreversible: true
"""


def _wait_for(project: Project, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (project.root / name).exists():
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.02)


def _stop_leftover_groups(project: Project, run_id: str) -> None:
    """The killed run's command leads its own process group and outlives it; stop it."""
    with StateStore.open(project.state_url, workdir=project.root) as store:
        for event in store.events(run_id):
            if event.event == "process_started":
                try:
                    os.killpg(int(event.detail["pgid"]), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _run_id(project: Project) -> str:
    history = project.runbook("history")
    return history.stdout.splitlines()[1].split()[0]


@pytest.mark.slow
def test_kill_9_mid_step_shows_interrupted(project: Project) -> None:
    """While alive the run shows running; after SIGKILL, status, show and history say interrupted."""
    project.write("k.yaml", SLOW)
    proc = project.spawn("run", "k.yaml")
    try:
        _wait_for(project, "slow.running")
        run_id = _run_id(project)
        alive = project.runbook("status")
        assert "status: running" in alive.stdout, alive.stdout + alive.stderr
        assert " running " in project.runbook("history").stdout
    finally:
        proc.kill()
        proc.wait(10)
    try:
        status = project.runbook("status")
        assert status.returncode == 0, status.stderr
        assert re.search(r"status: interrupted .*recorded as running", status.stdout), status.stdout
        assert re.search(r"slow\s+⚡ interrupted", status.stdout), status.stdout
        assert re.search(r"first\s+✔ passed", status.stdout), status.stdout
        assert "status: interrupted" in project.runbook("show", run_id).stdout
        history = project.runbook("history")
        assert re.search(rf"{run_id}\s+k\s+default\s+⚡ interrupted", history.stdout), history.stdout
        # Read-only: the record still says running until a resume recovers it.
        with StateStore.open(project.state_url, workdir=project.root) as store:
            record = store.get_run(run_id)
            assert record is not None and record.status == "running"
    finally:
        _stop_leftover_groups(project, run_id)


BACKFILL = """
name: fill
connections:
  app: sqlite:///app.db
steps:
  - id: fill
    kind: backfill
    connection: app
    table: t
    key: id
    where: v IS NULL
    update: UPDATE t SET v = id WHERE id BETWEEN :lo AND :hi AND v IS NULL
    batch_size: 100
    min_batch: 100
    max_batch: 100
    throttle: 1s
    irreversible: true
"""


@pytest.mark.slow
def test_backfill_progress_in_status_from_another_process(project: Project) -> None:
    """A throttled backfill shows rows done / total in another process's status, and still does
    after kill -9 between batches, next to the interrupted state."""
    with sqlite3.connect(project.root / "app.db") as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        db.executemany("INSERT INTO t (id) VALUES (?)", [(i,) for i in range(1, 1001)])
    project.write("fill.yaml", BACKFILL)
    proc = project.spawn("run", "fill.yaml")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "no progress shown"
            seen = re.search(r"fill\s+• running .*rows (\d+) / ~?1,000", project.runbook("status").stdout)
            if seen and 0 < int(seen.group(1)) < 1000:
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(10)
    status = project.runbook("status").stdout
    progress = re.search(r"fill\s+⚡ interrupted .*rows (\d+) / ~?1,000", status)
    assert progress, status
    assert "status: interrupted" in status
    with sqlite3.connect(project.root / "app.db") as db:
        (written,) = db.execute("SELECT count(*) FROM t WHERE v IS NOT NULL").fetchone()
    # The checkpoint is saved right after each batch commits; kill -9 may fall between the two.
    assert int(progress.group(1)) in (written, written - 100)


# ---------------------------------------------------------------- the rule, case by case

NOW = datetime.now(UTC)
RUN = RunRecord(
    run_id="20260101-000000-abcd",
    runbook="k",
    env="default",
    path="k.yaml",
    fingerprint="f",
    dry_run=False,
    status="running",
    actor="me",
    host="here",
    pid=os.getpid(),
    started_at=NOW,
    finished_at=None,
    params={},
)
HOLDER = LockRecord("k", "default", RUN.run_id, "me", "here", os.getpid(), process_start_ticks(os.getpid()), NOW, NOW, "token")


def test_live_holder_on_this_host_is_running() -> None:
    """This process holds the lock: running."""
    assert shown_status(RUN, HOLDER, host="here", now=NOW).status == "running"


def test_reused_pid_is_interrupted() -> None:
    """The pid is alive but started at another time than the holder: a reused pid, so interrupted."""
    reused = replace(HOLDER, pid_started=(HOLDER.pid_started or 0) + 12345)
    shown = shown_status(RUN, reused, host="here", now=NOW)
    assert shown.status == "interrupted" and "is gone" in (shown.why or "")


def test_other_host_is_judged_by_its_heartbeat() -> None:
    """From another machine: a fresh heartbeat is running, a stale one interrupted."""
    remote = replace(HOLDER, host="there")
    assert shown_status(RUN, remote, host="here", now=NOW).status == "running"
    later = NOW + timedelta(seconds=LOCK_STALE_AFTER + 1)
    shown = shown_status(RUN, remote, host="here", now=later)
    assert shown.status == "interrupted" and "no heartbeat" in (shown.why or "")


def test_running_without_its_lock_is_interrupted() -> None:
    """A real run holds its lock while running; without it (or with another run's), it is gone."""
    assert shown_status(RUN, None, host="here", now=NOW).status == "interrupted"
    other = replace(HOLDER, run_id="20260101-000001-beef")
    assert shown_status(RUN, other, host="here", now=NOW).status == "interrupted"


def test_dry_run_is_judged_by_its_pid_and_start_time() -> None:
    """A dry run holds no lock: alive pid started before the run is running; a pid whose process
    started after the run began (reused) is interrupted; another host cannot tell, so running."""
    dry = replace(RUN, dry_run=True)
    assert shown_status(dry, None, host="here", now=NOW).status == "running"
    before_this_process = replace(dry, started_at=NOW - timedelta(days=400))
    assert shown_status(before_this_process, None, host="here", now=NOW).status == "interrupted"
    assert shown_status(replace(before_this_process, host="there"), None, host="here", now=NOW).status == "running"


def test_finished_runs_show_as_recorded() -> None:
    """Only a run recorded as running is second-guessed."""
    assert shown_status(replace(RUN, status="passed"), None, host="here", now=NOW).status == "passed"
