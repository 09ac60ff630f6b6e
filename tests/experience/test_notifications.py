"""Notifications to a real HTTP receiver: what arrives, and that a bad receiver never hurts a run."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runbook.notify import WEBHOOK_DRAIN_S
from tests.experience.conftest import Scratch

SECRET = "tok-5ecret-value"

HOOKS = """\
name: hooks
vars:
  hook:
    required: true
  token:
    default: tok-5ecret-value
    secret: true
notifications:
  channels:
    - type: webhook
      url: "{{ vars.hook }}/run"
      timeout: TIMEOUT
      retries: RETRIES
  messages:
    start:
      title: Maintenance starts
      body: "Deploying {{ runbook.name }} (run {{ run.id }}) with token {{ vars.token }}"
    success: "Done: run {{ run.id }} in {{ environment }}"
    failure: "Stopped: run {{ run.id }}"
steps:
  - id: announce
    title: Tell the team
    kind: notify
    subject: Heads-up
    message: "Step says the token is {{ vars.token }}"
    channels:
      - type: webhook
        url: "{{ vars.hook }}/step"
        timeout: TIMEOUT
        retries: RETRIES
  - id: work
    kind: command
    run: echo working
"""


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1; ``hold`` makes it keep each request waiting until released."""

    server: ThreadingHTTPServer
    received: list[tuple[str, str, bytes]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    status: int = 200
    answered: int = 0
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            me.received.append((self.path, self.headers.get("Content-Type", ""), body))
            me.headers.append(dict(self.headers))
            if me.hold:
                me.release.wait(300)
            self.send_response(me.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            me.answered += 1

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output to assertions

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Receiver(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder[0]
    holder[0].release.set()
    server.shutdown()
    server.server_close()


def _write(scratch: Scratch, *, timeout: str = "5s", retries: int = 2) -> None:
    scratch.write("hooks.yaml", HOOKS.replace("TIMEOUT", timeout).replace("RETRIES", str(retries)))


def test_start_step_and_success_arrive_as_slack_json_with_secrets_masked(scratch: Scratch, receiver: Receiver) -> None:
    _write(scratch)
    result = scratch.runbook("run", "hooks.yaml", "--var", f"hook={receiver.url}")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = scratch.latest_run_id()
    by_path: dict[str, list[dict[str, str]]] = {}
    for path, content_type, body in receiver.received:
        assert content_type == "application/json"
        assert SECRET.encode() not in body
        payload = json.loads(body)
        assert list(payload) == ["text"], "Slack-compatible: one text field"
        by_path.setdefault(path, []).append(payload)
    assert by_path["/run"] == [
        {"text": f"*Maintenance starts*\nDeploying hooks (run {run_id}) with token ***"},
        {"text": f"Done: run {run_id} in default"},
    ]
    assert by_path["/step"] == [{"text": "*Heads-up*\nStep says the token is ***"}]
    assert SECRET not in result.stdout


def test_a_receiver_that_is_down_costs_a_warning_not_the_run(scratch: Scratch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    _write(scratch, retries=1)
    result = scratch.runbook("run", "hooks.yaml", "--var", f"hook={closed}")
    assert result.returncode == 0, result.stdout + result.stderr
    # Every sender gave up (and said so) before the run ended: none was left waiting.
    assert "webhook notification not delivered after 2 attempt(s)" in result.stdout
    assert "✔ [announce] passed" in result.stdout and "✔ [work] passed" in result.stdout


@pytest.mark.slow
def test_a_slow_receiver_does_not_hold_the_run_until_it_answers(scratch: Scratch, receiver: Receiver) -> None:
    """The receiver holds every request unanswered (for minutes, until the test ends), far past the
    channel's 120 s timeout: the run still ends, having waited at most WEBHOOK_DRAIN_S for it.
    The clock-free evidence: the run exited while no request had been answered yet. A run that
    waited for the answers would outlive the subprocess's limit of 12x the drain time (a hang
    guard, not a timing; bench/notify_bench.py measures the delay)."""
    receiver.hold = True
    scratch.write(
        "slow.yaml",
        """\
        name: slow
        vars:
          hook: {required: true}
        notifications:
          channels:
            - {type: webhook, url: "{{ vars.hook }}", timeout: 120s, retries: 0}
          messages:
            start: starting
            success: done
        steps:
          - id: work
            kind: command
            run: echo working
        """,
    )
    result = scratch.runbook("run", "slow.yaml", "--var", f"hook={receiver.url}", timeout=WEBHOOK_DRAIN_S * 12)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [body for _, _, body in receiver.received] == [b'{"text": "starting"}', b'{"text": "done"}']
    assert receiver.answered == 0, "the run waited for the receiver's answer"
    # Not waiting is no silence: the operator is told, on the console and in the run's events.
    assert f"webhook to 127.0.0.1 still had not answered after {WEBHOOK_DRAIN_S:g}s" in result.stdout
    events = scratch.runbook("show", scratch.latest_run_id(), "--events")
    assert "still had not answered" in events.stdout


HEADERS = """\
name: headers
vars:
  hook: {required: true}
  token: {default: tok-5ecret-value, secret: true}
notifications:
  channels:
    - type: webhook
      url: "{{ vars.hook }}"
      retries: 2
      headers:
        X-Api-Key: "{{ vars.token }}"
        X-Run: "{{ run.id }}"
  messages:
    success: done
steps:
  - id: work
    kind: command
    run: echo working
"""


def test_webhook_headers_are_rendered_sent_and_never_printed(scratch: Scratch, receiver: Receiver) -> None:
    scratch.write("headers.yaml", HEADERS)
    result = scratch.runbook("run", "headers.yaml", "--var", f"hook={receiver.url}", "--log-format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    (sent,) = receiver.headers
    assert sent["X-Api-Key"] == SECRET
    assert sent["X-Run"] == scratch.latest_run_id()
    assert SECRET not in result.stdout + result.stderr
    assert SECRET not in scratch.runbook("show", scratch.latest_run_id(), "--events").stdout


def test_webhook_header_template_is_checked_by_validate(scratch: Scratch) -> None:
    scratch.write("headers.yaml", HEADERS.replace("vars.token }}", "vars.tokn }}"))
    result = scratch.runbook("validate", "headers.yaml")
    assert result.returncode == 2
    assert "notifications.channels[0].headers.X-Api-Key" in result.stderr + result.stdout
    assert "undefined var 'tokn'" in result.stderr + result.stdout


def test_a_4xx_from_the_receiver_is_not_retried(scratch: Scratch, receiver: Receiver) -> None:
    receiver.status = 403
    scratch.write("headers.yaml", HEADERS)
    result = scratch.runbook("run", "headers.yaml", "--var", f"hook={receiver.url}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(receiver.received) == 1, "a 403 was retried"
    assert "webhook notification refused by the receiver: HTTP 403 Forbidden (not retried)" in result.stdout


def test_a_hanging_receiver_past_the_channel_timeout_is_a_printed_and_recorded_warning(scratch: Scratch, receiver: Receiver) -> None:
    """The channel's timeout (1 s, in all) ends the attempt; the run goes on and says so."""
    receiver.hold = True
    _write(scratch, timeout="1s", retries=0)
    result = scratch.runbook("run", "hooks.yaml", "--var", f"hook={receiver.url}", "--log-format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [json.loads(line) for line in result.stdout.splitlines() if '"warning"' in line]
    assert any("the receiver did not answer within 1s" in w.get("message", "") and w["level"] == "warning" for w in warnings), result.stdout
    assert receiver.answered == 0
