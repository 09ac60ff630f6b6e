"""``kind: http`` - one HTTP request, checked against expected statuses and JSON values.

``changes_data`` is a class attribute, so it is True for every http step,
GETs included: the loader then asks a GET for ``dry_run: safe`` (or a
rollback, or ``irreversible: true``) like any other request.

``timeout`` is also a step-level key: set on the step, it reaches this kind
as ``ctx.timeout`` and bounds the request; otherwise ``Params.timeout`` does.
Either is a total for the whole exchange (``runbook.httpclient``), as are the
TLS keys (``verify``, ``ca_bundle``, ``client_cert``, ``client_key``). At most
``MAX_BODY_BYTES`` of the answer are read. An unexpected 4xx fails the step
without its ``retries`` (the same request gets the same answer), except 408
and 429.

Outputs: ``status``, ``json`` (the parsed body, or None when it is not JSON
or was cut) and ``body`` (the text, at most ``MAX_BODY_CHARS``). In ``expect_json`` a
dotted path walks objects by key and arrays by index (``items.0.id``); a path
that is not there reads as null.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Annotated, Any, ClassVar
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from runbook.expect import ExpectationText, parse_expectation
from runbook.httpclient import SECRET_NAME as _SECRET_NAME
from runbook.httpclient import HttpProblem, HttpTimeout, Request, TlsOptions, mask_credentials, send
from runbook.masking import MASK, Masker
from runbook.model import Duration
from runbook.steps.base import StepContext, StepOutcome

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Read from the wire at most this much of an answer; the rest is not fetched.
MAX_BODY_BYTES = 1024 * 1024
# Outputs land in the state store: enough for an API's answer, bounded for a page of HTML.
MAX_BODY_CHARS = 64 * 1024
TAIL_LINES = 20
DESCRIBE_JSON_CHARS = 200
# A 4xx answer will be the same answer next time: the step fails without its retries,
# except these two, which ask the client to come back later.
RETRYABLE_4XX = frozenset({408, 429})
_QUERY_PARAM = re.compile(r"(?P<name>[^?&=#]+)=(?P<value>[^&#]*)")


def _http_url(value: str) -> str:
    if urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


# Shared with ``check: http``: both send to the same kinds of URL.
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class HttpParams(TlsOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl
    method: str = "GET"
    headers: dict[str, str] = {}
    # ``json`` would shadow BaseModel.json; runbooks still write ``json:``.
    body: Any = Field(default=None, alias="json", description="A JSON request body.")
    timeout: Duration = 30.0
    expect_status: int | list[int] = [200, 201, 204]
    expect_json: dict[str, ExpectationText] = Field(default={}, description="Dotted path -> expectation, e.g. {'status': \"== 'ok'\"}.")

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.upper()
        if method not in METHODS:
            raise ValueError(f"unknown HTTP method {value!r}; use one of {', '.join(sorted(METHODS))}")
        return method


    @property
    def statuses(self) -> list[int]:
        return [self.expect_status] if isinstance(self.expect_status, int) else list(self.expect_status)


class HttpStep:
    name: ClassVar[str] = "http"
    Params: ClassVar[type[BaseModel]] = HttpParams
    # Per class, not per request: a GET is counted as changing data too (see the module docstring).
    changes_data: ClassVar[bool] = True
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: HttpParams) -> str:
        lines = [f"{params.method} {shown_url(params.url, Masker())}"]
        lines += [f"  {name}: {MASK if _SECRET_NAME.search(name) else value}" for name, value in params.headers.items()]
        if params.body is not None:
            body = json.dumps(params.body, separators=(",", ":"), default=str)
            if len(body) > DESCRIBE_JSON_CHARS:
                body = body[:DESCRIBE_JSON_CHARS] + " ..."
            lines.append(f"  json: {body}")
        return "\n".join(lines)

    def run(self, params: HttpParams, ctx: StepContext) -> StepOutcome:
        target = f"{params.method} {shown_url(params.url, ctx.masker)}"
        # Servers echo credentials back in errors; "Bearer X" is masked whole and as X.
        mask_credentials(dict(params.headers), ctx.masker)
        url, headers = _without_userinfo(params.url, dict(params.headers), ctx.masker)
        timeout = ctx.timeout or params.timeout
        request = Request(params.method, url, headers, params.body, has_body=params.body is not None)
        ctx.output(target)
        try:
            answer = send(request, tls=params, timeout=timeout, max_body=MAX_BODY_BYTES, base_dir=ctx.runbook_dir or ctx.workdir)
        except HttpTimeout:
            return StepOutcome(False, error=f"{target}: timed out after {timeout:g}s", timed_out=True)
        except HttpProblem as err:
            return StepOutcome(False, error=ctx.masker.mask(f"{target}: {err}"))
        status, reason = answer.status, answer.reason
        cut = f", cut at {MAX_BODY_BYTES // 1024} KiB" if answer.truncated else ""
        ctx.output(f"-> {status} {reason} ({answer.elapsed_s * 1000:.0f} ms, {len(answer.body)} bytes{cut})")

        text = answer.text
        parsed = _parse_json(text)
        # Masked whole, then cut: a secret cut in two is no longer recognised (outputs are
        # recorded masked anyway, so later steps see the same text).
        outputs = {"status": status, "json": parsed, "body": ctx.masker.mask(text)[:MAX_BODY_CHARS]}
        body_tail = [ctx.masker.mask(line)[:500] for line in text.splitlines()[:TAIL_LINES]]
        if status not in params.statuses:
            expected = ", ".join(str(s) for s in params.statuses)
            error = ctx.masker.mask(f"{target}: HTTP {status} {reason}, expected {expected}")
            final = 400 <= status < 500 and status not in RETRYABLE_4XX
            return StepOutcome(False, outputs, error, body_tail, final=final)
        failures = []
        for path, text_expectation in params.expect_json.items():
            expectation = parse_expectation(text_expectation)
            observed = _lookup(parsed, path)
            held = expectation.holds(observed)
            ctx.output(f"json {path} {expectation}: {'ok' if held else 'FAILED'} (observed {observed!r})")
            if not held:
                failures.append(f"json {path}: observed {observed!r}, expected {expectation}")
        if failures:
            if parsed is None:
                failures.insert(0, "the response is not JSON")
            return StepOutcome(False, outputs, ctx.masker.mask("; ".join(failures)), body_tail)
        return StepOutcome(True, outputs, summary=f"HTTP {status}")


def shown_url(url: str, masker: Masker) -> str:
    """The URL as printed: its password and credential-like query values hidden."""

    def hide(match: re.Match[str]) -> str:
        return f"{match['name']}={MASK}" if _SECRET_NAME.search(match["name"]) and match["value"] else match[0]

    base, query_mark, rest = url.partition("?")
    return masker.mask(base + query_mark + _QUERY_PARAM.sub(hide, rest))


def _without_userinfo(url: str, headers: dict[str, str], masker: Masker) -> tuple[str, dict[str, str]]:
    """``user:password@`` in a URL as a Basic Authorization header, its password and
    token registered with the masker before anything is sent or printed."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, headers
    password = unquote(parts.password or "")
    masker.add(password)
    if not _has_header(headers, "Authorization"):
        token = base64.b64encode(f"{unquote(parts.username)}:{password}".encode()).decode("ascii")
        masker.add(token)
        headers["Authorization"] = f"Basic {token}"
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])), headers


def _has_header(headers: dict[str, str], name: str) -> bool:
    return any(key.lower() == name.lower() for key in headers)


def _parse_json(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _lookup(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", part) and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


KIND = HttpStep()
