"""One active run per (runbook, environment), with real processes on SQLite and PostgreSQL.

tests/engine/test_crash_and_lock.py has the basics (8 runs started one after the
other, two environments, unlock --force shows in the events). These go further:
a start gate releases 8 fully imported processes at the same instant on a fresh
store; refusals must name the holder exactly; environments are shown to hold
their locks at the same time; a live holder is never taken over whatever its
heartbeat says; another host's lock only after LOCK_STALE_AFTER of silence; a
holder whose lock was broken stops before its next step, and its exit leaves the
new holder's lock alone; a takeover stops what the dead holder left running.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.state import LOCK_STALE_AFTER
from runbook.state.locks import process_start_ticks
from runbook.state.schema import events, locks, step_attempts
from tests.reliability.conftest import Live, Proj, sqlite_state_url
from tests.state.store_tables import store_engine

HOST = socket.gethostname()
USER = getpass.getuser()

# Everything imported before the gate opens, so the 8 processes reach the lock together.
LAUNCHER = r"""
import sys, time
from pathlib import Path
import runbook.cli, runbook.commands, runbook.engine, runbook.loader, runbook.planner, runbook.state
import runbook.steps.command, sqlalchemy
ready, gate = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not gate.exists():
    time.sleep(0.0005)
sys.argv = ["runbook", *sys.argv[3:]]
runbook.cli.main()
"""

HOLD = """
name: {name}
environments: {{a: {{}}, b: {{}}, c: {{}}}}
steps:
  - id: hold
    kind: command
    run: "echo ran >> counters/{{{{ environment }}}}.{{{{ run.id }}}}; touch held.{{{{ environment }}}}; while [ ! -e release ]; do sleep 0.02; done"
    irreversible: true
    timeout: 90s
  - id: after
    kind: command
    run: "echo ran >> counters/after.{{{{ run.id }}}}"
    irreversible: true
"""


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _url(proj: Proj) -> str:
    return proj.state_url or sqlite_state_url(proj.root)


def _set_lock(proj: Proj, runbook: str, env: str, **values: object) -> None:
    """Write the lock row behind the store's back (insert or update)."""
    engine = store_engine(_url(proj))
    try:
        with engine.begin() as conn:
            where = sa.and_(locks.c.runbook == runbook, locks.c.env == env)
            if conn.execute(sa.select(locks.c.run_id).where(where)).first() is None:
                conn.execute(sa.insert(locks).values(runbook=runbook, env=env, **values))
            else:
                conn.execute(sa.update(locks).where(where).values(**values))
    finally:
        engine.dispose()


def _write(proj: Proj, statement: sa.Executable) -> None:
    """Change the store behind its back."""
    engine = store_engine(_url(proj))
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    finally:
        engine.dispose()


def _holder_pattern(run_id: str, pid: int, host: str = HOST, actor: str = f"{USER}@{HOST}") -> re.Pattern[str]:
    return re.compile(
        rf"locked by run {re.escape(run_id)} \({re.escape(actor)}, pid {pid} on {re.escape(host)}, "
        r"since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)"
    )


