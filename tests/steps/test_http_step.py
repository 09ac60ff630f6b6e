"""The http step kind against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import pytest

from runbook.connections import Connections
from runbook.masking import Masker
from runbook.steps import get_step_kind
from runbook.steps.base import StepContext, StepOutcome
from runbook.steps.http import KIND, HttpParams
from tests.local_http import QuietHandler, serving
from tests.steps.harness import MemoryCheckpoints, closed_port


class Api(QuietHandler):
    """A tiny API: POST /subscribers creates, /boom fails, /slow stalls, /page is HTML."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))})
        self.answer(201, json.dumps({"id": 7, "status": "created", "items": [{"id": 1}, {"id": 2}]}))

    def do_GET(self) -> None:
        if self.path == "/whoami":
            self.answer(403, f"forbidden for {self.headers['Authorization']}", "text/plain")
        elif self.path == "/boom":
            self.answer(500, "internal error\ndatabase unavailable\n", "text/plain")
        elif self.path == "/slow":
            time.sleep(2)
            self.answer(200, "{}")
        elif self.path == "/page":
            self.answer(200, "<html><body>ok</body></html>", "text/html; charset=utf-8")
        else:
            self.answer(200, json.dumps({"status": "ok", "version": "v2"}))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(Api) as url:
        yield url


@pytest.fixture
def ctx(tmp_path: Path) -> StepContext:
    masker = Masker()
    return StepContext(
        run_id="r",
        step_id="s",
        workdir=tmp_path,
        env=dict(os.environ),
        masker=masker,
        connections=Connections({}, masker),
        output=lambda _line: None,
        checkpoints=MemoryCheckpoints(),
    )


def run(ctx: StepContext, **params: Any) -> tuple[StepOutcome, list[str]]:
    lines: list[str] = []
    ctx.output = lines.append
    return KIND.run(HttpParams.model_validate(params), ctx), lines


def test_post_json_answered_201(server: str, ctx: StepContext) -> None:
    outcome, lines = run(
        ctx,
        url=f"{server}/subscribers",
        method="post",
        headers={"Authorization": "Bearer t0ken-value"},
        json={"name": "Ada", "plan": 3},
        expect_json={"id": "> 0", "status": "== 'created'", "items.1.id": 2, "missing.path": "is null"},
    )
    assert outcome.ok, outcome.error
    assert outcome.outputs["status"] == 201
    assert outcome.outputs["json"] == {"id": 7, "status": "created", "items": [{"id": 1}, {"id": 2}]}
    assert json.loads(outcome.outputs["body"]) == outcome.outputs["json"]
    request = Api.received[-1]
    assert request["body"] == {"name": "Ada", "plan": 3}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer t0ken-value"
    assert lines[0] == f"POST {server}/subscribers"
    assert lines[1].startswith("-> 201 Created (")
    assert "json status == 'created': ok (observed 'created')" in lines


def test_http_500_is_a_failed_outcome_with_the_body(server: str, ctx: StepContext) -> None:
    outcome, _ = run(ctx, url=f"{server}/boom")
    assert not outcome.ok
    assert outcome.error == f"GET {server}/boom: HTTP 500 Internal Server Error, expected 200, 201, 204"
    assert outcome.tail == ["internal error", "database unavailable"]
    assert outcome.outputs == {"status": 500, "json": None, "body": "internal error\ndatabase unavailable\n"}
    expected, _ = run(ctx, url=f"{server}/boom", expect_status=500)
    assert expected.ok


def test_echoed_credentials_are_masked_in_the_tail(server: str, ctx: StepContext) -> None:
    outcome, _ = run(ctx, url=f"{server}/whoami", headers={"Authorization": "Bearer t0ken-value"})
    assert not outcome.ok and outcome.outputs["status"] == 403
    assert outcome.tail == ["forbidden for ***"]


def test_json_expectation_failures_in_one_line(server: str, ctx: StepContext) -> None:
    outcome, lines = run(ctx, url=f"{server}/health", expect_json={"status": "ok", "version": "== 'v3'"})
    assert not outcome.ok
    assert outcome.error == "json version: observed 'v2', expected == 'v3'"
    assert "json version == 'v3': FAILED (observed 'v2')" in lines
    page, _ = run(ctx, url=f"{server}/page", expect_json={"status": "ok"})
    assert not page.ok and page.error and page.error.startswith("the response is not JSON; ")
    assert page.outputs["body"] == "<html><body>ok</body></html>" and page.outputs["json"] is None


def test_url_credentials_become_basic_auth(server: str, ctx: StepContext) -> None:
    outcome, lines = run(ctx, url=server.replace("://", "://deploy:S3cret-Pa55word@") + "/subscribers", method="POST", json={})
    assert outcome.ok, outcome.error
    assert Api.received[-1]["headers"]["Authorization"] == "Basic ZGVwbG95OlMzY3JldC1QYTU1d29yZA=="
    assert lines[0] == f"POST {server.replace('://', '://deploy:***@')}/subscribers"


def test_connection_refused_never_shows_the_password(ctx: StepContext) -> None:
    password = "S3cret-Pa55word"
    port = closed_port()
    outcome, lines = run(ctx, url=f"http://deploy:{password}@127.0.0.1:{port}/hook?token=abc123&x=1")
    assert not outcome.ok and outcome.error
    shown = f"http://deploy:***@127.0.0.1:{port}/hook?token=***&x=1"
    assert outcome.error == f"GET {shown}: ConnectionRefusedError: Connection refused"
    assert all(password not in line and "abc123" not in line for line in lines)


def test_step_timeout_bounds_the_request(server: str, ctx: StepContext) -> None:
    ctx.timeout = 0.3
    outcome, _ = run(ctx, url=f"{server}/slow")
    # /slow answers 200 after 2 s: a failed, timed-out outcome means the timeout ended the request.
    assert not outcome.ok and outcome.timed_out
    assert outcome.error == f"GET {server}/slow: timed out after 0.3s"


def test_describe_hides_credentials() -> None:
    params = HttpParams.model_validate(
        {
            "url": "https://ops:pw1234@api.example.com/v1/deploy?api_key=k-123&env=prod",
            "method": "put",
            "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k-456", "X-Request-Id": "r-1"},
            "json": {"version": "v2"},
        }
    )
    assert KIND.describe(params) == (
        "PUT https://ops:***@api.example.com/v1/deploy?api_key=***&env=prod\n"
        "  Authorization: ***\n"
        "  X-Api-Key: ***\n"
        "  X-Request-Id: r-1\n"
        '  json: {"version":"v2"}'
    )
    assert KIND.describe(HttpParams(url="http://localhost/health")) == "GET http://localhost/health"


def test_params_validation() -> None:
    assert HttpParams(url="http://h/x", method="delete").method == "DELETE"
    with pytest.raises(pydantic.ValidationError, match="unknown HTTP method"):
        HttpParams(url="http://h/x", method="FETCH")
    with pytest.raises(pydantic.ValidationError, match="http:// or https://"):
        HttpParams(url="ftp://h/x")
    with pytest.raises(pydantic.ValidationError, match="needs a value"):
        HttpParams.model_validate({"url": "http://h/x", "expect_json": {"a": "=="}})
    with pytest.raises(pydantic.ValidationError):
        HttpParams.model_validate({"url": "http://h/x", "body": {}})
    assert HttpParams(url="http://h/x", expect_status=202).statuses == [202]
    assert get_step_kind("http") is KIND and KIND.changes_data
