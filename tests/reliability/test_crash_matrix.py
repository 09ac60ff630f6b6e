"""Crash matrix: SIGKILL the `runbook` process at every step boundary, at random
instants inside steps and in the middle of state-store writes; then --resume.

Real processes, real SIGKILL, real SQLite and PostgreSQL (docs/reliability.md,
"Crashes", describes the matrix and its outcomes). Steps append a line to a
counter file, so a count is how often a side effect happened. The contract:

* a step that passed never runs again (its side effect happened exactly once);
* the step that was running when the process died is re-run (at-least-once);
* the store always opens, --resume always completes, the run ends ``passed``.
"""

from __future__ import annotations

from runbook import identity
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runbook.process import group_alive
import sqlalchemy as sa

from runbook.state import StateStore
from tests.conftest import stop_demo_server
from tests.reliability.conftest import Live, Proj, sqlite_state_url, timing

if TYPE_CHECKING:
    from tests.conftest import SeededDemoDatabases

STEPS = 20  # state-write kills: enough steps that a run outlives a few kills
BOUNDARY_STEPS = 8  # each boundary kill is the same transition: 8 cover both kinds several times
INSIDE_STEPS = 10
SEED = int(os.environ.get("RUNBOOK_CRASH_SEED", "20251029"))


def _sid(i: int) -> str:
    return f"s{i:02d}"


def _runbook(name: str, commands: list[str], extra: str = "") -> str:
    body = "".join(
        f"  - id: {_sid(i)}\n    kind: command\n    run: {json.dumps(command)}\n    irreversible: true\n{extra}"
        for i, command in enumerate(commands)
    )
    return f"name: {name}\nsteps:\n{body}"


def assert_attempt_history(store: StateStore, run_id: str, steps: int) -> dict[str, int]:
    """Every step: attempts numbered 1..n, all interrupted but the last, which passed.

    Returns the number of attempts per step. A step that passed is never attempted
    again, and nothing is left 'running'.
    """
    run = store.get_run(run_id)
    assert run is not None and run.status == "passed", run
    attempts: dict[str, list[tuple[int, str]]] = {}
    for a in store.attempts(run_id):
        assert a.kind == "step"
        assert (a.finished_at is None) == (a.status == "running"), a
        attempts.setdefault(a.step_id, []).append((a.attempt, a.status))
    assert sorted(attempts) == [_sid(i) for i in range(steps)]
    for step_id, history in attempts.items():
        numbers = sorted(n for n, _ in history)
        assert numbers == list(range(1, len(numbers) + 1)), (step_id, history)
        statuses = [status for _, status in sorted(history)]
        assert statuses[-1] == "passed" and set(statuses[:-1]) <= {"interrupted"}, (step_id, statuses)
    return {step_id: len(history) for step_id, history in attempts.items()}


def _resumable(proj: Proj, name: str) -> bool:
    with proj.store() as store:
        return store.latest_run(name, "default", unfinished=True) is not None