@pytest.mark.slow
def test_simultaneous_start_exactly_one_runs_the_others_name_the_holder(proj: Proj) -> None:
    """8 processes, imports done, released by one gate on a fresh store (first open races
    too): exactly one runs; the 7 others exit 3 naming the holder's run id, user, host,
    pid and start time; only one run is recorded and the step ran once."""
    proj.write("l.yaml", HOLD.format(name="l"))
    procs, ready = [], []
    for i in range(8):
        ready.append(proj.root / f"ready.{i}")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(ready[-1]), str(proj.root / "gate"), "run", "l.yaml", "--env", "a"],
                cwd=proj.root, env=proj.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    try:
        for path in ready:
            _wait_for(path)
        before_gate = datetime.now(UTC).replace(microsecond=0)
        (proj.root / "gate").touch()
        _wait_for(proj.root / "held.a")
        # The holder waits in its step until every other process has exited: no late starter can find the lock free.
        losers = {}
        deadline = time.monotonic() + 60
        while len(losers) < 7:
            for p in procs:
                if p.pid not in losers and p.poll() is not None:
                    losers[p.pid] = (p.returncode, p.communicate()[1])
            assert time.monotonic() < deadline, f"only {len(losers)} processes ended"
            time.sleep(0.02)
    finally:
        (proj.root / "release").touch()
    (winner,) = [p for p in procs if p.pid not in losers]
    assert winner.wait(60) == 0, winner.communicate()
    with proj.store() as store:
        runs = store.list_runs("l")
        assert len(runs) == 1
        events = store.events(runs[0].run_id)
    run = runs[0]
    assert run.pid == winner.pid and run.status == "passed"
    for code, stderr in losers.values():
        assert code == 3, stderr
        match = _holder_pattern(run.run_id, winner.pid).search(stderr)
        assert match, stderr
        since = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        # The holder's lock was taken after the gate opened and no later than its run started (to the second).
        assert before_gate <= since <= run.started_at, (before_gate, since, run.started_at)
        assert "Traceback" not in stderr
    assert not [e for e in events if e.event == "lock_taken_over"]
    assert len(list((proj.root / "counters").glob("a.*"))) == 1


def test_environments_hold_their_locks_side_by_side(proj: Proj) -> None:
    """Three environments of one runbook hold their locks at the same time (all three are
    inside their step together); a second run in one of them meanwhile is refused."""
    proj.write("e.yaml", HOLD.format(name="e"))
    lives = {env: proj.spawn("run", "e.yaml", "--env", env) for env in "abc"}
    try:
        for env in "abc":
            _wait_for(proj.root / f"held.{env}")
        with proj.store() as store:
            holders = {env: store.lock_holder("e", env) for env in "abc"}
        assert all(h is not None for h in holders.values())
        assert len({h.run_id for h in holders.values() if h}) == 3
        assert {h.pid for h in holders.values() if h} == {live.pid for live in lives.values()}
        second = proj.runbook("run", "e.yaml", "--env", "b")
        assert second.returncode == 3
        holder_b = holders["b"]
        assert holder_b is not None and _holder_pattern(holder_b.run_id, lives["b"].pid).search(second.stderr), second.stderr
    finally:
        (proj.root / "release").touch()
    assert [lives[env].wait() for env in "abc"] == [0, 0, 0]


def test_live_holder_is_never_taken_over(sqlite_proj: Proj) -> None:
    """The same-host rule looks at the process, not the heartbeat: a live holder whose
    heartbeat is a day old keeps its lock against a new run and against --resume of its
    own run, and finishes normally."""
    proj = sqlite_proj
    proj.write("h.yaml", HOLD.format(name="h"))
    holder = proj.spawn("run", "h.yaml", "--env", "a")
    try:
        _wait_for(proj.root / "held.a")
        day_ago = datetime.now(UTC) - timedelta(days=1)
        _set_lock(proj, "h", "a", heartbeat_at=day_ago, acquired_at=day_ago)
        for args in (("run", "h.yaml", "--env", "a"), ("run", "h.yaml", "--env", "a", "--resume")):
            refused = proj.runbook(*args)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert f"pid {holder.pid} on {HOST}" in refused.stderr
    finally:
        (proj.root / "release").touch()
    assert holder.wait() == 0, holder.stdout[-2000:] + holder.stderr
    with proj.store() as store:
        (run,) = store.list_runs("h")
        assert not [e for e in store.events(run.run_id) if e.event == "lock_taken_over"]
        assert store.lock_holder("h", "a") is None


