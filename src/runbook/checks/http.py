"""``check: http`` - an endpoint answers with the expected status and content.

Uses urllib (stdlib), so no HTTP client dependency. The check-wide
``timeout`` key bounds the request (default 10s). Proxies from the environment
apply except for localhost, which a proxy could not reach anyway. Redirects
are followed unless ``expect_status`` lists a 3xx code, which is then observed
as is.
"""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.error
import urllib.request
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runbook.checks.base import CheckContext, CheckResult
from runbook.expect import ExpectationText, RegexText, parse_expectation
from runbook.steps.http import HttpUrl

DEFAULT_TIMEOUT_S = 10.0
# Enough for any health or status document; a huge body is not read whole.
MAX_BODY_BYTES = 1024 * 1024
EXCERPT = 120
_MISSING = object()


class HttpCheckParams(BaseModel):
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # urllib then raises HTTPError carrying the 3xx response


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
        try:
            status, body = _request(params, ctx.timeout or DEFAULT_TIMEOUT_S)
        except OSError as err:  # URLError (refused, DNS, TLS) and timeouts while reading
            reason = getattr(err, "reason", err)
            observed = "timed out" if isinstance(reason, TimeoutError) else "no response"
            return CheckResult(False, observed, expected_status, ctx.masker.mask(f"{params.method} {params.url}: {reason}"))
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


def _request(params: HttpCheckParams, timeout: float) -> tuple[int, str]:
    """Status and decoded body; an error status is an answer, not an exception."""
    headers = {"User-Agent": "runbook-check", **params.headers}
    data = None
    if params.json_body is not None:
        data = json.dumps(params.json_body).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    request = urllib.request.Request(params.url, data=data, headers=headers, method=params.method)
    handlers: list[urllib.request.BaseHandler] = []
    if _is_loopback(urlsplit(params.url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))
    if any(300 <= s < 400 for s in params.statuses):
        handlers.append(_NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, _decode(response)
    except urllib.error.HTTPError as err:
        with err:
            return err.code, _decode(err)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _decode(response: Any) -> str:
    charset = response.headers.get_content_charset() or "utf-8"
    return response.read(MAX_BODY_BYTES).decode(charset, errors="replace")


KIND = HttpCheck()