# --------------------------------------------------------------------- boundaries


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_sigkill_at_every_step_boundary(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """8 steps, 8 SIGKILLs: each step kills the runbook process once, either before its
    side effect (the boundary right after the previous step passed) or right after it
    (the step's work is done, its success not yet recorded). Each kill is followed by
    --resume. The store shows the killed step 'running' (journalled before acting);
    passed steps never run again; the killed step re-runs: once in all if it was
    killed before its side effect, twice if after (at-least-once)."""
    proj = Proj(tmp_path, request.getfixturevalue("pg_url") if backend == "postgresql" else None)
    (tmp_path / "counters").mkdir()
    (tmp_path / "kills").mkdir()
    rng = random.Random(SEED)
    modes = ["before", "after"] * (BOUNDARY_STEPS // 2)
    rng.shuffle(modes)
    commands = []
    for i, mode in enumerate(modes):
        effect = f"echo ran >> counters/{_sid(i)}"
        kill = f"test -e kills/{_sid(i)} || {{ touch kills/{_sid(i)}; kill -9 $PPID; exit 0; }}"
        commands.append(f"{kill}; {effect}" if mode == "before" else f"{effect}; {kill}")
    proj.write("chain.yaml", _runbook("chain", commands))
    expected = [1 if mode == "before" else 2 for mode in modes]

    started = time.monotonic()
    live = proj.spawn("run", "chain.yaml")
    for i in range(BOUNDARY_STEPS):
        assert live.wait() == -9, live.stdout[-2000:] + live.stderr
        assert "Traceback" not in live.stderr
        with proj.store() as store:
            run = store.latest_run("chain", "default", unfinished=True)
            assert run is not None and run.status == "running"
            states = store.step_states(run.run_id)
        assert states[_sid(i)].status == "running"  # journalled before the command ran
        assert all(states[_sid(j)].status == "passed" for j in range(i))
        assert all(_sid(j) not in states for j in range(i + 1, BOUNDARY_STEPS))
        assert [proj.count(_sid(j)) for j in range(i)] == expected[:i]
        assert proj.count(_sid(i)) == (0 if modes[i] == "before" else 1)
        assert all(proj.count(_sid(j)) == 0 for j in range(i + 1, BOUNDARY_STEPS))
        live = proj.spawn("run", "chain.yaml", "--resume")
    assert live.wait() == 0, live.stdout[-3000:] + live.stderr
    timing(f"{BOUNDARY_STEPS} boundary kills + resumes ({backend})", time.monotonic() - started)

    assert [proj.count(_sid(i)) for i in range(BOUNDARY_STEPS)] == expected
    with proj.store() as store:
        run = store.latest_run("chain", "default")
        assert run is not None
        assert set(assert_attempt_history(store, run.run_id, BOUNDARY_STEPS).values()) == {2}
        events = store.events(run.run_id)
        assert store.lock_holder("chain", "default") is None
    assert len([e for e in events if e.event == "step_recovered"]) == BOUNDARY_STEPS
    # every resume found the dead process's lock and took it over (same host, pid gone)
    takeovers = [e for e in events if e.event == "lock_taken_over"]
    assert len(takeovers) == BOUNDARY_STEPS and all("is gone" in e.detail["reason"] for e in takeovers)


# ------------------------------------------------------------- inside steps


@pytest.mark.slow
def test_sigkill_at_random_instants_inside_steps(proj: Proj) -> None:
    """10 steps append, then sleep a seeded random 50-250 ms; the test SIGKILLs the
    process 0-400 ms (seeded) after a step started, mostly inside a step's sleep, and resumes,
    until the run passes. A step attempted once ran exactly once; a step that was
    interrupted ran at least once and at most once per attempt."""
    rng = random.Random(SEED + 1)
    commands = [f"echo ran >> counters/{_sid(i)}; sleep {rng.uniform(0.05, 0.25):.3f}" for i in range(INSIDE_STEPS)]
    proj.write("inside.yaml", _runbook("inside", commands))
    kills, max_kills = 0, 5
    started = time.monotonic()
    live = proj.spawn("run", "inside.yaml")
    while True:
        if kills < max_kills and live.wait_line(lambda line: line.startswith("→ [")) is not None:
            time.sleep(rng.uniform(0.0, 0.4))
            code = live.kill()
        else:
            code = live.wait()
        if code == 0 or not _resumable(proj, "inside"):  # done (perhaps killed just after it passed)
            break
        assert code == -9, live.stdout[-2000:] + live.stderr
        kills += 1
        live = proj.spawn("run", "inside.yaml", "--resume")
    timing(f"{kills} random kills inside steps + resumes ({proj.backend})", time.monotonic() - started)
    with proj.store() as store:
        run = store.latest_run("inside", "default")
        assert run is not None
        attempts = assert_attempt_history(store, run.run_id, INSIDE_STEPS)
    interrupted = sum(n - 1 for n in attempts.values())
    assert kills >= max_kills - 2 and interrupted >= max_kills // 2, (kills, attempts)
    for i in range(INSIDE_STEPS):
        n, count = attempts[_sid(i)], proj.count(_sid(i))
        assert (count == 1) if n == 1 else (1 <= count <= n), (_sid(i), n, count)


# ------------------------------------------------------------ state writes


def _check_sqlite_crash_image(root: Path, scratch: Path) -> None:
    """The store as the crash left it (db + WAL, copied so the next run still recovers
    the original itself) passes SQLite's integrity check, and every attempt row is
    whole: 'running' with no end, or ended with an end time."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for suffix in ("", "-wal"):
        source = root / ".runbook" / f"state.db{suffix}"
        if source.exists():
            shutil.copyfile(source, scratch / f"state.db{suffix}")
    con = sqlite3.connect(scratch / "state.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        bad = con.execute(
            "SELECT run_id, step_id, attempt, status FROM step_attempts"
            " WHERE (status = 'running') <> (finished_at IS NULL)"
        ).fetchall()
        assert bad == []
    finally:
        con.close()
    with StateStore.open(f"sqlite:///{scratch / 'state.db'}") as store:
        for run in store.list_runs(limit=1000):
            store.step_states(run.run_id)
            store.events(run.run_id)


def _where_it_died(proj: Proj) -> str:
    """Which transaction the kill fell after, as the store tells it."""
    with proj.store() as store:
        runs = store.list_runs("w", limit=1)
        if not runs:
            return "before the run was recorded"
        run = runs[0]
        attempts = store.attempts(run.run_id)
        if run.status == "passed":
            return "after the run passed"
        if not attempts:
            return "before the first step was journalled"
        last = max(attempts, key=lambda a: (a.started_at, a.step_id, a.attempt))
        if last.status == "running":
            return "step journalled running"
        finished = {e.step_id for e in store.events(run.run_id) if e.event == "step_finished"}
        return "after a step passed, event appended" if last.step_id in finished else "after a step passed, before its event"


@pytest.mark.slow
def test_sigkill_during_state_writes_never_corrupts_the_sqlite_store(sqlite_proj: Proj) -> None:
    """16 SIGKILLs at random microsecond offsets after a step's last output line (0-8 ms)
    or its 'passed' line (0-1.5 ms): the window where the engine commits the attempt's end,
    appends events and journals the next step. After every kill the crash image passes
    PRAGMA integrity_check and opens as a store; every --resume completes. WAL commits
    are atomic: a transaction is either wholly in the store after the crash or not at all."""
    proj = sqlite_proj
    rng = random.Random(SEED + 2)
    commands = [f"echo ran >> counters/{{{{ run.id }}}}.{_sid(i)} && echo done-{_sid(i)}" for i in range(STEPS)]
    proj.write("w.yaml", _runbook("w", commands))
    kills, target = 0, 16
    offsets: list[int] = []
    landed: dict[str, int] = {}
    started = time.monotonic()
    live = proj.spawn("run", "w.yaml")
    while kills < target:
        marker = rng.choice(["] done-s", "✔ [s"])
        got = live.wait_line(lambda line, m=marker: m in line)  # type: ignore[misc]
        if got is None:
            assert live.wait() == 0, live.stdout[-2000:] + live.stderr
            live = proj.spawn("run", "w.yaml")
            continue
        # After the output line the attempt's end is still to be committed; after the
        # 'passed' line the next step is about to be journalled, within a millisecond or so.
        offset_us = rng.randrange(0, 8000 if "done" in marker else 1500)
        while time.monotonic() < got[0] + offset_us / 1e6:
            pass
        code = live.kill()
        assert code in (-9, 0), live.stdout[-2000:] + live.stderr
        assert "Traceback" not in live.stderr and "malformed" not in live.stderr
        kills += code == -9
        offsets.append(offset_us)
        _check_sqlite_crash_image(proj.root, proj.root / "crash-image")
        where = _where_it_died(proj)
        landed[where] = landed.get(where, 0) + 1
        live = proj.spawn("run", "w.yaml", *(["--resume"] if _resumable(proj, "w") else []))
    assert live.wait() == 0, live.stdout[-2000:] + live.stderr
    timing(f"{kills} kills during state writes + resumes (sqlite)", time.monotonic() - started)
    print(f"[observed] where the kills landed: {dict(sorted(landed.items()))}")
    # Both sides of the commit of a step's end were hit: still 'running', and already 'passed'.
    assert landed.get("step journalled running", 0) and sum(v for k, v in landed.items() if k.startswith("after")), landed

    with proj.store() as store:
        runs = store.list_runs("w", limit=1000)
        assert runs and all(r.status == "passed" for r in runs), [(r.run_id, r.status) for r in runs]
        for run in runs:
            attempts = assert_attempt_history(store, run.run_id, STEPS)
            for i in range(STEPS):
                n, count = attempts[_sid(i)], proj.count(f"{run.run_id}.{_sid(i)}")
                assert (count == 1) if n == 1 else (1 <= count <= n), (run.run_id, _sid(i), n, count)


# ------------------------------------------------------------- resume details

RUN_ID_TEMPLATED = """
name: rid
steps:
  - id: first
    kind: command
    run: "echo {{ run.id }} >> counters/first"
    irreversible: true
  - id: second
    kind: command
    run: "echo {{ run.id }} >> counters/second; test -e killed || { touch killed; kill -9 $PPID; }"
    irreversible: true
  - id: third
    kind: command
    run: "echo {{ run.id }} >> counters/third"
    confirm: "Finish run {{ run.id }}?"
    irreversible: true
"""


def test_resume_of_steps_templated_on_the_run_id(sqlite_proj: Proj) -> None:
    """Steps whose definition uses {{ run.id }} resume without --accept-changes, and an
    approval given with `runbook approve` holds (regression: their fingerprint was taken
    after rendering the real run id, the plan's before, so every resume said "changed")."""
    proj = sqlite_proj
    proj.write("rid.yaml", RUN_ID_TEMPLATED)
    killed = proj.runbook("run", "rid.yaml")
    assert killed.returncode == -9
    paused = proj.runbook("run", "rid.yaml", "--resume")
    assert paused.returncode == 4, paused.stdout + paused.stderr
    with proj.store() as store:
        (run,) = store.list_runs("rid")
    approved = proj.runbook("approve", run.run_id, "third")
    assert approved.returncode == 0, approved.stderr
    done = proj.runbook("run", "rid.yaml", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is void" not in done.stdout
    assert [proj.count(s) for s in ("first", "second", "third")] == [1, 2, 1]


ORPHAN = """
name: orphan
steps:
  - id: long
    kind: command
    run: "echo $$ >> step.pgids; test -e resumed || sleep 60"
    irreversible: true
"""


def test_resume_stops_the_killed_runs_step_before_running_it_again(sqlite_proj: Proj) -> None:
    """SIGKILL of the runbook process mid-step leaves the step's command running (it leads
    its own session, so no signal reaches it). --resume starts the step again; the old
    copy is stopped first (the engine records each command's process group as an event)."""
    proj = sqlite_proj
    proj.write("orphan.yaml", ORPHAN)
    live = proj.spawn("run", "orphan.yaml")
    pgids = proj.root / "step.pgids"
    _wait_for(pgids)
    time.sleep(0.1)
    assert live.kill() == -9
    old = int(pgids.read_text().split()[0])
    try:
        (proj.root / "resumed").touch()
        resumed = proj.runbook("run", "orphan.yaml", "--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        # Zombies do not count: init reaps orphans only every second or two here.
        assert not group_alive(old), f"process group {old} of the killed run's step still runs after --resume"
        assert "left running by the killed run" in resumed.stdout
    finally:
        try:
            os.killpg(old, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ----------------------------------------------------- PostgreSQL connection loss

SLOW_MIDDLE = """
name: drop
steps:
  - id: s1
    kind: command
    run: echo ran >> counters/s1
    irreversible: true
  - id: s2
    kind: command
    run: "echo ran >> counters/s2; touch s2.running; while [ ! -e go ]; do sleep 0.02; done; rm -f s2.running"
    irreversible: true
    timeout: 60s
  - id: s3
    kind: command
    run: echo ran >> counters/s3
    irreversible: true
"""


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _terminate_backends(pg_admin, database: str) -> int:  # type: ignore[no-untyped-def]
    rows = pg_admin(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    return len(rows)


def test_postgresql_state_connection_dropped_mid_run(tmp_path: Path, pg_url: str, pg_admin) -> None:  # type: ignore[no-untyped-def]
    """The state store's PostgreSQL backends are terminated while a step runs.

    1. The server comes back at once: the pool's pre-ping replaces the dead
       connections and the run passes without noticing.
    2. The database refuses connections when the step ends: the run stops with one
       line naming the state store (no traceback, exit 1), and once the database is
       back, --resume re-runs the interrupted step and passes.
    """
    database = sa.make_url(pg_url).database
    assert database
    (tmp_path / "counters").mkdir()
    proj = Proj(tmp_path, pg_url)
    proj.write("drop.yaml", SLOW_MIDDLE)

    live = proj.spawn("run", "drop.yaml")
    _wait_for(tmp_path / "s2.running")
    assert _terminate_backends(pg_admin, database) >= 1
    (tmp_path / "go").touch()
    assert live.wait() == 0, live.stdout[-2000:] + live.stderr
    assert [proj.count(s) for s in ("s1", "s2", "s3")] == [1, 1, 1]

    (tmp_path / "go").unlink()
    live = proj.spawn("run", "drop.yaml")
    _wait_for(tmp_path / "s2.running")
    pg_admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        assert _terminate_backends(pg_admin, database) >= 1
        (tmp_path / "go").touch()
        code = live.wait()
    finally:
        pg_admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    err = live.stderr
    assert code == 1, live.stdout[-2000:] + err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: state store postgresql"), err
    print("[observed]", lines[0])
    assert [proj.count(s) for s in ("s1", "s2", "s3")] == [2, 2, 1]

    resumed = proj.runbook("run", "drop.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr
    assert "interrupted" in resumed.stdout
    assert [proj.count(s) for s in ("s1", "s2", "s3")] == [2, 3, 2]


# ----------------------------------------------------------- mid-backfill crash

ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000
# Many small batches: 200 rows each, 5 ms apart, so a kill lands mid-backfill.
BATCHING = '    batch_size: "{{ vars.batch_size }}"\n'
PATCHED_BATCHING = BATCHING + "    max_batch: 200\n    throttle: 5ms\n"
RESOLVED_WRONG = (
    "SELECT COUNT(*) FROM plan_subscriptions ps WHERE ps.id <= '{max_key}' AND COALESCE(ps.subscriber_id, '-') <> COALESCE(("
    "SELECT s.id FROM subscribers s WHERE s.customer_id = ps.customer_id AND s.deleted_at IS NULL AND s.status = 'active' "
    "ORDER BY s.created_at, s.id LIMIT 1), '-')"
)


class DemoApp:
    """The subscriber-fk runbook and the demo app copied into a scratch directory (as tests/demo)."""

    def __init__(self, root: Path, db_url: str) -> None:
        self.root, self.db_url = root, db_url

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ISP_"))}
        home = self.root / "examples" / "isp" / "var"
        env.update(ISP_DATABASE_URL=self.db_url, ISP_HOME=str(home), RUNBOOK_PYTHON=sys.executable)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def ispctl(self, *args: str) -> None:
        out = subprocess.run(
            [sys.executable, "examples/isp/ispctl.py", *args], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr

    def runbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )

    def spawn(self, *args: str) -> Live:
        return Live([sys.executable, "-m", "runbook", *args], self.root, self.env())

    def scalar(self, query: str) -> int:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(query)).scalar() or 0)
        finally:
            engine.dispose()

    def execute(self, *statements: str) -> None:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def demo_app(request: pytest.FixtureRequest, tmp_path: Path, seeded_demo_databases: SeededDemoDatabases) -> Iterator[DemoApp]:
    """The demo at v1 with 20,000 subscriptions (a fresh copy of a database seeded once per
    session); the backfill patched to many small batches."""
    with seeded_demo_databases.copy(request.param, tmp_path / "isp.db", rows=ROWS, seed=42) as db_url:
        yield from _demo_app(tmp_path, db_url)


def _demo_app(tmp_path: Path, db_url: str) -> Iterator[DemoApp]:
    for part in ("runbooks", "steps"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copytree(ROOT / "examples" / "isp", tmp_path / "examples" / "isp", ignore=shutil.ignore_patterns("var", "__pycache__"))
    runbook = tmp_path / "runbooks" / "subscriber-fk.yaml"
    text = runbook.read_text()
    assert text.count(BATCHING) == 1
    runbook.write_text(text.replace(BATCHING, PATCHED_BATCHING))
    demo = DemoApp(tmp_path, db_url)
    demo.ispctl("up", "--version", "v1")
    try:
        yield demo
    finally:
        stop_demo_server(tmp_path / "examples" / "isp" / "var")


def _count_updates_trigger(demo: DemoApp) -> None:
    """Every committed UPDATE of plan_subscriptions.subscriber_id adds a row to update_audit."""
    if demo.db_url.startswith("sqlite"):
        demo.execute(
            "CREATE TABLE update_audit (id VARCHAR(36) NOT NULL)",
            "CREATE TRIGGER count_updates AFTER UPDATE OF subscriber_id ON plan_subscriptions"
            " BEGIN INSERT INTO update_audit (id) VALUES (NEW.id); END",
        )
    else:
        demo.execute(
            "CREATE TABLE update_audit (id VARCHAR(36) NOT NULL)",
            "CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO update_audit (id) VALUES (NEW.id); RETURN NEW; END $$",
            "CREATE TRIGGER count_updates AFTER UPDATE OF subscriber_id ON plan_subscriptions"
            " FOR EACH ROW EXECUTE FUNCTION count_updates()",
        )


def _kill_when_backfill_passes(demo: DemoApp, live: Live, run_id: str, rows: int) -> int:
    """SIGKILL the run once the backfill's checkpoint counts ``rows`` done; returns the rows it counts.
    (The keys are UUID strings: how far the walk got is the rows done, not a key.)"""
    deadline = time.monotonic() + 120
    with StateStore.open(sqlite_state_url(demo.root)) as store:
        while True:
            assert live.proc.poll() is None, "the run ended before the backfill got that far:\n" + live.stdout[-3000:]
            saved = store.load_checkpoint(run_id, "backfill")
            if saved is not None and saved["total"] >= rows:
                break
            assert time.monotonic() < deadline, "the backfill never got that far"
            time.sleep(0.005)
        assert live.kill() == -9
        saved = store.load_checkpoint(run_id, "backfill")
    assert saved is not None
    return int(saved["total"])


@pytest.mark.slow
def test_sigkill_mid_backfill_then_resume_updates_every_row_once(demo_app: DemoApp) -> None:
    """subscriber-fk on 20,000 rows in 200-row batches, SIGKILLed twice while the backfill
    runs (at >= 25 % and >= 60 % of the rows), resumed each time: the final
    plan_subscriptions equals the resolve rule applied in one shot, and a trigger
    counting committed updates per row shows no row was updated twice."""
    demo = demo_app
    started = time.monotonic()
    paused = demo.runbook("run", "subscriber-fk.yaml", "--approve", "preflight", "--var", "batch_size=200")
    assert paused.returncode == 4, paused.stdout[-3000:] + paused.stderr  # migrated, previewed, awaiting the backfill
    _count_updates_trigger(demo)
    with StateStore.open(sqlite_state_url(demo.root)) as store:
        run = store.latest_run("subscriber-fk", "default", unfinished=True)
    assert run is not None

    stops = []
    for fraction in (0.25, 0.60):
        live = demo.spawn("run", "subscriber-fk.yaml", "--resume", "--yes")
        stops.append(_kill_when_backfill_passes(demo, live, run.run_id, int(ROWS * fraction)))
        done = demo.scalar("SELECT COUNT(*) FROM update_audit")
        assert 0 < done < ROWS
    assert stops[0] < stops[1] < ROWS
    resumed = demo.runbook("run", "subscriber-fk.yaml", "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr
    assert "resuming after id" in resumed.stdout
    timing(f"mid-backfill crash x2 on {ROWS:,} rows ({demo.db_url.split(':')[0]})", time.monotonic() - started)

    with StateStore.open(sqlite_state_url(demo.root)) as store:
        outputs = store.step_states(run.run_id)["backfill"].outputs or {}
        backfills = [a for a in store.attempts(run.run_id, "backfill") if a.kind == "step"]
    # Rows after the backfill's max_key were created by the new code (the smoke test's POST).
    max_key = outputs["max_key"]
    assert demo.scalar(RESOLVED_WRONG.format(max_key=max_key)) == 0
    assert demo.scalar("SELECT COUNT(*) FROM (SELECT id FROM update_audit GROUP BY id HAVING COUNT(*) > 1) twice") == 0
    written = demo.scalar("SELECT COUNT(*) FROM update_audit")
    assert written == demo.scalar(f"SELECT COUNT(*) FROM plan_subscriptions WHERE id <= '{max_key}' AND subscriber_id IS NOT NULL")
    assert demo.scalar(f"SELECT COUNT(*) FROM plan_subscriptions WHERE id <= '{max_key}'") == ROWS
    assert [a.status for a in backfills] == ["awaiting_approval", "interrupted", "interrupted", "passed"]
    # A kill between a batch's commit and its checkpoint replays that batch: its rows no
    # longer match `where`, so they count as already set rather than updated, never twice.
    assert outputs["updated"] <= written <= outputs["updated"] + outputs["skipped_already_set"]
    assert outputs["total"] == ROWS and outputs["errors"] == 0


# ------------------------------------------------------------- rollbacks

UNDO = """
name: undo
steps:
  - id: s1
    kind: command
    run: echo ran >> counters/s1
    rollback: {kind: command, run: echo ran >> counters/undo.s1}
  - id: s2
    kind: command
    run: echo ran >> counters/s2
    rollback: {kind: command, run: "KILL"}
  - id: s3
    kind: command
    run: echo ran >> counters/s3
    rollback: {kind: command, run: echo ran >> counters/undo.s3}
  - id: s4
    kind: command
    run: "echo ran >> counters/s4; exit 1"
    irreversible: true
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["before", "after"])
def test_sigkill_during_a_rollback_then_resume_or_a_second_rollback(proj: Proj, mode: str) -> None:
    """A failed run is rolled back (`runbook rollback RUN --yes`); s2's rollback body SIGKILLs
    the rollback process once, before or after its side effect. Then: `--resume` is
    refused (the killed rollback owns the environment; it names `runbook rollback RUN`),
    and a second `runbook rollback RUN` supersedes the killed one, does not undo s3 again,
    re-runs s2's body (at-least-once: twice if the kill came after its side effect),
    undoes s1, and frees the environment."""
    kill = "test -e killed || { touch killed; kill -9 $PPID; exit 0; }"
    effect = "echo ran >> counters/undo.s2"
    body = f"{kill}; {effect}" if mode == "before" else f"{effect}; {kill}"
    proj.write("undo.yaml", UNDO.replace('"KILL"', json.dumps(body)))
    failed = proj.runbook("run", "undo.yaml")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    with proj.store() as store:
        (parent,) = store.list_runs("undo")

    killed = proj.runbook("rollback", parent.run_id, "--yes")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    with proj.store() as store:
        rollback_run = store.owner_run("undo", "default")
        assert rollback_run is not None and rollback_run.params["rollback_of"] == parent.run_id
        assert rollback_run.status == "running"
        undone = [(a.step_id, a.status) for a in store.attempts(rollback_run.run_id) if a.kind == "rollback"]
        assert undone == [("s3", "rolled_back"), ("s2", "running")]
        parent_states = store.step_states(parent.run_id)
    assert parent_states["s3"].status == "rolled_back" and parent_states["s2"].status == "passed"
    assert [proj.count(f"undo.{s}") for s in ("s1", "s2", "s3")] == [0, 0 if mode == "before" else 1, 1]

    resumed = proj.runbook("run", "undo.yaml", "--resume")
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert f"runbook rollback {parent.run_id}" in resumed.stderr
    fresh = proj.runbook("run", "undo.yaml")
    assert fresh.returncode == 3 and f"runbook rollback {parent.run_id}" in fresh.stderr, fresh.stdout + fresh.stderr
    assert proj.count("s1") == 1

    again = proj.runbook("rollback", parent.run_id, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [proj.count(f"undo.{s}") for s in ("s1", "s2", "s3")] == [1, 1 if mode == "before" else 2, 1]
    with proj.store() as store:
        runs = {r.run_id: r for r in store.list_runs("undo")}
        assert runs[rollback_run.run_id].finished_at is not None and runs[rollback_run.run_id].status == "interrupted"
        (second,) = [r for r in runs.values() if r.run_id not in (parent.run_id, rollback_run.run_id)]
        assert second.status == "rolled_back"
        assert {s: a.status for s, a in store.step_states(parent.run_id).items()} == {
            "s1": "rolled_back", "s2": "rolled_back", "s3": "rolled_back", "s4": "failed"
        }
        assert store.owner_run("undo", "default") is None
        assert store.lock_holder("undo", "default") is None


# ------------------------------------------------------------- paused runs

PAUSED = """
name: paused
steps:
  - id: first
    kind: command
    run: echo ran >> "$COUNTERS/first"
    irreversible: true
  - id: deploy
    kind: command
    run: 'echo ran >> "$COUNTERS/deploy"; test -e "$COUNTERS/killed" || { touch "$COUNTERS/killed"; kill -9 $PPID; }'
    confirm: Deploy version 2?
    irreversible: true
  - id: last
    kind: command
    run: echo ran >> "$COUNTERS/last"
    irreversible: true
"""


@pytest.mark.slow
def test_paused_run_approved_and_killed_then_resumed_from_another_directory(proj: Proj, tmp_path: Path) -> None:
    """Two working directories share the state store. The run pauses awaiting approval in
    the first (exit 4, no terminal); it is approved and resumed from the second, whose
    process is SIGKILLed inside the deploy, after its side effect; `--resume` from the
    first finishes without asking again (the approval holds for the same definition):
    the deploy ran twice (at-least-once), everything else once."""
    shared = proj.state_url or f"sqlite:///{tmp_path / 'shared-state.db'}"
    one, two = Proj(tmp_path / "one", shared), Proj(tmp_path / "two", shared)
    counters = {"COUNTERS": str(proj.root / "counters")}
    for side in (one, two):
        side.write("paused.yaml", PAUSED)

    paused = one.runbook("run", "paused.yaml", env=counters)
    assert paused.returncode == 4, paused.stdout + paused.stderr
    with one.store() as store:
        run = store.owner_run("paused", "default")
    assert run is not None and run.status == "awaiting_approval"
    approved = two.runbook("approve", run.run_id, "deploy", env=counters)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    killed = two.runbook("run", "paused.yaml", "--resume", env=counters)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert [proj.count(s) for s in ("first", "deploy", "last")] == [1, 1, 0]

    resumed = one.runbook("run", "paused.yaml", "--resume", env=counters)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "was interrupted" in resumed.stdout
    assert [proj.count(s) for s in ("first", "deploy", "last")] == [1, 2, 1]
    with one.store() as store:
        statuses = [a.status for a in store.attempts(run.run_id, "deploy") if a.kind == "step"]
        assert statuses == ["awaiting_approval", "interrupted", "passed"]
        assert [a.by for a in store.approvals(run.run_id)] == [identity.current().user]
        assert store.get_run(run.run_id).status == "passed"  # type: ignore[union-attr]