def test_lock_of_a_dead_local_pid_is_taken_over_at_once_a_reused_pid_too(sqlite_proj: Proj) -> None:
    """Same host: a lock whose pid is gone is taken over without waiting for any heartbeat
    deadline; so is one whose pid is alive but started at another time (a reused pid)."""
    proj = sqlite_proj
    proj.write("d.yaml", "name: d\nsteps:\n  - id: one\n    kind: command\n    run: echo ran >> counters/one\n    irreversible: true\n")
    proj.store().close()
    gone = subprocess.Popen(["true"])
    gone.wait()
    now = datetime.now(UTC)
    cases = [
        ("dead", gone.pid, None, f"process {gone.pid} on {HOST} is gone"),
        ("reused", os.getpid(), (process_start_ticks(os.getpid()) or 0) + 1, f"process {os.getpid()} on {HOST} is gone"),
    ]
    for run_id, pid, started, reason in cases:
        _set_lock(
            proj, "d", "default", run_id=run_id, actor=f"{USER}@{HOST}", host=HOST, pid=pid, pid_started=started,
            acquired_at=now, heartbeat_at=now,
        )
        result = proj.runbook("run", "d.yaml")
        assert result.returncode == 0, result.stdout + result.stderr
        with proj.store() as store:
            latest = store.latest_run("d", "default")
            assert latest is not None
            (event,) = [e for e in store.events(latest.run_id) if e.event == "lock_taken_over"]
        assert event.detail["previous"]["run_id"] == run_id and event.detail["reason"] == reason


def test_other_hosts_lock_is_taken_over_only_after_lock_stale_after(proj: Proj) -> None:
    """A lock row written for another machine (fake host; its pid means nothing here) is
    respected while its heartbeat is younger than LOCK_STALE_AFTER, and taken over, with
    the reason recorded, once it is older."""
    proj.write("r.yaml", "name: r\nsteps:\n  - id: one\n    kind: command\n    run: echo ran >> counters/one\n    irreversible: true\n")
    proj.store().close()
    remote_host, actor = "build-07.example.net", "bob@build-07.example.net"
    acquired = datetime.now(UTC) - timedelta(hours=1)

    def remote_lock(silent_for: float) -> None:
        _set_lock(
            proj, "r", "default", run_id="20250101-000000-beef", actor=actor, host=remote_host, pid=999_999_9,
            pid_started=None, acquired_at=acquired, heartbeat_at=datetime.now(UTC) - timedelta(seconds=silent_for),
        )

    remote_lock(LOCK_STALE_AFTER - 15)
    refused = proj.runbook("run", "r.yaml")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert _holder_pattern("20250101-000000-beef", 999_999_9, remote_host, actor).search(refused.stderr), refused.stderr
    assert proj.count("one") == 0

    remote_lock(LOCK_STALE_AFTER + 15)
    taken = proj.runbook("run", "r.yaml")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert proj.count("one") == 1
    with proj.store() as store:
        latest = store.latest_run("r", "default")
        assert latest is not None
        (event,) = [e for e in store.events(latest.run_id) if e.event == "lock_taken_over"]
    assert event.detail["previous"]["host"] == remote_host
    assert re.fullmatch(rf"no heartbeat from {re.escape(remote_host)} for 1[34]\d s", event.detail["reason"])


def _finish(*lives: Live | None) -> None:
    """SIGKILL whatever a failed test left running (a passed test has already waited for them)."""
    for live in lives:
        if live is not None and live.proc.poll() is None:
            live.kill()


