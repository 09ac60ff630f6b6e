"""What an http step costs a run: a runbook of N GETs to a server on 127.0.0.1, as ``runbook run``.

Median wall time of --repeat runs; run it with each interpreter to compare two installs
(urllib before issue 15, httpx after: tests/http check the behaviour, this the time).

    python bench/http_bench.py [--steps 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("RUNBOOK_")}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "15")
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def runbook(steps: int) -> str:
    body = "".join(
        f"  - id: get{i}\n    kind: http\n    url: \"{{{{ vars.url }}}}/health\"\n    expect_json: {{status: \"== 'ok'\"}}\n    dry_run: safe\n"
        for i in range(steps)
    )
    return "name: gets\nvars:\n  url: {required: true}\nsteps:\n" + body


def median_run(root: Path, args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "runbook", "run", *args], cwd=root, env=ENV, capture_output=True, timeout=300)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://{}:{}".format(*server.server_address[:2])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "runbooks").mkdir()
        (root / "runbooks" / "one.yaml").write_text(runbook(1))
        (root / "runbooks" / "many.yaml").write_text(runbook(args.steps))
        one = median_run(root, ["one.yaml", "--var", f"url={url}"], args.repeat)
        many = median_run(root, ["many.yaml", "--var", f"url={url}"], args.repeat)
    server.shutdown()
    print(f"{sys.executable}: median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print(f"1 http step: {one:.2f} s; {args.steps} http steps: {many:.2f} s; per further step: {(many - one) / (args.steps - 1) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
