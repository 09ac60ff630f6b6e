"""Start-up costs an operator waits on: `runbook --help`, `runbook plan subscriber-fk.yaml`,
and validating a generated 1,000-step runbook. Prints each against its target.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# As on an operator's machine: Python caches compiled modules (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(argv: list[str], repeat: int, cwd: Path) -> float:
    """Median wall time of a command, in seconds (after one warm-up run)."""
    subprocess.run(argv, cwd=cwd, capture_output=True, check=False, env=ENV)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, check=False, env=ENV)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    python_only = wall([sys.executable, "-c", "pass"], args.repeat, ROOT)
    rows = [
        ("python -c pass (floor)", python_only, None),
        ("runbook --help", wall([*runbook, "--help"], args.repeat, ROOT), 0.15),
        ("runbook plan subscriber-fk.yaml", wall([*runbook, "plan", "subscriber-fk.yaml"], args.repeat, ROOT), 0.2),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "generated.yaml"
        path.write_text(generated_runbook(1000))
        (Path(tmp) / "README.md").write_text("x")
        rows.append(("runbook validate (1,000 steps)", wall([*runbook, "validate", str(path)], max(3, args.repeat // 3), Path(tmp)), 1.0))
    print(f"{'command':<36} {'median s':>9} {'target s':>9}  verdict")
    for name, seconds, target in rows:
        verdict = "" if target is None else ("ok" if seconds <= target else "MISSED")
        print(f"{name:<36} {seconds:>9.3f} {target if target else '':>9}  {verdict}")
    modules = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runbook", "plan", "subscriber-fk.yaml"], cwd=ROOT, capture_output=True, text=True, env={**os.environ}
    ).stderr
    heavy = [m for m in ("sqlalchemy", "psycopg", "rich", "alembic", "structlog") if f" {m}\n" in modules or f"| {m}\n" in modules]
    print(f"heavy modules imported by `plan`: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
