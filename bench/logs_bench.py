"""Step logs in the state store, on SQLite and on the machine's PostgreSQL, side by side.

- follow latency: a real `runbook run` whose step prints a line carrying the time
  it was printed, every 0.3 s, and a real `runbook logs RUN --follow` printing it;
  the delay from print to the follower's stdout, median and max over --lines
  lines (target <= 1 s);
- one journal write (an event appended in its own committed transaction) while
  the same store takes a step's output at --rate lines/s through the log writer
  (engine/steplog.py), next to the same write with no output being stored
  (target <= 1 ms median on PostgreSQL);
- what the engine's output callback pays per line for the store: StoredLog.write
  (a list append under a lock; the inserts happen on the flush thread), next to
  the local file's write, which every line already paid.

PostgreSQL: a scratch database on --pg (default $RUNBOOK_TEST_PG_URL, else
postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards.

    python bench/logs_bench.py [--pg URL] [--lines 20] [--writes 500] [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_bench import ENV, median_ms, scratch_pg  # noqa: E402

from runbook.engine.steplog import StoredLog  # noqa: E402
from runbook.safefile import AppendLog  # noqa: E402
from runbook.state import StateStore  # noqa: E402

PRINTER = """
name: printer
steps:
  - id: prints
    kind: command
    run: ["{python}", "-u", "-c", "import time\\nfor i in range({lines}):\\n    print(f'at={{time.time():.6f}}', flush=True)\\n    time.sleep(0.3)"]
    irreversible: true
"""


def follow_latency(url: str, lines: int) -> tuple[float, float]:
    """Median and max seconds from a step printing a line to `runbook logs --follow` printing it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runbooks").mkdir()
        (root / "runbooks" / "printer.yaml").write_text(textwrap.dedent(PRINTER.format(python=sys.executable, lines=lines)))
        env = {**ENV, "RUNBOOK_STATE_URL": url}
        run = subprocess.Popen([sys.executable, "-m", "runbook", "run", "printer.yaml"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run_id = _first_run_id(root, env)
            follow = subprocess.Popen([sys.executable, "-m", "runbook", "logs", run_id, "--follow"], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
            assert follow.stdout is not None
            delays = []
            for line in follow.stdout:
                if line.startswith("at="):
                    delays.append(time.time() - float(line[3:]))
            follow.wait()
        finally:
            run.wait()
    # The follower starts after the run: the lines printed before it caught up are not a latency.
    settled = delays[3:] or delays
    return statistics.median(settled), max(settled)


def _first_run_id(root: Path, env: dict[str, str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "runbook", "history", "--format", "json"], cwd=root, env=env, capture_output=True, text=True)
        runs = json.loads(out.stdout)["runs"] if out.returncode == 0 else []
        if runs:
            return str(runs[0]["id"])
        time.sleep(0.1)
    raise SystemExit("the run never appeared in the store")


def journal_write_under_output(url: str, writes: int, rate: int) -> tuple[float, float]:
    """Median ms of one event appended, with and without a step's output being stored meanwhile."""
    with StateStore.open(url) as store, tempfile.TemporaryDirectory() as tmp:
        run_id = store.create_run(runbook="w", env="e", path="w.yaml", fingerprint="f", dry_run=False, actor="bench", params={})
        quiet = median_ms(lambda: store.append_event(run_id, "output", step_id="s", detail={"line": "x" * 60}), writes)
        log = StoredLog(store, run_id, "s", 1, local_path=Path(tmp) / "s.1.log", cap=1 << 40)
        stop = threading.Event()

        def feed() -> None:
            i = 0
            while not stop.is_set():
                for _ in range(rate // 100):
                    log.write(f"line {i} " + "x" * 60)
                    i += 1
                time.sleep(0.01)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            busy = median_ms(lambda: store.append_event(run_id, "output", step_id="s", detail={"line": "x" * 60}), writes)
        finally:
            stop.set()
            feeder.join()
            log.close()
    return quiet, busy


def per_line_us(url: str, count: int = 100_000) -> tuple[float, float]:
    """Microseconds per line: the store's share (StoredLog.write) and the local file's (AppendLog.write)."""
    with StateStore.open(url) as store, tempfile.TemporaryDirectory() as tmp:
        run_id = store.create_run(runbook="w", env="e", path="w.yaml", fingerprint="f", dry_run=False, actor="bench", params={})
        log = StoredLog(store, run_id, "s", 1, local_path=Path(tmp) / "s.1.log")
        line = "y" * 80
        start = time.perf_counter()
        for _ in range(count):
            log.write(line)
        stored = (time.perf_counter() - start) / count * 1e6
        log.close()
        local = AppendLog(Path(tmp) / "s.1.log", Path(tmp))
        start = time.perf_counter()
        for _ in range(count):
            local.write(line)
        written = (time.perf_counter() - start) / count * 1e6
        local.close()
    return stored, written


def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    median, worst = follow_latency(url, args.lines)
    quiet, busy = journal_write_under_output(url, args.writes, args.rate)
    stored, written = per_line_us(url)
    return {"follow_median": median, "follow_max": worst, "write_quiet": quiet, "write_busy": busy, "line_store": stored, "line_file": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("RUNBOOK_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--rate", type=int, default=2000, help="lines per second a step prints during the journal-write measure")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = measure(f"sqlite:///{tmp}/state.db", args)
    with scratch_pg(args.pg) as url:
        results["PostgreSQL"] = measure(url, args)
    rows = [
        ("logs --follow: print -> shown, median (s)", "follow_median", 1.0),
        ("logs --follow: print -> shown, max (s)", "follow_max", 1.0),
        ("journal write, no output stored (median ms)", "write_quiet", 1.0),
        (f"journal write, {args.rate} lines/s being stored (median ms)", "write_busy", 1.0),
        ("per line: the store's share in the step (us)", "line_store", None),
        ("  per line: the local log file (us)", "line_file", None),
    ]
    print(f"{'measure':<58} {'SQLite':>9} {'PostgreSQL':>11} {'target':>7}  verdict (PostgreSQL)")
    for label, key, target in rows:
        pg = results["PostgreSQL"][key]
        verdict = "" if target is None else ("ok" if pg <= target else "MISSED")
        print(f"{label:<58} {results['SQLite'][key]:>9.3f} {pg:>11.3f} {target if target else '':>7}  {verdict}")


if __name__ == "__main__":
    main()
