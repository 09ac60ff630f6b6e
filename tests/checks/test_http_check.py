"""``check: http`` against a real local HTTP server."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.checks import CheckContext, CheckResult, get_check_kind
from runbook.connections import Connections
from runbook.masking import Masker
from tests.local_http import QuietHandler, serving

SECRET = "t0ken-value"
HEALTH = {"status": "ok", "db": {"latency_ms": 3, "error": None}, "items": [{"name": "a"}, {"name": "b"}]}


class Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(200, json.dumps(HEALTH))
        elif self.path == "/degraded":
            self.answer(503, json.dumps({"status": "degraded", "reason": f"token {SECRET} expired"}))
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(0.5)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up on purpose
                self.answer(200, "late")
        else:
            self.answer(200, "<html>version 1.4.2</html>", "text/html")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        echo = {"received": json.loads(body), "content_type": self.headers["Content-Type"]}
        self.answer(201, json.dumps({**echo, "auth": self.headers["Authorization"]}))



@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(Handler) as url:
        yield url


@pytest.fixture
def ctx(tmp_path: Path) -> CheckContext:
    masker = Masker([SECRET])
    return CheckContext(workdir=tmp_path, env={}, masker=masker, connections=Connections({}, masker), timeout=5.0)


def http(ctx: CheckContext, **params: Any) -> CheckResult:
    kind = get_check_kind("http")
    return kind.evaluate(kind.Params.model_validate(params), ctx)


def test_status_and_json_expectations_pass(ctx: CheckContext, base_url: str) -> None:
    """A 200 whose JSON satisfies every dotted-path expectation passes."""
    result = http(
        ctx,
        url=f"{base_url}/health",
        expect_json={"status": "== 'ok'", "db.latency_ms": "< 100", "db.error": "is null", "items.1.name": "b"},
    )
    assert result == CheckResult(True, "status 200", "status 200")


def test_wrong_status_is_observed_with_a_masked_body_excerpt(ctx: CheckContext, base_url: str) -> None:
    """An unexpected status fails, showing it and the start of the body with secrets masked."""
    result = http(ctx, url=f"{base_url}/degraded")
    assert (result.ok, result.observed, result.expected) == (False, "status 503", "status 200")
    assert "degraded" in (result.detail or "") and "***" in (result.detail or "") and SECRET not in (result.detail or "")
    assert http(ctx, url=f"{base_url}/degraded", expect_status=[200, 503]).ok


def test_first_failing_json_value_is_observed(ctx: CheckContext, base_url: str) -> None:
    """The first JSON expectation that does not hold is reported with its path and value."""
    expect_json = {"status": "== 'ok'", "db.latency_ms": "< 1", "items.0.name": "z"}
    result = http(ctx, url=f"{base_url}/health", expect_json=expect_json)
    assert (result.ok, result.observed, result.expected) == (False, "status 200, db.latency_ms = 3", "db.latency_ms < 1")
    missing = http(ctx, url=f"{base_url}/health", expect_json={"db.version": "is not null"})
    assert (missing.observed, missing.expected) == ("status 200, db.version = missing", "db.version is not null")
    not_json = http(ctx, url=f"{base_url}/", expect_json={"status": "== 'ok'"})
    assert (not_json.ok, not_json.observed) == (False, "status 200, body not JSON")


def test_body_matches(ctx: CheckContext, base_url: str) -> None:
    """body_matches searches the body with a regular expression."""
    assert http(ctx, url=f"{base_url}/", body_matches=r"version 1\.4\.\d+").ok
    result = http(ctx, url=f"{base_url}/", body_matches=r"version 2\.")
    assert (result.ok, result.expected) == (False, r"body matching /version 2\./")
    assert "version 1.4.2" in (result.observed or "")


def test_post_sends_json_and_headers(ctx: CheckContext, base_url: str) -> None:
    """method, headers and a json body reach the server; the JSON content type is set for it."""
    result = http(
        ctx,
        url=f"{base_url}/echo",
        method="post",
        headers={"Authorization": "Bearer x"},
        json={"dry_run": True, "n": 2},
        expect_status=201,
        expect_json={
            "received.n": 2,
            "received.dry_run": "== True",
            "content_type": "== 'application/json'",
            "auth": "== 'Bearer x'",
        },
    )
    assert result.ok, result


def test_redirects_followed_unless_a_3xx_is_expected(ctx: CheckContext, base_url: str) -> None:
    """A redirect is followed by default, and observed as is when expect_status lists a 3xx."""
    assert http(ctx, url=f"{base_url}/moved", expect_json={"status": "== 'ok'"}).ok
    assert http(ctx, url=f"{base_url}/moved", expect_status=302) == CheckResult(True, "status 302", "status 302")


def test_localhost_bypasses_environment_proxy(ctx: CheckContext, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment is not used for a loopback URL."""
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert http(ctx, url=f"{base_url}/health").ok


def test_no_response_and_timeout(ctx: CheckContext, base_url: str) -> None:
    """A refused connection and a server slower than the check's timeout fail without raising."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    refused = http(ctx, url=f"http://127.0.0.1:{closed_port}/health")
    assert (refused.ok, refused.observed, refused.expected) == (False, "no response", "status 200")
    assert "refused" in (refused.detail or "").lower()
    ctx.timeout = 0.2
    slow = http(ctx, url=f"{base_url}/slow")
    assert (slow.ok, slow.observed) == (False, "timed out")


def test_params_are_validated() -> None:
    """Non-HTTP URLs, bad expectations and bad regular expressions are refused at load time."""
    params = get_check_kind("http").Params
    for bad in (
        {"url": "ftp://example.com"},
        {"url": "http://x", "expect_json": {"a": "matches '('"}},
        {"url": "http://x", "body_matches": "("},
        {"url": "http://x", "timeout": 3},
    ):
        with pytest.raises(ValidationError):
            params.model_validate(bad)