@pytest.mark.slow
def test_unlock_force_is_audited_and_the_broken_holder_stops_before_its_next_step(proj: Proj) -> None:
    """`unlock --force` while the holder's step runs: the break is an event on the holder's
    run naming who broke it and whom. While the old holder's step still runs, `--resume`
    of its run exits 3 saying that process is alive, and its command is not touched (it
    used to be killed, "process N is gone", and the step run again: issue 11 item 3); a
    plain run exits 3 too, the run owning the environment. The old holder finishes that
    step, then stops before its next one (exit 3, run `refused`) without waiting for a
    heartbeat; a resume then runs the rest. Every step ran once."""
    proj.write("u.yaml", HOLD.format(name="u"))
    first = proj.spawn("run", "u.yaml", "--env", "a")
    others: list[Live] = []
    try:
        _wait_for(proj.root / "held.a")
        with proj.store() as store:
            (old,) = store.list_runs("u")
        unlocked = proj.runbook("unlock", "u.yaml", "--env", "a", "--force")
        assert unlocked.returncode == 0, unlocked.stderr
        assert f"held by run {old.run_id}" in unlocked.stdout
        with proj.store() as store:
            (event,) = [e for e in store.events(old.run_id) if e.event == "lock_broken"]
        assert event.detail["by"] == f"{USER}@{HOST}"
        assert event.detail["holder"]["run_id"] == old.run_id and event.detail["holder"]["pid"] == first.pid
        assert event.detail["holder"]["host"] == HOST
        others.append(proj.spawn("run", "u.yaml", "--env", "a", "--resume"))
        assert others[-1].wait(60) == 3, others[-1].stdout + others[-1].stderr
        assert f"is still being run by process {first.pid} on {HOST}, which is alive" in others[-1].stderr
        others.append(proj.spawn("run", "u.yaml", "--env", "a"))
        assert others[-1].wait(60) == 3, others[-1].stdout + others[-1].stderr
        assert f"run {old.run_id} (running, started by" in others[-1].stderr and "owns the environment" in others[-1].stderr
        assert first.proc.poll() is None and (proj.root / "held.a").exists()
        with proj.store() as store:
            assert store.lock_holder("u", "a") is None  # the refusals released what they took
            assert store.step_states(old.run_id)["hold"].status == "running"
            assert not [e for e in store.events(old.run_id) if e.event == "leftover_stopped"]
    finally:
        (proj.root / "release").touch()
    try:
        assert first.wait(60) == 3, first.stdout[-2000:] + first.stderr
        assert "no longer holds the lock" in first.stderr
        with proj.store() as store:
            run = store.get_run(old.run_id)
            assert run is not None and run.status == "refused"
            assert store.step_states(old.run_id)["hold"].status == "passed"
        assert proj.count(f"after.{old.run_id}") == 0
        resumed = proj.runbook("run", "u.yaml", "--env", "a", "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert proj.count(f"a.{old.run_id}") == 1 and proj.count(f"after.{old.run_id}") == 1
        assert len(list((proj.root / "counters").glob("a.*"))) == 1
    finally:
        _finish(first, *others)


FENCE = """
name: f
steps:
  - id: s1
    kind: command
    run: echo ran >> counters/s1
    irreversible: true
  - id: s2
    kind: command
    preconditions:
      # Only the first process (HOLD_A set) waits here, past its check before the step
      # and before its attempt starts: the moment a broken holder is most dangerous.
      - check: command
        run: 'if [ -n "$HOLD_A" ]; then touch a.waiting; while [ ! -e go-a ]; do sleep 0.02; done; fi'
        timeout: 90s
    run: echo ran >> counters/s2
    irreversible: true
  - id: s3
    kind: command
    run: "echo ran >> counters/s3; touch s3.running; while [ ! -e go-b ]; do sleep 0.02; done"
    irreversible: true
    timeout: 90s
  - id: s4
    kind: command
    run: echo ran >> counters/s4
    irreversible: true
"""


@pytest.mark.slow
def test_resume_after_unlock_force_keeps_its_lock_against_the_old_holder(proj: Proj) -> None:
    """The old holder waits between steps (in a precondition of s2) when its lock is broken
    and its run resumed by another process, which holds the same run id. The old holder
    then starts no attempt (the store checks its owner token when recording one) and exits
    3; its exit does not delete the new holder's lock (release matches the token, not the
    run id), so a third plain run is refused naming the resumer; every step ran once."""
    proj.write("f.yaml", FENCE)
    first = proj.spawn("run", "f.yaml", env={"HOLD_A": "1"})
    resumer: Live | None = None
    try:
        _wait_for(proj.root / "a.waiting")
        assert proj.runbook("unlock", "f.yaml", "--force").returncode == 0
        resumer = proj.spawn("run", "f.yaml", "--resume")
        _wait_for(proj.root / "s3.running")
        (proj.root / "go-a").touch()
        assert first.wait(60) == 3, first.stdout[-2000:] + first.stderr
        assert "no longer holds the lock" in first.stderr
        with proj.store() as store:
            (run,) = store.list_runs("f")
            holder = store.lock_holder("f", "default")
            assert holder is not None and holder.pid == resumer.pid and holder.run_id == run.run_id
            assert store.get_run(run.run_id).status == "running"  # type: ignore[union-attr]
        third = proj.runbook("run", "f.yaml")
        assert third.returncode == 3, third.stdout + third.stderr
        assert _holder_pattern(run.run_id, resumer.pid).search(third.stderr), third.stderr
        (proj.root / "go-b").touch()
        assert resumer.wait(60) == 0, resumer.stdout[-2000:] + resumer.stderr
    finally:
        for name in ("go-a", "go-b"):
            (proj.root / name).touch()
        _finish(first, resumer)
    assert [proj.count(s) for s in ("s1", "s2", "s3", "s4")] == [1, 1, 1, 1]
    with proj.store() as store:
        assert store.get_run(run.run_id).status == "passed"  # type: ignore[union-attr]
        assert store.lock_holder("f", "default") is None


KILLED = """
name: k
steps:
  - id: slow
    kind: command
    # The end marker is written when the command ends, whether it runs out or is stopped.
    # Output goes nowhere: the killed run's pipe has no reader, and the shell's report of
    # the stopped sleep would SIGPIPE it before its trap wrote the marker. The nap is long
    # for the killed run's copy (it must still run when the next run takes over) and short
    # for the next one.
    run: "exec >/dev/null 2>&1; trap 'echo end $$ >> marks; exit 143' TERM; echo start $$ >> marks; sleep $(cat nap) & wait $!; echo end $$ >> marks"
    irreversible: true
    timeout: 120s
"""


@pytest.mark.slow
def test_takeover_of_a_killed_holder_stops_its_step_before_running_it_again(proj: Proj) -> None:
    """SIGKILL of the holder mid-step. A plain new run is refused (the killed run owns the
    environment) and leaves its command alone; once the killed run is abandoned, a plain
    new run on the same host takes the dead holder's lock over and stops the command the
    killed run left behind before its own copy starts (marks: start A, end A, start B,
    end B; it used to be start A, start B, end A, end B: issue 11 item 4). The killed
    run's attempt is marked interrupted."""
    proj.write("k.yaml", KILLED)
    marks, nap = proj.root / "marks", proj.root / "nap"
    nap.write_text("60\n")
    first = proj.spawn("run", "k.yaml")
    try:
        _wait_for(marks)
        # Mid-step: the command runs and its process group is recorded (a kill in the
        # instant between the fork and that record leaves a group nobody knows of).
        deadline = time.monotonic() + 30
        with proj.store() as store:
            (old,) = store.list_runs("k")
            while not [e for e in store.events(old.run_id) if e.event == "process_started"]:
                assert time.monotonic() < deadline, "the step's process group was never recorded"
                time.sleep(0.01)
        assert first.kill() == -9
        nap.write_text("0.2\n")
        owned = proj.runbook("run", "k.yaml")
        assert owned.returncode == 3 and "owns the environment" in owned.stderr, owned.stdout + owned.stderr
        assert len(marks.read_text().splitlines()) == 1  # the refused run stopped nothing
        abandoned = proj.runbook("abandon", old.run_id, "--reason", "killed; starting over")
        assert abandoned.returncode == 0, abandoned.stdout + abandoned.stderr
        second = proj.runbook("run", "k.yaml")
        assert second.returncode == 0, second.stdout + second.stderr
    finally:
        _finish(first)
    lines = [line.split() for line in marks.read_text().splitlines()]
    assert [word for word, _ in lines] == ["start", "end", "start", "end"], lines
    assert lines[0][1] == lines[1][1] and lines[2][1] == lines[3][1] != lines[0][1]
    assert "left running by the killed run" in second.stdout
    with proj.store() as store:
        new = store.latest_run("k", "default")
        assert new is not None and new.run_id != old.run_id and new.status == "passed"
        # The refused run took the dead holder's lock over (and gave it back): not this one.
        (stopped,) = [e for e in store.events(new.run_id) if e.event == "leftover_stopped"]
        assert stopped.step_id == "slow" and stopped.detail["run"] == old.run_id and stopped.detail["attempt"] == 1
        assert store.step_states(old.run_id)["slow"].status == "interrupted"
        assert store.get_run(old.run_id).status == "abandoned"  # type: ignore[union-attr]


@pytest.mark.slow
def test_takeover_from_another_host_waits_for_the_recorded_deadline_or_refuses(proj: Proj) -> None:
    """A stale lock of another host whose run left a command running there (its process
    group cannot be signalled from here): its `--resume` is refused while that command's
    recorded deadline (its timeout + kill grace) is more than WAIT_LIMIT away, saying until
    when; refused when it had no timeout; once the deadline is near, it waits for it and
    says so, then runs the step again (on SQLite: the waiting is the engine's, the same on either store)."""
    proj.write("r.yaml", "name: r\nsteps:\n  - id: one\n    kind: command\n    run: echo ran >> counters/one\n    irreversible: true\n")
    remote = "build-07.example.net"
    with proj.store() as store:
        run_id = store.create_run(runbook="r", env="default", path="r.yaml", fingerprint="f", dry_run=False, actor="bob", params={})
        attempt = store.start_attempt(run_id, "one", fingerprint="f")
    stale = datetime.now(UTC) - timedelta(seconds=LOCK_STALE_AFTER + 15)
    _set_lock(proj, "r", "default", run_id=run_id, actor=f"bob@{remote}", host=remote, pid=4242, pid_started=None, acquired_at=stale, heartbeat_at=stale)
    _write(proj, sa.update(step_attempts).values(host=remote, pid=4242, pid_started=None))

    def started(deadline: datetime | None) -> None:
        with proj.store() as store:
            store.append_event(run_id, "process_started", step_id="one", detail={
                "pgid": 4242, "host": remote, "attempt": attempt, "deadline": deadline.isoformat() if deadline else None,
            })

    started(datetime.now(UTC) + timedelta(minutes=10))
    far = proj.runbook("run", "r.yaml", "--resume")
    assert far.returncode == 3, far.stdout + far.stderr
    assert re.search(rf"may still be running on {re.escape(remote)} \(process group 4242\) until \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC", far.stderr), far.stderr
    started(None)
    unbounded = proj.runbook("run", "r.yaml", "--resume")
    assert unbounded.returncode == 3 and "which has no timeout" in unbounded.stderr, unbounded.stderr
    assert proj.count("one") == 0
    if proj.backend == "postgresql":
        # Waiting out the deadline is the engine's (leftovers.py), the same on either store, and
        # costs 8 s of real time: once, on SQLite; the refusals above read PostgreSQL's records.
        return
    _write(proj, sa.delete(events).where(events.c.event == "process_started"))
    # Far enough ahead that the new process is still short of it when it looks.
    started(datetime.now(UTC) + timedelta(seconds=8))
    near = proj.runbook("run", "r.yaml", "--resume")
    assert near.returncode == 0, near.stdout + near.stderr
    assert re.search(rf"waiting \d+ s until .* on {re.escape(remote)} \(process group 4242\) has reached its timeout", near.stdout), near.stdout
    assert proj.count("one") == 1
    with proj.store() as store:
        assert [(a.attempt, a.status) for a in store.attempts(run_id, "one")] == [(1, "interrupted"), (2, "passed")]
        assert store.get_run(run_id).status == "passed"  # type: ignore[union-attr]
