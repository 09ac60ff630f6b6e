"""Live control on the machine's PostgreSQL: what it costs a run, and how soon it acts.

- the heartbeat's read of new control requests (``controls_since`` with nothing new),
  median and p99 over --reads: paid once a second by a run, and once per step;
- cancel latency: a run whose step is ``sleep 300`` is sent the request ``runbook cancel``
  writes; time from its commit to the run's process exit, its step's group stopped
  (target: within 2 s, the issue's bound), median over --cancels.

    python bench/control_bench.py [--pg URL] [--reads 2000] [--cancels 3]
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
from pathlib import Path

import sqlalchemy as sa

from runbook.state import StateStore

RUNBOOK = """name: sleepy
steps:
  - id: nap
    kind: command
    run: "touch started; sleep 300"
    irreversible: true
"""


def _database(server: str) -> tuple[str, sa.Engine, str]:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False), admin, name


def reads(url: str, count: int) -> str:
    with StateStore.open(url) as store:
        run = store.create_run(runbook="r", env="e", path="p", fingerprint="f", dry_run=False, actor="a", params={})
        for _ in range(20):
            store.request_control(run, "set", by="bench", step_id="s", params={"throttle": 0.1})
        last = store.last_control_id(run)
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            store.controls_since(run, last)
            times.append(time.perf_counter() - t0)
    times.sort()
    return f"controls_since, nothing new: median {statistics.median(times) * 1000:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms"


def cancels(url: str, count: int) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}, "RUNBOOK_STATE_URL": url}
    cli = [sys.executable, "-m", "runbook"]
    latencies = []
    for _ in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "runbooks").mkdir()
            (root / "runbooks" / "sleepy.yaml").write_text(RUNBOOK)
            run = subprocess.Popen([*cli, "run", "sleepy.yaml"], cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not (root / "started").exists():
                time.sleep(0.02)
            with StateStore.open(url) as store:
                run_id = store.list_runs("sleepy")[0].run_id
            # The request as `runbook cancel` commits it, timed from its commit: the command's own
            # start-up (an interpreter and the store's imports) is not the run's reaction time.
            with StateStore.open(url) as store:
                store.request_control(run_id, "cancel", by="bench@bench")
                t0 = time.perf_counter()
            code = run.wait(timeout=60)
            latencies.append(time.perf_counter() - t0)
            assert code == 130, code
            subprocess.run([*cli, "abandon", run_id, "--reason", "bench"], cwd=root, env=env, check=True, capture_output=True)
    return f"cancel request committed -> exit 130: median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s over {count} (target <= 2 s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("RUNBOOK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--cancels", type=int, default=3)
    args = parser.parse_args()
    server = args.pg.replace("postgresql://", "postgresql+psycopg://", 1)
    url, admin, name = _database(server)
    try:
        print(reads(url, args.reads))
        print(cancels(url, args.cancels))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
