"""Engine overhead per step, and resume latency, against the cost of spawning processes.

- 500 steps running `true` through `runbook run`, against a shell loop spawning
  /bin/true 500 times: the difference per step is what the engine and its durable
  state add (target <= 5 ms per step).
- A 500-step run that failed at step 499: `runbook run --resume` reaches step 499
  (target <= 0.5 s, gate checks aside).
- `runbook plan` of the same runbook, for scale (tests/reliability/test_scale.py
  checks a 200-step plan/run/resume without a clock; `--steps 5000` is the size that
  test ran until its timings moved here: run <= 25 ms per step, resume <= 15 s).

    python bench/engine_bench.py [--steps 500] [--state postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def runbook_text(steps: int, fail_at: int | None) -> str:
    lines = ["name: bench", "steps:"]
    for i in range(steps):
        run = "test -f ok" if i == fail_at else "true"
        lines += [f"  - id: s{i}", "    kind: command", f"    run: [{'sh, -c, ' + repr(run) if i == fail_at else '/bin/true'}]", "    irreversible: true"]
    return "\n".join(lines) + "\n"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--state", help="state store URL (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    n = args.steps
    # As on an operator's machine: Python caches compiled modules (some CI images turn that off).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.state:
        env["RUNBOOK_STATE_URL"] = args.state
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runbooks").mkdir()
        shell_s, _ = timed(["sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"], root, env)
        startup_s, _ = timed([sys.executable, "-m", "runbook", "--help"], root, env)
        (root / "runbooks" / "bench.yaml").write_text(runbook_text(n, None))
        plan_s, code = timed([sys.executable, "-m", "runbook", "plan", "bench.yaml"], root, env)
        assert code == 0, f"plan failed with {code}"
        run_s, code = timed([sys.executable, "-m", "runbook", "run", "bench.yaml"], root, env)
        assert code == 0, f"run failed with {code}"
        per_step_ms = (run_s - startup_s - shell_s) / n * 1000
        (root / "runbooks" / "bench.yaml").write_text(runbook_text(n, n - 1))
        env2 = {**env}
        fail_s, code = timed([sys.executable, "-m", "runbook", "run", "bench.yaml"], root, env2)
        assert code == 1, f"expected the failing run to exit 1, got {code}"
        (root / "ok").write_text("")
        resume_s, code = timed([sys.executable, "-m", "runbook", "run", "bench.yaml", "--resume"], root, env2)
        assert code == 0, f"resume failed with {code}"
    print(f"{'measure':<52} {'value':>10} {'target':>10}")
    print(f"{'shell loop spawning /bin/true x' + str(n):<52} {shell_s:>9.3f}s")
    print(f"{'runbook plan, ' + str(n) + ' steps':<52} {plan_s:>9.3f}s")
    print(f"{'runbook run, ' + str(n) + ' steps of /bin/true':<52} {run_s:>9.3f}s")
    print(f"{'  of which process start-up (runbook --help)':<52} {startup_s:>9.3f}s")
    print(f"{'engine + durable state per step, over the spawn':<52} {per_step_ms:>8.2f}ms {'<= 5ms':>10}  {'ok' if per_step_ms <= 5 else 'MISSED'}")
    print(f"{'ratio run / shell loop':<52} {run_s / shell_s:>9.1f}x")
    print(f"{'resume a run failed at step ' + str(n - 1) + ' (whole command)':<52} {resume_s:>9.3f}s {'<= 0.5s':>10}  {'ok' if resume_s <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
