"""`runbook history` over many recorded runs: the command function against the whole CLI.

Records N real runs (default 100) of a 5-step runbook in-process, alternating two
environments, in a SQLite state store; then times

- ``runbook.commands.history`` in-process (store open, query, render; interpreter
  start-up and imports excluded): default limit 20, ``--limit 100``, one runbook and
  environment; median of 9 calls after a warm-up. Target: < 100 ms each.
- ``runbook history --limit 100`` as a process (start-up and imports included), median of 5.

    python bench/history_bench.py [--runs 100]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 0.100
# As on an operator's machine: Python caches compiled modules (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("RUNBOOK_")}


def record_runs(root: Path, runs: int) -> float:
    from runbook import commands

    path = root / "runbooks" / "h.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: h\nenvironments: {staging: {}, production: {}}\nsteps:\n"
        + "".join(f"  - id: s{i}\n    kind: command\n    run: [/bin/true]\n    irreversible: true\n" for i in range(5))
    )
    start = time.perf_counter()
    for i in range(runs):
        code = commands.run(str(path), env=("staging", "production")[i % 2], interactive=False, workdir=root, stream=io.StringIO())
        assert code == 0, f"run {i} exited {code}"
    return time.perf_counter() - start


def median_call(kwargs: dict[str, Any], repeat: int = 9) -> float:
    from runbook import commands

    out: list[str] = []
    times = []
    for _ in range(repeat):
        out.clear()
        start = time.perf_counter()
        assert commands.history(echo=out.append, **kwargs) == 0
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_cli(root: Path, repeat: int = 5) -> float:
    argv = [sys.executable, "-m", "runbook", "history", "--limit", "100"]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=root, env=ENV, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("RUNBOOK_")]:
        del os.environ[name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)
        recorded = record_runs(root, args.runs)
        from runbook import commands

        assert commands.history(echo=lambda _: None) == 0  # warm-up: imports, first open
        rows = [
            ("commands.history, default limit 20", median_call({})),
            ("commands.history, --limit 100", median_call({"limit": 100})),
            ("commands.history, one runbook and env, --limit 100", median_call({"name": "h", "env": "staging", "limit": 100})),
        ]
        cli = median_cli(root)
        os.chdir("/")
    print(f"{args.runs} runs of a 5-step runbook recorded in-process in {recorded:.1f} s (load average {os.getloadavg()[0]:.1f})\n")
    print(f"{'measure':<52} {'median':>9} {'target':>9}")
    for label, seconds in rows:
        print(f"{label:<52} {seconds * 1000:>7.1f}ms {'< 100ms':>9}  {'ok' if seconds < TARGET_S else 'MISSED'}")
    print(f"{'runbook history --limit 100 (process, start-up included)':<52} {cli * 1000:>7.0f}ms")


if __name__ == "__main__":
    main()
