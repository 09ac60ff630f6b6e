"""Validation and planning against the number of steps: is it linear?

- `runbook validate` of generated runbooks of 2,000 / 5,000 / 20,000 / 45,000
  steps, side by side (wall time, peak RSS, time per step). The steps are as
  small as a step can be (`- {id: sN, kind: command, run: x}`), so 45,000 of them
  still fit under the 2 MB file limit; each also draws a warning (no rollback).
  Target: 20,000 steps <= 2 s.
- `runbook validate` and `runbook plan` of a 2,000-step runbook whose steps use
  templates (vars, an earlier step's outputs), `needs`, a gate and a rollback.
  Target: validate + plan <= 2 s.
- `load_runbook` in-process (imports and a warm-up done) of the 1,000-step runbook
  of tests/foundation/test_scale.py, whose steps carry templates, checks, retries
  and outputs. Target: <= 2 s (the bound that test asserted until timings moved here).

    python bench/scale_bench.py [--repeat 3] [--sizes 2000,5000,20000,45000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("RUNBOOK_")}


def compact_runbook(steps: int) -> str:
    return "name: big\nsteps:\n" + "".join(f"- {{id: s{i}, kind: command, run: x}}\n" for i in range(steps))


def templated_runbook(steps: int) -> str:
    lines = ["name: templated", "vars:", "  greeting: {default: hello}", "  target: {default: '{{ vars.greeting }}-db'}", "steps:"]
    for i in range(steps):
        lines += [
            f"  - id: s{i}",
            f"    title: Step {i} on {{{{ vars.target }}}}",
            "    kind: command",
            f"    run: echo {{{{ vars.greeting }}}} {i}" + (f" {{{{ steps.s{i - 1}.outputs.n }}}}" if i else ""),
            *([f"    needs: [s{i - 1}]"] if i else []),
            "    outputs: {n: '{{ result.stdout }}'}",
            "    gates:",
            "      - check: file_exists",
            "        name: marker of {{ vars.target }}",
            "        path: README.md",
            "    rollback: {kind: command, run: echo undo " + str(i) + "}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Measured:
    wall: float  # seconds, best of the runs
    cpu: float  # user + system seconds of the process, best of the runs (steadier than wall on a shared machine)
    rss_mb: float  # peak resident size, largest of the runs
    code: int


def measure(argv: list[str], cwd: Path) -> Measured:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))


def best(argv: list[str], cwd: Path, repeat: int) -> Measured:
    runs = [measure(argv, cwd) for _ in range(repeat)]
    return Measured(min(r.wall for r in runs), min(r.cpu for r in runs), max(r.rss_mb for r in runs), runs[-1].code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--sizes", default="2000,5000,20000,45000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runbook = [sys.executable, "-m", "runbook"]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "README.md").write_text("marker\n")
        floor = best([*runbook, "--help"], cwd, args.repeat)
        rows: list[tuple[str, list[str]]] = [
            ("file size", []),
            ("validate wall", []),
            ("  cpu", []),
            ("  cpu per step", []),
            ("  peak RSS", []),
            ("  exit", []),
        ]
        for n in sizes:
            path = cwd / f"compact{n}.yaml"
            path.write_text(compact_runbook(n))
            m = best([*runbook, "validate", path.name], cwd, args.repeat)
            cells = [
                f"{path.stat().st_size / 1e6:.2f} MB",
                f"{m.wall:.2f} s",
                f"{m.cpu:.2f} s",
                f"{(m.cpu - floor.cpu) / n * 1e6:.0f} µs",
                f"{m.rss_mb:.0f} MB",
                str(m.code),
            ]
            for (_, column), cell in zip(rows, cells):
                column.append(cell)
        print(f"runbook --help (start-up floor): {floor.wall:.2f} s wall, {floor.cpu:.2f} s cpu; target: validate 20,000 steps <= 2 s")
        print("(best of {args.repeat}; load average now {load:.1f})\n".format(args=args, load=os.getloadavg()[0]))
        print(f"{'compact steps':<16}" + "".join(f"{n:>12,}" for n in sizes))
        for label, cells in rows:
            print(f"{label:<16}" + "".join(f"{c:>12}" for c in cells))

        n = 2000
        path = cwd / "templated.yaml"
        path.write_text(templated_runbook(n))
        validated = best([*runbook, "validate", path.name], cwd, args.repeat)
        planned = best([*runbook, "plan", path.name], cwd, args.repeat)
        print(f"\n{n:,} templated steps ({path.stat().st_size / 1e6:.2f} MB)  validate      plan   (target: plan, which validates first, <= 2 s)")
        print(f"{'wall':<36}{validated.wall:>8.2f} s{planned.wall:>8.2f} s")
        print(f"{'cpu':<36}{validated.cpu:>8.2f} s{planned.cpu:>8.2f} s")
        print(f"{'peak RSS':<36}{validated.rss_mb:>7.0f} MB{planned.rss_mb:>7.0f} MB")
        print(f"{'exit':<36}{validated.code:>10}{planned.code:>10}")

        rich = in_process_load(cwd, 1000, args.repeat)
        print(f"\nload_runbook in-process, 1,000 steps of tests/foundation/test_scale.py: {rich:.3f} s (best of {args.repeat}; target <= 2 s: {'ok' if rich <= 2 else 'MISSED'})")


# One fresh interpreter per measurement: a second load in the same process would find
# the templates already analysed and cached.
_LOAD_ONCE = """
import sys, time, yaml
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from runbook.loader import load_runbook
from tests.foundation.test_scale import generated_runbook
cwd, steps = Path(sys.argv[2]), int(sys.argv[3])
big, warm_up = cwd / "rich.yaml", cwd / "rich-warm-up.yaml"
big.write_text(yaml.safe_dump(generated_runbook(steps), sort_keys=False), encoding="utf-8")
# Importing the step and check kinds is a one-off cost, not validation's; a runbook of its
# own, so that the templates analysed and cached here are not the big one's.
warm_up.write_text(yaml.safe_dump(generated_runbook(2), sort_keys=False), encoding="utf-8")
load_runbook(warm_up)
start = time.perf_counter()
loaded = load_runbook(big)
elapsed = time.perf_counter() - start
assert len(loaded.runbook.steps) == steps and loaded.warnings == []
print(elapsed)
"""


def in_process_load(cwd: Path, steps: int, repeat: int) -> float:
    """Best wall time of one load_runbook of the foundation test's generated runbook, in-process."""
    argv = [sys.executable, "-c", _LOAD_ONCE, str(ROOT), str(cwd), str(steps)]
    return min(float(subprocess.run(argv, env=ENV, capture_output=True, text=True, check=True).stdout) for _ in range(repeat))


if __name__ == "__main__":
    main()
