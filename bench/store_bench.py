"""The state store on SQLite and on the machine's PostgreSQL, side by side in one run.

- one journal write (an event appended in its own committed transaction), and an
  attempt started and finished: median over --writes (target <= 1 ms on PostgreSQL);
  every figure is the best of 3 medians, taken one after the other;
- `history` in-process (opening the store included) over a store of --runs runs
  (10 runbooks x 3 environments, 5 attempts and 8 events each; the newest still
  running, so liveness is judged too): target <= 100 ms;
- `runbook status` as a whole process over that store: target <= 0.3 s.

PostgreSQL: a scratch database created on the server of --pg (default
$RUNBOOK_TEST_PG_URL, else postgresql://postgres@127.0.0.1:5432/postgres) and
dropped afterwards; the store lives in its own schema there, as for an operator.

    python bench/store_bench.py [--pg URL] [--runs 10000] [--writes 500] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from runbook import commands
from runbook.state import StateStore
from runbook.state.connect import create_engine, in_schema, locate
from runbook.state.schema import events, runs, step_attempts

# As on an operator's machine: Python caches compiled modules (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("RUNBOOK_")}


ROUNDS = 3


def median_ms(call: Callable[[], object], repeat: int) -> float:
    """The best of ROUNDS medians of ``repeat`` calls: a shared machine's load comes in bursts."""
    call()  # warm-up: pools, caches, prepared statements
    medians = []
    for _ in range(ROUNDS):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return min(medians) * 1000


def journal_writes(url: str, writes: int) -> tuple[float, float]:
    """Median ms of one appended event, and of one attempt started and finished."""
    with StateStore.open(url) as store:
        run_id = store.create_run(runbook="w", env="e", path="w.yaml", fingerprint="f", dry_run=False, actor="bench", params={})
        event = median_ms(lambda: store.append_event(run_id, "output", step_id="s", detail={"line": "x" * 60}), writes)
        step = iter(range(10**9))

        def attempt() -> None:
            step_id = f"s{next(step)}"
            number = store.start_attempt(run_id, step_id, fingerprint="f")
            store.finish_attempt(run_id, step_id, number, status="passed", outputs={"k": 1})

        return event, median_ms(attempt, writes) / 2


