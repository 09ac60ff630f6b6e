"""Crash recovery with SIGKILL, and the one-run-per-environment lock, with real processes."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.engine.conftest import Project, counter_step

SLOW = "name: crash\nsteps:" + "".join(counter_step(f"s{i}") for i in range(3)) + """
  - id: slow
    kind: command
    run: "echo started >> counters/slow_started; touch slow.running; sleep 30; echo ran >> counters/slow"
    irreversible: true
""" + "".join(counter_step(f"t{i}") for i in range(2))


def _wait_for(path: os.PathLike[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


def test_sigkill_mid_step_then_resume_reruns_interrupted_step_only(project: Project) -> None:
    """SIGKILL of the runbook process inside a step: --resume re-runs that step; passed steps ran once."""
    project.write("crash.yaml", SLOW)
    proc = project.spawn("run", "crash.yaml")
    _wait_for(project.root / "slow.running")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    project.write("crash.yaml", SLOW)  # same definition
    # the orphaned sleep of the killed run keeps going; the resumed step runs anew
    fast = SLOW.replace("sleep 30; ", "")
    project.write("crash.yaml", fast)
    result = project.runbook("run", "crash.yaml", "--resume", "--accept-changes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "interrupted" in result.stdout
    assert [project.count(f"s{i}") for i in range(3)] == [1, 1, 1]
    assert project.count("slow") == 1
    assert [project.count(f"t{i}") for i in range(2)] == [1, 1]


@pytest.mark.parametrize("boundary", [1, 2, 3])
def test_sigkill_at_step_boundaries(sqlite_project: Project, boundary: int) -> None:
    """SIGKILL right after step N finished: --resume runs each remaining step once, none twice."""
    steps = "".join(
        f"""
  - id: s{i}
    kind: command
    run: "echo ran >> counters/s{i}{'; test -f killed || { touch killed; kill -9 $PPID; }' if i == boundary else ''}"
    irreversible: true
"""
        for i in range(5)
    )
    sqlite_project.write("b.yaml", "name: b\nsteps:" + steps)
    proc = sqlite_project.spawn("run", "b.yaml")
    # the step kills its parent (the runbook process) from inside: the harshest boundary
    proc.wait(20)
    counts_before = [sqlite_project.count(f"s{i}") for i in range(5)]
    assert counts_before[boundary + 1 :] == [0] * (4 - boundary)
    result = sqlite_project.runbook("run", "b.yaml", "--resume", "--accept-changes")
    assert result.returncode == 0, result.stdout + result.stderr
    counts = [sqlite_project.count(f"s{i}") for i in range(5)]
    assert counts[:boundary] == [1] * boundary
    assert counts[boundary] in (1, 2)  # the interrupted step itself is re-run (documented: at-least-once)
    assert counts[boundary + 1 :] == [1] * (4 - boundary)


@pytest.mark.slow
def test_eight_concurrent_runs_exactly_one_proceeds(project: Project) -> None:
    """8 processes start the same runbook and env at once: one runs, the others exit 3 naming the holder."""
    # The winner holds the lock until the test releases it, so a process that starts late
    # (8 interpreters on 2 cores) still finds the lock held rather than free again.
    project.write("l.yaml", """
        name: l
        steps:
          - id: only_once
            kind: command
            run: "while [ ! -f release ]; do sleep 0.05; done; echo ran >> counters/only_once"
            irreversible: true
            timeout: 120s
    """)
    procs = [project.spawn("run", "l.yaml") for _ in range(8)]
    deadline = time.monotonic() + 90
    while sum(p.poll() is not None for p in procs) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    (project.root / "release").write_text("")
    results = [(p.wait(60), p.stdout.read() + p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0] + [3] * 7, results
    refused = next(out for code, out in results if code == 3)
    assert "pid" in refused and "locked by run" in refused
    assert project.count("only_once") == 1


def test_different_environments_run_side_by_side(sqlite_project: Project) -> None:
    """Locks are per environment: staging and production run at the same time."""
    sqlite_project.write("e.yaml", """
        name: e
        environments: {staging: {}, production: {}}
        steps:
          - id: work
            kind: command
            run: "sleep 1; echo ran >> counters/work"
            irreversible: true
    """)
    procs = [sqlite_project.spawn("run", "e.yaml", "--env", env) for env in ("staging", "production")]
    assert [p.wait(30) for p in procs] == [0, 0]
    assert sqlite_project.count("work") == 2


def test_stale_lock_of_killed_holder_is_taken_over_and_unlock_is_audited(sqlite_project: Project) -> None:
    """A SIGKILLed holder's lock is stale (same host, pid gone) and taken over; unlock --force is recorded."""
    sqlite_project.write("crash.yaml", SLOW)
    proc = sqlite_project.spawn("run", "crash.yaml")
    _wait_for(sqlite_project.root / "slow.running")
    held = sqlite_project.runbook("run", "crash.yaml")
    assert held.returncode == 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    unlocked = sqlite_project.runbook("unlock", "crash.yaml", "--force")
    assert unlocked.returncode == 0, unlocked.stderr
    assert "broken" in unlocked.stdout
    run_id = sqlite_project.runbook("history").stdout.splitlines()[1].split()[0]
    events = sqlite_project.runbook("show", run_id, "--events").stdout
    assert "lock_broken" in events


def test_sigterm_stops_the_step_and_exits_143(sqlite_project: Project) -> None:
    """SIGTERM to the runbook process stops the step's process group and marks the run interrupted (exit 128+15)."""
    sqlite_project.write("crash.yaml", SLOW)
    proc = sqlite_project.spawn("run", "crash.yaml")
    _wait_for(sqlite_project.root / "slow.running")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 143
    status = sqlite_project.runbook("status").stdout
    assert "interrupted" in status
