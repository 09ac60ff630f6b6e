"""How long ``runbook run`` takes to exit after a signal, where an operator sends one.

    python bench/signals_bench.py [--repeat 3] [--places prompt step gate]

For each place (a confirmation prompt on a pty, a step's ``sleep 30``, a
``check: command`` gate's ``sleep 30``) and each handled signal, a scratch
project runs until that place is reached, the signal is sent with kill(2), and
the time until the process has exited is measured (the fastest of
``--repeat``: the machine is shared). Also printed: the exit code, the run's
status in the state store, whether the step's process group is gone, and the
time a bare ``runbook --version`` takes to start and exit, which bounds what
the interpreter itself costs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from runbook.process import group_alive  # noqa: E402

HEAD = """
name: sig
steps:
  - id: first
    kind: command
    run: "true"
    irreversible: true
"""
PLACES = {
    "prompt": HEAD + """
  - id: deploy
    kind: command
    run: "true"
    irreversible: true
    confirm: Deploy?
""",
    "step": HEAD + """
  - id: slow
    kind: command
    run: "echo $$ > pgid; touch reached; sleep 30"
    irreversible: true
""",
    "gate": HEAD + """
  - id: gated
    kind: command
    run: "true"
    irreversible: true
    gates:
      - check: command
        run: "echo $$ > pgid; touch reached; sleep 30"
""",
}
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TERM"] = "dumb"
    return env


def measure(place: str, signum: int) -> tuple[float, int, str, bool | None]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runbooks").mkdir()
        (root / "runbooks" / "sig.yaml").write_text(PLACES[place])
        master, slave = os.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runbook", "run", "sig.yaml"],
            cwd=root, env=_env(), stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )
        os.close(slave)
        output = b""
        try:
            deadline = time.monotonic() + 60
            while (b"Proceed?" not in output) if place == "prompt" else not (root / "reached").exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{place}: never reached; output: {output[-500:]!r}")
                output += _read(master, 0.02)
            pgid = int((root / "pgid").read_text()) if place != "prompt" else None
            sent = time.monotonic()
            os.kill(proc.pid, signum)
            while proc.poll() is None:
                _read(master, 0.001)
            elapsed = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
        with sqlite3.connect(root / ".runbook" / "state.db") as db:
            status = db.execute("SELECT status FROM runs").fetchone()[0]
        return elapsed, proc.returncode, status, None if pgid is None else not group_alive(pgid)


def _read(fd: int, timeout: float) -> bytes:
    import select

    if select.select([fd], [], [], timeout)[0]:
        try:
            return os.read(fd, 65536)
        except OSError:
            return b""
    return b""


def startup() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "runbook", "--version"], env=_env(), capture_output=True, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--places", nargs="+", choices=list(PLACES), default=list(PLACES))
    args = parser.parse_args()
    print(f"{'place':<8} {'signal':<8} {'exit':>4} {'status':<12} {'group gone':<10} {'signal to exit':>14}")
    for place in args.places:
        for signum in SIGNALS:
            runs = [measure(place, signum) for _ in range(args.repeat)]
            best = min(runs)
            gone = "-" if best[3] is None else ("yes" if all(r[3] for r in runs) else "NO")
            print(f"{place:<8} {signal.Signals(signum).name:<8} {best[1]:>4} {best[2]:<12} {gone:<10} {best[0]:>12.3f} s")
    print(f"runbook --version (start and exit): {min(startup() for _ in range(args.repeat)):.3f} s")


if __name__ == "__main__":
    main()
