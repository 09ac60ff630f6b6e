"""Hostile input: how fast and in how much memory each hostile file is refused.

tests/reliability/test_hostile_input.py checks *what* happens to each case (exit code,
located message, no traceback, no payload run, Python allocations bounded); this
script measures how long it takes, which a test cannot assert on a loaded 2-core
machine. For each case, side by side:

- in-process: ``runbook plan FILE`` through click's CliRunner, wall time and peak of
  Python allocations (tracemalloc, which slows templates down), best of --repeat;
- process: ``python -m runbook plan FILE``, wall time (start-up included) and peak
  RSS (VmHWM, read inside the process), best of --repeat.

Cases: every file in tests/reliability/corpus/, plus generated ones (a 100 MB sparse
file, 10,000 nested brackets, a 1 MB string aliased 9,000 times, a FIFO and a link
to /dev/zero as the runbook path). Targets: refused within 5 s (2 s for the 100 MB
file) and 250 MB peak RSS.

    python bench/hostile_bench.py [--repeat 3] [--only NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "reliability" / "corpus"
MAX_SECONDS = 5.0
MAX_RSS_MB = 250
# As on an operator's machine: Python caches compiled modules (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("RUNBOOK_")}
DEEP = 10_000

# ``python -m runbook`` that records its own peak RSS (VmHWM) on exit: a parent's rusage
# would count the forked bench process's memory as the child's peak.
_MEASURED = """
import atexit, runpy, sys
report, sys.argv = sys.argv[1], ["runbook", *sys.argv[2:]]
def _peak():
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(_peak)
runpy.run_module("runbook", run_name="__main__", alter_sys=True)
"""


def _hundred_megabytes(path: Path) -> None:
    with path.open("wb") as f:
        f.write(b"name: big\nsteps: []\n# ")
        f.truncate(100 * 1024 * 1024)  # sparse: no disk is spent on it


def _text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


GENERATED: dict[str, tuple[Callable[[Path], None], float]] = {
    "100 MB file (sparse)": (_hundred_megabytes, 2.0),
    "10,000 nested [": (_text("name: x\nsteps: []\nmetadata:\n  tags: " + "[" * DEEP + "]" * DEEP + "\n"), MAX_SECONDS),
    "10,000 nested {": (_text("name: x\nsteps: []\nmetadata:\n  links: " + "{a: " * DEEP + "b" + "}" * DEEP + "\n"), MAX_SECONDS),
    "10,000 nested block lists": (_text("name: x\nsteps: []\nmetadata:\n  tags:\n    " + "- " * DEEP + "x\n"), MAX_SECONDS),
    "1 MB string aliased 9,000 times": (
        _text("name: x\nvars:\n  v: &big " + "x" * 1_000_000 + "\nmetadata:\n  tags: [" + ", ".join(["*big"] * 9000) + "]\nsteps: []\n"),
        MAX_SECONDS,
    ),
}
# Not regular files: only as a process, with a timeout (an in-process read could block the bench).
SPECIAL: dict[str, Callable[[Path], None]] = {
    "runbook path is a FIFO": lambda path: os.mkfifo(path),
    "runbook path is a link to /dev/zero": lambda path: path.symlink_to("/dev/zero"),
}


def in_process(name: str, cwd: Path, repeat: int) -> tuple[float, float, int]:
    """(best wall s, largest traced MB, exit code) of ``runbook plan NAME`` through CliRunner."""
    from click.testing import CliRunner

    from runbook.cli import main

    previous = Path.cwd()
    os.chdir(cwd)
    try:
        walls, peaks, code = [], [], 0
        for _ in range(repeat):
            tracemalloc.start()
            start = time.perf_counter()
            result = CliRunner().invoke(main, ["plan", name], catch_exceptions=True)
            walls.append(time.perf_counter() - start)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
            code = result.exit_code
        return min(walls), max(peaks), code
    finally:
        os.chdir(previous)


def as_process(name: str, cwd: Path, repeat: int) -> tuple[float, float, int]:
    """(best wall s, largest peak RSS MB, exit code) of ``python -m runbook plan NAME``."""
    walls, peaks, code = [], [], 0
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        for _ in range(repeat):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _MEASURED, str(peak), "plan", name],
                cwd=cwd, env=ENV, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
            )
            walls.append(time.perf_counter() - start)
            peaks.append(int(peak.read_text()) / 1024 if peak.exists() else 0.0)
            code = proc.returncode
    return min(walls), max(peaks), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--only", help="cases whose name contains this")
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("RUNBOOK_")]:
        del os.environ[name]
    rows: list[tuple[str, int, str, str, str, str, bool]] = []

    def keep(case: str) -> bool:
        return not args.only or args.only in case

    with tempfile.TemporaryDirectory() as tmp:
        warm_up = Path(tmp) / "warm-up"
        warm_up.mkdir()
        (warm_up / "ok.yaml").write_text("name: ok\nsteps:\n  - {id: a, kind: manual, instruction: '{{ vars.x }}'}\nvars: {x: 1}\n")
        in_process("ok.yaml", warm_up, 1)  # imports and first-use costs are not the first case's
        for path in sorted(CORPUS.glob("*.yaml")):
            if not keep(path.name):
                continue
            cwd = Path(tmp) / path.stem
            cwd.mkdir()
            shutil.copy(path, cwd / path.name)
            wall, traced, code = in_process(path.name, cwd, args.repeat)
            pwall, rss, _ = as_process(path.name, cwd, args.repeat)
            ok = max(wall, pwall) < MAX_SECONDS and rss < MAX_RSS_MB
            rows.append((path.name, code, f"{wall:.2f}", f"{traced:.0f}", f"{pwall:.2f}", f"{rss:.0f}", ok))
        for case, (make, limit) in GENERATED.items():
            if not keep(case):
                continue
            cwd = Path(tmp) / f"gen{len(rows)}"
            cwd.mkdir()
            make(cwd / "case.yaml")
            wall, traced, code = in_process("case.yaml", cwd, args.repeat)
            pwall, rss, _ = as_process("case.yaml", cwd, args.repeat)
            ok = max(wall, pwall) < limit and rss < MAX_RSS_MB
            rows.append((case, code, f"{wall:.2f}", f"{traced:.0f}", f"{pwall:.2f}", f"{rss:.0f}", ok))
        for case, make in SPECIAL.items():
            if not keep(case):
                continue
            cwd = Path(tmp) / f"special{len(rows)}"
            cwd.mkdir()
            make(cwd / "case.yaml")
            pwall, rss, code = as_process("case.yaml", cwd, args.repeat)
            rows.append((case, code, "-", "-", f"{pwall:.2f}", f"{rss:.0f}", pwall < MAX_SECONDS and rss < MAX_RSS_MB))
    print(f"best of {args.repeat}; load average {os.getloadavg()[0]:.1f}; target: refused in < {MAX_SECONDS:.0f} s "
          f"(100 MB file < 2 s), peak RSS < {MAX_RSS_MB} MB\n")
    header = ("case", "exit", "in-proc s", "traced MB", "process s", "RSS MB", "")
    print(f"{header[0]:<36} {header[1]:>4} {header[2]:>10} {header[3]:>10} {header[4]:>10} {header[5]:>7}")
    for case, code, wall, traced, pwall, rss, ok in rows:
        print(f"{case:<36} {code:>4} {wall:>10} {traced:>10} {pwall:>10} {rss:>7}  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
