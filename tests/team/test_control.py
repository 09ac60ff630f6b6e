"""Live control from another checkout: cancel a running step, pause between steps and
continue with `run --resume`, change a running backfill's throttle and max_batch."""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.process import group_alive
from runbook.state import StateStore
from tests.team.conftest import Checkout, needs_other_users, only_run, run_status, wait_for, write_both

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


@pytest.mark.slow
@needs_other_users
def test_cancel_from_another_checkout_stops_the_step_and_leaves_the_run_resumable(checkouts: tuple[Checkout, Checkout], people: tuple[str, ...]) -> None:
    a, b = checkouts
    write_both(checkouts, "long.yaml", LONG)
    with a.running("run", "long.yaml") as (proc, out):
        wait_for(lambda: (a.root / "started").exists(), "the long step to start")
        run_id = only_run(a.state_url, "long")
        with StateStore.open(a.state_url) as store:
            (pgid,) = [e.detail["pgid"] for e in store.events(run_id) if e.event == "process_started"]
        assert group_alive(pgid)
        cancelled = b.runbook("cancel", run_id, user="bob")
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert proc.wait(timeout=60) == 130, out.read_text()
    assert not group_alive(pgid)
    assert run_status(a.state_url, run_id) == "interrupted"
    with StateStore.open(a.state_url) as store:
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
    write_both(checkouts, "two.yaml", TWO_STEPS)
    with a.running("run", "two.yaml") as (proc, out):
        wait_for(lambda: (a.root / "one.started").exists(), "step one to start")
        run_id = only_run(a.state_url, "two")
        paused = b.runbook("pause", run_id)
        assert paused.returncode == 0, paused.stdout + paused.stderr
        (a.root / "release").touch()
        wait_for(lambda: run_status(a.state_url, run_id) == "paused", "the run to pause", output=out)
        assert proc.poll() is None and not (a.root / "two.done").exists()
        with StateStore.open(a.state_url) as store:
            holder = store.lock_holder("two", "default")
            assert holder is not None and holder.run_id == run_id and holder.pid == proc.pid
        # A new run is refused meanwhile; pausing twice says so.
        assert b.runbook("run", "two.yaml").returncode == 3
        assert b.runbook("pause", run_id).returncode == 2

        resumed = b.runbook("run", "two.yaml", "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert f"asked it to continue" in resumed.stdout
        assert proc.wait(timeout=60) == 0, out.read_text()
    assert (a.root / "two.done").exists() and not (b.root / "two.done").exists()
    text = out.read_text()
    assert "paused between steps by" in text and "continued by" in text
    with StateStore.open(a.state_url) as store:
        names = [e.event for e in store.events(run_id)]
        assert names.index("paused") < names.index("continued")
    assert run_status(a.state_url, run_id) == "passed"


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


def _items_to_fill(checkouts: tuple[Checkout, Checkout], url: str, rows: int) -> sa.Engine:
    """``rows`` items without a value in the database at ``url``, and fill.yaml to fill them in both checkouts."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id int PRIMARY KEY, v int)"))
        conn.execute(sa.text(f"INSERT INTO items (id) SELECT g FROM generate_series(1, {rows}) g"))
    write_both(checkouts, "fill.yaml", _backfill_runbook(url))
    return engine


def _unfilled(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM items WHERE v IS NULL")).scalar_one())


def _wait_for_the_first_batch(checkout: Checkout, out: Path) -> str:
    """Until the running backfill saved its first checkpoint; the run's id."""

    def saved() -> bool:
        with StateStore.open(checkout.state_url) as store:
            runs = store.list_runs("fill")
            return bool(runs) and store.load_checkpoint(runs[0].run_id, "fill") is not None

    wait_for(saved, "the backfill's first batch", output=out)
    return only_run(checkout.state_url, "fill")


@pytest.mark.slow
@needs_other_users
def test_set_changes_a_running_backfill_between_batches(checkouts: tuple[Checkout, Checkout], people: tuple[str, ...], pg_url: str) -> None:
    a, b = checkouts
    engine = _items_to_fill(checkouts, pg_url, 2000)
    with a.running("run", "fill.yaml") as (proc, out):
        run_id = _wait_for_the_first_batch(a, out)
        refused = b.runbook("set", run_id, "prepare", "throttle=10ms")
        assert refused.returncode == 2 and "only a running backfill" in refused.stderr, refused.stderr
        unknown = b.runbook("set", run_id, "fill", "batch_size=10")
        assert unknown.returncode == 2 and "expected KEY=VALUE with KEY one of throttle, max_batch" in unknown.stderr
        changed = b.runbook("set", run_id, "fill", "throttle=0ms", "max_batch=500", user="alice")
        assert changed.returncode == 0, changed.stdout + changed.stderr
        # At 300 ms a batch of 10-20 rows, 2,000 rows take over 30 s; once set, well under that.
        assert proc.wait(timeout=120) == 0, out.read_text()
    text = out.read_text()
    assert "settings changed: throttle 0ms, max_batch 500" in text
    assert "[throttle 0ms, max_batch 500]" in text  # the progress lines after the change
    with StateStore.open(a.state_url) as store:
        (changed_event,) = [e for e in store.events(run_id) if e.event == "setting_changed"]
        assert changed_event.step_id == "fill" and changed_event.detail["by"].startswith("alice@")
        assert changed_event.detail["values"] == {"throttle": 0.0, "max_batch": 500}
    assert _unfilled(engine) == 0
    engine.dispose()
    after = b.runbook("set", run_id, "fill", "throttle=1s")
    assert after.returncode == 3 and "not running now" in after.stderr


@pytest.mark.slow
def test_pause_between_backfill_batches_and_continue(checkouts: tuple[Checkout, Checkout], pg_url: str) -> None:
    a, b = checkouts
    # 600 rows: at least 30 batches 300 ms apart, time enough for `runbook pause` to start and
    # land on a loaded machine (with 200 rows, about 3 s, the test failed once under load).
    engine = _items_to_fill(checkouts, pg_url, 600)
    with a.running("run", "fill.yaml") as (proc, out):
        run_id = _wait_for_the_first_batch(a, out)
        assert b.runbook("pause", run_id).returncode == 0
        wait_for(lambda: run_status(a.state_url, run_id) == "paused", "the backfill to pause", output=out)
        with StateStore.open(a.state_url) as store:
            (event,) = [e for e in store.events(run_id) if e.event == "paused"]
            assert event.detail["at"].startswith("between batches of fill")
            assert store.step_states(run_id)["fill"].status == "running"
        assert _unfilled(engine) > 0
        assert b.runbook("run", "fill.yaml", "--resume").returncode == 0
        assert proc.wait(timeout=120) == 0, out.read_text()
    assert _unfilled(engine) == 0
    engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["running", "paused"])
