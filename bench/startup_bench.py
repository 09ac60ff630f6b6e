"""Start-up costs an operator waits on: `runbook --help`, `runbook plan subscriber-fk.yaml`,
validating a generated 1,000-step runbook, and `runbook run` of a one-step runbook (a fresh
state store each time: the path every run takes before its first step). Prints each against
its target, with the CPU time it took (user + system, the process and its children) beside
the wall time: on a shared machine the CPU time moves less with the load.

    python bench/startup_bench.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# As on an operator's machine: Python caches compiled modules (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(argv: list[str], repeat: int, cwd: Path, fresh: Callable[[], Path] | None = None) -> tuple[float, float]:
    """Median wall time and median CPU time of a command, in seconds (after one warm-up run).
    ``fresh`` gives each run a new working directory (a run's state store starts empty)."""

    def once() -> tuple[float, float]:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=fresh() if fresh else cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        _, _, usage = os.wait4(proc.pid, 0)
        return time.perf_counter() - start, usage.ru_utime + usage.ru_stime

    once()
    walls, cpus = zip(*(once() for _ in range(repeat)))
    return statistics.median(walls), statistics.median(cpus)


def generated_runbook(steps: int) -> str:
    lines = ["name: generated", "vars:", "  greeting: hello", "steps:"]
    for i in range(steps):
        lines += [
            f"  - id: s{i}",
            "    kind: command",
            f"    run: echo {{{{ vars.greeting }}}} {i}",
            "    irreversible: true",
            *([f"    needs: [s{i - 1}]"] if i else []),
            "    gates:",
            "      - check: file_exists",
            "        path: README.md",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    runbook = [sys.executable, "-m", "runbook"]
    rows = [
        ("python -c pass (floor)", *wall([sys.executable, "-c", "pass"], args.repeat, ROOT), None),
        ("runbook --help", *wall([*runbook, "--help"], args.repeat, ROOT), 0.15),
        ("runbook plan subscriber-fk.yaml", *wall([*runbook, "plan", "subscriber-fk.yaml"], args.repeat, ROOT), 0.2),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.yaml"
        path.write_text(generated_runbook(1000))
        (Path(tmp) / "README.md").write_text("x")
        rows.append(("runbook validate (1,000 steps)", *wall([*runbook, "validate", str(path)], max(3, args.repeat // 3), Path(tmp)), 1.0))
        one = Path(tmp) / "one.yaml"
        one.write_text('name: one\nsteps:\n  - id: only\n    kind: command\n    run: "true"\n    irreversible: true\n')
        rows.append(("runbook run (one step, new store)", *wall([*runbook, "run", str(one), "--yes"], args.repeat, ROOT, lambda: Path(tempfile.mkdtemp(dir=tmp))), None))
    print(f"{'command':<36} {'median s':>9} {'CPU s':>7} {'target s':>9}  verdict")
    for name, seconds, cpu, target in rows:
        verdict = "" if target is None else ("ok" if seconds <= target else "MISSED")
        print(f"{name:<36} {seconds:>9.3f} {cpu:>7.3f} {target if target else '':>9}  {verdict}")
    modules = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runbook", "plan", "subscriber-fk.yaml"], cwd=ROOT, capture_output=True, text=True, env={**os.environ}
    ).stderr
    heavy = [m for m in ("sqlalchemy", "psycopg", "rich", "alembic", "structlog") if f" {m}\n" in modules or f"| {m}\n" in modules]
    # tests/foundation/test_import_budget.py holds this to none.
    print(f"heavy modules imported by `plan`: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
