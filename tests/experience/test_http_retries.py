"""A step's retries are for answers that may change: an HTTP 4xx fails the step at once (408 and 429 excepted)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.experience.conftest import Scratch

RUNBOOK = """\
name: retries
vars:
  url: {required: true}
steps:
  - id: call
    kind: http
    method: POST
    url: "{{ vars.url }}"
    retries: 2
    irreversible: true
"""


class Counting(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Counting.hits[self.path] = Counting.hits.get(self.path, 0) + 1
        status = int(self.path.strip("/"))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("status", "requests"), [(404, 1), (409, 1), (429, 3), (503, 3)])
def test_retries_skip_a_4xx(scratch: Scratch, server: str, status: int, requests: int) -> None:
    scratch.write("retries.yaml", RUNBOOK)
    result = scratch.runbook("run", "retries.yaml", "--var", f"url={server}/{status}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert Counting.hits[f"/{status}"] == requests
    assert f"HTTP {status}" in result.stdout
