"""What a webhook receiver costs a run: none, a prompt one, one that is down, one that never answers.

A one-step runbook with a start and a success message to a webhook on 127.0.0.1,
run as ``runbook run`` (a real process); median wall time of --repeat runs each.
tests/experience/test_notifications.py checks without a clock that a receiver that
never answers does not hold the run until it answers; here is by how much it delays
the run's end: the drain time ``runbook.notify.WEBHOOK_DRAIN_S`` (5 s) over the prompt
case, plus at most 0.5 s.

    python bench/notify_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from runbook.notify import WEBHOOK_DRAIN_S

# As on an operator's machine: Python caches compiled modules (some CI images turn that off).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("RUNBOOK_")}
RUNBOOK = """\
name: hooked
vars:
  hook: {required: true}
notifications:
  channels:
    - {type: webhook, url: "{{ vars.hook }}", timeout: 120s, retries: 1}
  messages:
    start: starting
    success: done
steps:
  - id: work
    kind: command
    run: echo working
"""
PLAIN = "name: plain\nsteps:\n  - id: work\n    kind: command\n    run: echo working\n"


def receiver(hold: threading.Event | None) -> ThreadingHTTPServer:
    """A webhook receiver; with ``hold``, every request waits (unanswered) until it is set."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if hold is not None:
                hold.wait(300)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]  # a held request's client is gone
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_run(root: Path, args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "runbook", "run", *args], cwd=root, env=ENV, capture_output=True, timeout=120)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    prompt, hold = receiver(None), threading.Event()
    silent = receiver(hold)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runbooks").mkdir()
        (root / "runbooks" / "hooked.yaml").write_text(RUNBOOK)
        (root / "runbooks" / "plain.yaml").write_text(PLAIN)
        url = lambda server: "http://{}:{}".format(*server.server_address[:2])  # noqa: E731
        rows = [
            ("no notifications", median_run(root, ["plain.yaml"], args.repeat)),
            ("receiver answers at once", median_run(root, ["hooked.yaml", "--var", f"hook={url(prompt)}"], args.repeat)),
            ("receiver down (refused, 1 retry after 0.5 s)", median_run(root, ["hooked.yaml", "--var", f"hook=http://127.0.0.1:{closed_port()}"], args.repeat)),
            ("receiver never answers (timeout 120 s)", median_run(root, ["hooked.yaml", "--var", f"hook={url(silent)}"], args.repeat)),
        ]
    hold.set()
    base = rows[1][1]
    print(f"median of {args.repeat}; load average {os.getloadavg()[0]:.1f}; WEBHOOK_DRAIN_S = {WEBHOOK_DRAIN_S:g} s\n")
    print(f"{'receiver':<46} {'run wall':>9} {'over prompt':>12}")
    for label, seconds in rows:
        print(f"{label:<46} {seconds:>8.2f}s {seconds - base:>+11.2f}s")
    delay, target = rows[3][1] - base, WEBHOOK_DRAIN_S + 0.5
    print(f"\nnever-answering receiver delays the end by {delay:.2f} s (target <= drain + 0.5 s = {target:g} s): {'ok' if delay <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