def bare_write_ms(url: str, writes: int) -> float:
    """Median ms of the same commit without runbook or SQLAlchemy: one row inserted and
    committed by the driver itself (SQLite in WAL mode with synchronous=NORMAL, as the store)."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///") + ".floor", isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, line TEXT)")

        def write() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO floor (line) VALUES (?)", ("x" * 60,))
            db.execute("COMMIT")

        try:
            return median_ms(write, writes)
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.bench_floor (id bigserial PRIMARY KEY, line text)")
        return median_ms(lambda: conn.execute("INSERT INTO public.bench_floor (line) VALUES (%s)", ("x" * 60,)), writes)


def seed(url: str, count: int) -> None:
    """``count`` finished runs with their attempts and events, then one running run holding its lock."""
    location = locate(url, None)
    engine = create_engine(location)
    start = datetime.now(UTC) - timedelta(days=365)
    try:
        with in_schema(engine, location.schema).begin() as conn:
            for first in range(0, count, 1000):
                batch = range(first, min(first + 1000, count))
                ids = [f"{(start + timedelta(minutes=i)):%Y%m%d-%H%M%S}-{i:04x}"[-40:] for i in batch]
                at = [start + timedelta(minutes=i) for i in batch]
                conn.execute(sa.insert(runs), [
                    {"run_id": rid, "runbook": f"rb{i % 10}", "env": ("dev", "staging", "prod")[i % 3], "path": "p.yaml",
                     "fingerprint": "f", "dry_run": False, "status": "passed", "actor": "bench@host", "host": "host",
                     "pid": 1, "started_at": t, "finished_at": t + timedelta(seconds=30), "params": {"v": i}}
                    for i, rid, t in zip(batch, ids, at, strict=True)
                ])  # fmt: skip
                conn.execute(sa.insert(step_attempts), [
                    {"run_id": rid, "step_id": f"step{s}", "attempt": 1, "kind": "step", "status": "passed", "fingerprint": "f",
                     "pid": 1, "pid_started": None, "host": "host", "started_at": t, "finished_at": t, "outputs": {},
                     "error": None, "checks": [], "log_path": None}
                    for rid, t in zip(ids, at, strict=True) for s in range(5)
                ])  # fmt: skip
                conn.execute(sa.insert(events), [
                    {"run_id": rid, "step_id": None, "event": "output", "at": t, "actor": "bench@host", "pid": 1, "detail": {"n": e}}
                    for rid, t in zip(ids, at, strict=True) for e in range(8)
                ])  # fmt: skip
    finally:
        engine.dispose()
    store = StateStore.open(url)
    run_id = store.create_run(runbook="rb0", env="prod", path="p.yaml", fingerprint="f", dry_run=False, actor="bench", params={})
    store.acquire_lock("rb0", "prod", run_id)
    store.start_attempt(run_id, "step0", fingerprint="f")
    # Left open: the lock's holder (this process) stays alive while history and status judge the run.
    _held.append(store)


_held: list[StateStore] = []


def history_ms(url: str, repeat: int, limit: int) -> float:
    return median_ms(lambda: commands.history(state_url=url, limit=limit, echo=lambda _text: None), repeat)


def imports_floor_s(repeat: int) -> float:
    """What any command reading a PostgreSQL store pays before its first line of work."""
    argv = [sys.executable, "-c", "import sqlalchemy, psycopg"]
    return median_ms(lambda: subprocess.run(argv, env=ENV, capture_output=True, check=True), repeat) / 1000


def status_process_s(url: str, repeat: int, cwd: Path) -> float:
    argv = [sys.executable, "-m", "runbook", "status", "--state", url]
    out = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "running" in out.stdout, out.stdout + out.stderr
    return median_ms(lambda: subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, check=True), repeat) / 1000


@contextmanager
def scratch_pg(server: str) -> Iterator[str]:
    name = f"runbook_bench_{uuid.uuid4().hex[:8]}"
    base = server.replace("postgresql://", "postgresql+psycopg://", 1) if server.startswith("postgresql://") else server
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        for store in _held:
            store.close()
        _held.clear()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(url: str, args: argparse.Namespace, cwd: Path) -> dict[str, float]:
    event, attempt = journal_writes(url, args.writes)
    bare = bare_write_ms(url, args.writes)
    seed(url, args.runs)
    return {
        "event": event,
        "attempt": attempt,
        "bare": bare,
        "history": history_ms(url, args.repeat, 20),
        "history_all": history_ms(url, max(3, args.repeat // 3), args.runs),
        "status": status_process_s(url, args.repeat, cwd),
        "floor": imports_floor_s(args.repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("RUNBOOK_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = measure(f"sqlite:///{tmp}/state.db", args, Path(tmp))
        for store in _held:
            store.close()
        _held.clear()
        with scratch_pg(args.pg) as url:
            results["PostgreSQL"] = measure(url, args, Path(tmp))
    rows = [
        ("journal write: one event (median ms)", "event", 1.0),
        ("journal write: attempt start or finish (median ms)", "attempt", 1.0),
        ("  floor: the driver's own INSERT + COMMIT (median ms)", "bare", None),
        (f"history in-process, newest 20 of {args.runs:,} runs (ms)", "history", 100.0),
        (f"history in-process, all {args.runs:,} runs (ms)", "history_all", None),
        ("runbook status, whole process (s)", "status", 0.3),
        ("  floor: python -c 'import sqlalchemy, psycopg' (s)", "floor", None),
    ]
    print(f"{'measure':<56} {'SQLite':>9} {'PostgreSQL':>11} {'target':>7}  verdict (PostgreSQL)")
    for label, key, target in rows:
        pg = results["PostgreSQL"][key]
        verdict = "" if target is None else ("ok" if pg <= target else "MISSED")
        print(f"{label:<56} {results['SQLite'][key]:>9.3f} {pg:>11.3f} {target if target else '':>7}  {verdict}")


if __name__ == "__main__":
    main()