def test_a_run_whose_process_was_killed_says_so_with_the_exact_resume_command(checkouts: tuple[Checkout, Checkout], when: str) -> None:
    """A run recorded as running or paused whose process was killed (SIGKILL: it never
    records its end) is shown interrupted by status, show and history, saying the process
    that ran it is gone and printing the command that resumes it (``status_note`` and
    ``resume_command`` in JSON); that command, run as printed from the other checkout,
    finishes the run."""
    a, b = checkouts
    write_both(checkouts, "two.yaml", TWO_STEPS)
    with a.running("run", "two.yaml") as (proc, out):
        wait_for(lambda: (a.root / "one.started").exists(), "step one to start")
        run_id = only_run(a.state_url, "two")
        if when == "paused":
            assert b.runbook("pause", run_id).returncode == 0
            (a.root / "release").touch()
            wait_for(lambda: run_status(a.state_url, run_id) == "paused", "the run to pause", output=out)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert run_status(a.state_url, run_id) == when  # the record is left as it was
    (a.root / "release").touch()
    (b.root / "release").touch()
    command = f"runbook run --resume {run_id}"
    for args in (("status",), ("show", run_id)):
        shown = a.runbook(*args)
        assert shown.returncode == 0, shown.stderr
        assert "status: interrupted" in shown.stdout, shown.stdout
        assert f"recorded as {when}, but the process that ran it is gone" in shown.stdout, shown.stdout
        assert f"resume it (from any machine sharing the state store): {command}" in shown.stdout, shown.stdout
    document = json.loads(b.runbook("status", run_id, "--format", "json").stdout)["run"]
    assert (document["status"], document["recorded_status"]) == ("interrupted", when)
    assert "the process that ran it is gone" in document["status_note"]
    assert document["resume_command"] == command
    history = json.loads(b.runbook("history", "--format", "json").stdout)["runs"][0]
    assert (history["status"], history["resume_command"]) == ("interrupted", command)
    # The command as printed, from the other checkout (no runbook named on it).
    resumed = b.runbook(*shlex.split(command)[1:])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(a.state_url, run_id) == "passed"
    # The run's own runbook file, which this user can read: its steps run in its project (A).
    assert (a.root / "two.done").exists()
    finished = json.loads(b.runbook("status", run_id, "--format", "json").stdout)["run"]
    assert finished["resume_command"] is None and finished["status_note"] is None
