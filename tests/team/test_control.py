"""Live control from another checkout: cancel a running step, pause between steps and
continue with `run --resume`, change a running backfill's throttle and max_batch."""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa

from runbook.process import group_alive
from runbook.state import StateStore
from tests.team.conftest import Checkout, needs_other_users, wait_for

LONG = """
name: long
steps:
  - id: wait
    kind: command
    run: "test -f go || { touch started; sleep 300; }"
    irreversible: true
  - id: after
    kind: command
    run: touch after.done
    irreversible: true
"""

TWO_STEPS = """
name: two
steps:
  - id: one
    kind: command
    run: "touch one.started; while [ ! -f release ]; do sleep 0.05; done"
    irreversible: true
  - id: two
    kind: command
    run: touch two.done
    irreversible: true
"""


def _run_id(url: str, runbook: str) -> str:
    with StateStore.open(url) as store:
        runs = store.list_runs(runbook)
        return runs[0].run_id if runs else ""


def _store(url: str) -> StateStore:
    return StateStore.open(url)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.mark.slow
@needs_other_users
def test_cancel_from_another_checkout_stops_the_step_and_leaves_the_run_resumable(checkouts: tuple[Checkout, Checkout], people: tuple[str, ...]) -> None:
    a, b = checkouts
    for side in (a, b):
        side.write("long.yaml", LONG)
    proc, out = a.spawn("run", "long.yaml")
    try:
        wait_for(lambda: (a.root / "started").exists(), "the long step to start")
        run_id = _run_id(a.state_url, "long")
        with _store(a.state_url) as store:
            (pgid,) = [e.detail["pgid"] for e in store.events(run_id) if e.event == "process_started"]
        assert group_alive(pgid)
        cancelled = b.runbook("cancel", run_id, user="bob")
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert _finish(proc) == 130, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not group_alive(pgid)
    with _store(a.state_url) as store:
        assert store.get_run(run_id).status == "interrupted"  # type: ignore[union-attr]
        events = {e.event: e.detail for e in store.events(run_id)}
        assert events["control_requested"]["by"] == "bob" and events["control_requested"]["action"] == "cancel"
        assert events["cancelled"]["by"].startswith("bob@")
    # Nothing to cancel any more: refused, saying how to go on.
    again = b.runbook("cancel", run_id)
    assert again.returncode == 3 and "not running now" in again.stderr
    (a.root / "go").touch()
    resumed = a.runbook("run", "long.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (a.root / "after.done").exists()


@pytest.mark.slow
def test_pause_between_steps_holds_the_lock_and_resume_from_elsewhere_continues_it(checkouts: tuple[Checkout, Checkout]) -> None:
    a, b = checkouts
    for side in (a, b):
        side.write("two.yaml", TWO_STEPS)
    proc, out = a.spawn("run", "two.yaml")
    try:
        wait_for(lambda: (a.root / "one.started").exists(), "step one to start")
        run_id = _run_id(a.state_url, "two")
        paused = b.runbook("pause", run_id)
        assert paused.returncode == 0, paused.stdout + paused.stderr
        (a.root / "release").touch()

        def status() -> str:
            with _store(a.state_url) as store:
                return store.get_run(run_id).status  # type: ignore[union-attr]

        wait_for(lambda: status() == "paused", "the run to pause", output=out)
        assert proc.poll() is None and not (a.root / "two.done").exists()
        with _store(a.state_url) as store:
            holder = store.lock_holder("two", "default")
            assert holder is not None and holder.run_id == run_id and holder.pid == proc.pid
        # A new run is refused meanwhile; pausing twice says so.
        assert b.runbook("run", "two.yaml").returncode == 3
        assert b.runbook("pause", run_id).returncode == 2

        resumed = b.runbook("run", "two.yaml", "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"asked it to continue" in resumed.stdout
        assert _finish(proc) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (a.root / "two.done").exists() and not (b.root / "two.done").exists()
    text = out.read_text()
    assert "paused between steps by" in text and "continued by" in text
    with _store(a.state_url) as store:
        names = [e.event for e in store.events(run_id)]
        assert names.index("paused") < names.index("continued")
        assert store.get_run(run_id).status == "passed"  # type: ignore[union-attr]


def _items(url: str, rows: int) -> sa.Engine:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id int PRIMARY KEY, v int)"))
        conn.execute(sa.text(f"INSERT INTO items (id) SELECT g FROM generate_series(1, {rows}) g"))
    return engine


def _backfill_runbook(url: str) -> str:
    return f"""
    name: fill
    connections:
      app: "{url}"
    steps:
      - id: prepare
        kind: command
        run: "true"
        irreversible: true
      - id: fill
        kind: backfill
        connection: app
        table: items
        key: id
        where: v IS NULL
        update: UPDATE items SET v = id WHERE id BETWEEN :lo AND :hi AND v IS NULL
        batch_size: 10
        min_batch: 10
        max_batch: 20
        throttle: 300ms
        irreversible: true
    """


@pytest.mark.slow
@needs_other_users
def test_set_changes_a_running_backfill_between_batches(checkouts: tuple[Checkout, Checkout], people: tuple[str, ...], pg_url: str) -> None:
    a, b = checkouts
    engine = _items(pg_url, 2000)
    for side in (a, b):
        side.write("fill.yaml", _backfill_runbook(pg_url))
    proc, out = a.spawn("run", "fill.yaml")
    try:
        run_id = ""

        def batches_done() -> bool:
            nonlocal run_id
            run_id = run_id or _run_id(a.state_url, "fill")
            with _store(a.state_url) as store:
                return bool(run_id) and store.load_checkpoint(run_id, "fill") is not None

        wait_for(batches_done, "the backfill's first batch")
        refused = b.runbook("set", run_id, "prepare", "throttle=10ms")
        assert refused.returncode == 2 and "only a running backfill" in refused.stderr, refused.stderr
        unknown = b.runbook("set", run_id, "fill", "batch_size=10")
        assert unknown.returncode == 2 and "expected KEY=VALUE with KEY one of throttle, max_batch" in unknown.stderr
        changed = b.runbook("set", run_id, "fill", "throttle=0ms", "max_batch=500", user="alice")
        assert changed.returncode == 0, changed.stdout + changed.stderr
        # At 300 ms a batch of 10-20 rows, 2,000 rows take over 30 s; once set, well under that.
        assert _finish(proc, timeout=120) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text()
    assert "settings changed: throttle 0ms, max_batch 500" in text
    assert "[throttle 0ms, max_batch 500]" in text  # the progress lines after the change
    with _store(a.state_url) as store:
        (changed_event,) = [e for e in store.events(run_id) if e.event == "setting_changed"]
        assert changed_event.step_id == "fill" and changed_event.detail["by"].startswith("alice@")
        assert changed_event.detail["values"] == {"throttle": 0.0, "max_batch": 500}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM items WHERE v IS NULL")).scalar_one() == 0
    engine.dispose()
    after = b.runbook("set", run_id, "fill", "throttle=1s")
    assert after.returncode == 3 and "not running now" in after.stderr


@pytest.mark.slow
def test_pause_between_backfill_batches_and_continue(checkouts: tuple[Checkout, Checkout], pg_url: str) -> None:
    a, b = checkouts
    engine = _items(pg_url, 200)
    for side in (a, b):
        side.write("fill.yaml", _backfill_runbook(pg_url))
    proc, out = a.spawn("run", "fill.yaml")
    try:
        run_id = ""

        def started() -> bool:
            nonlocal run_id
            run_id = run_id or _run_id(a.state_url, "fill")
            with _store(a.state_url) as store:
                return bool(run_id) and store.load_checkpoint(run_id, "fill") is not None

        wait_for(started, "the backfill's first batch", output=out)
        assert b.runbook("pause", run_id).returncode == 0

        def paused() -> bool:
            with _store(a.state_url) as store:
                return store.get_run(run_id).status == "paused"  # type: ignore[union-attr]

        wait_for(paused, "the backfill to pause", output=out)
        with _store(a.state_url) as store:
            (event,) = [e for e in store.events(run_id) if e.event == "paused"]
            assert event.detail["at"].startswith("between batches of fill")
            assert store.step_states(run_id)["fill"].status == "running"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM items WHERE v IS NULL")).scalar_one() > 0
        assert b.runbook("run", "fill.yaml", "--resume").returncode == 0
        assert _finish(proc, timeout=120) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM items WHERE v IS NULL")).scalar_one() == 0
    engine.dispose()
