"""``check: http`` - an endpoint answers with the expected status and content.

Sent through ``runbook.httpclient``, like the http step: the check-wide
``timeout`` key bounds the whole request (default 10s), the TLS keys
(``verify``, ``ca_bundle``, ``client_cert``, ``client_key``) are the step's,
and at most ``MAX_BODY_BYTES`` of the body are read. Proxies from the
environment apply except for loopback addresses. Redirects are followed unless
``expect_status`` lists a 3xx code, which is then observed as is.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runbook.checks.base import CheckContext, CheckResult
from runbook.expect import ExpectationText, RegexText, parse_expectation
from runbook.httpclient import HttpProblem, HttpTimeout, Request, TlsOptions, mask_credentials, send
from runbook.steps.http import HttpUrl

DEFAULT_TIMEOUT_S = 10.0
# Enough for any health or status document; a huge body is not read whole.
MAX_BODY_BYTES = 1024 * 1024
EXCERPT = 120
_MISSING = object()


class HttpCheckParams(TlsOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl
    method: str = "GET"
    headers: dict[str, str] = {}
    # Aliased: a field called ``json`` would shadow BaseModel.json.
    json_body: Any = Field(None, alias="json")
    expect_status: int | list[int] = 200
    # Dotted path into the JSON response ("items.0.name") -> expectation.
    expect_json: dict[str, ExpectationText] = {}
    body_matches: RegexText | None = None


    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return value.upper()

    @property
    def statuses(self) -> list[int]:
        return [self.expect_status] if isinstance(self.expect_status, int) else list(self.expect_status)


def _show_status(statuses: list[int]) -> str:
    return "status " + " or ".join(map(str, statuses))


def _excerpt(text: str) -> str:
    """The start of ``text`` on one line. Give it masked text: a secret cut here escapes masking."""
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[:EXCERPT] + "…"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "missing"
    return "null" if value is None else json.dumps(value)


def _lookup(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.lstrip("-").isdigit() and -len(document) <= int(part) < len(document):
            document = document[int(part)]
        else:
            return _MISSING
    return document


class HttpCheck:
    name: ClassVar[str] = "http"
    Params: ClassVar[type[BaseModel]] = HttpCheckParams
    read_only: ClassVar[bool] = True

    def describe(self, params: HttpCheckParams) -> str:
        parts = [_show_status(params.statuses)]
        parts += [f"{path} {parse_expectation(e)}" for path, e in params.expect_json.items()]
        if params.body_matches:
            parts.append(f"body matches /{params.body_matches}/")
        return f"{params.method} {params.url}  -> expect {', '.join(parts)}"

    def evaluate(self, params: HttpCheckParams, ctx: CheckContext) -> CheckResult:
        expected_status = _show_status(params.statuses)
        mask_credentials(dict(params.headers), ctx.masker)
        request = Request(params.method, params.url, dict(params.headers), params.json_body, has_body=params.json_body is not None)
        timeout = ctx.timeout or DEFAULT_TIMEOUT_S
        try:
            answer = send(
                request,
                tls=params,
                timeout=timeout,
                max_body=MAX_BODY_BYTES,
                base_dir=ctx.runbook_dir or ctx.workdir,
                follow_redirects=not any(300 <= s < 400 for s in params.statuses),
            )
        except HttpTimeout:
            return CheckResult(False, "timed out", expected_status, f"{params.method} {params.url}: no answer within {timeout:g}s")
        except HttpProblem as err:
            return CheckResult(False, "no response", expected_status, ctx.masker.mask(f"{params.method} {params.url}: {err}"))
        status, body = answer.status, answer.text
        observed_status = f"status {status}"
        if status not in params.statuses:
            return CheckResult(False, observed_status, expected_status, _excerpt(ctx.masker.mask(body)) or None)
        if params.expect_json:
            try:
                document = json.loads(body)
            except ValueError:
                excerpt = _excerpt(ctx.masker.mask(body)) or None
                return CheckResult(False, f"{observed_status}, body not JSON", "a JSON body", excerpt)
            for path, raw in params.expect_json.items():
                expectation = parse_expectation(raw)
                value = _lookup(document, path)
                if not expectation.holds(None if value is _MISSING else value):
                    shown = ctx.masker.mask(_show(value))
                    return CheckResult(False, f"{observed_status}, {path} = {shown}", f"{path} {expectation}")
        if params.body_matches and not re.search(params.body_matches, body, re.M):
            observed = f"{observed_status}, body {_excerpt(ctx.masker.mask(body))!r}"
            return CheckResult(False, observed, f"body matching /{params.body_matches}/")
        return CheckResult(True, observed_status, expected_status)


KIND = HttpCheck()
