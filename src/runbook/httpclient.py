"""One HTTP client for the ``http`` step, the ``http`` check and webhook notifications.

Each request gets a client of its own, built here and closed when the answer is
read (one lifecycle: no pool outlives a request, no copy of these rules
elsewhere). What the three share:

- TLS: ``verify`` (false turns certificate checks off), ``ca_bundle`` (a PEM
  file of CAs to trust instead of the system's) and ``client_cert`` /
  ``client_key`` (PEM files; the key may be inside the certificate file).
  Relative paths start at the runbook's directory, like a SQL file's.
- ``timeout`` is a total: connecting, sending and reading the whole answer
  together, not each socket operation (httpx's own timeouts are per operation,
  so a server trickling a byte at a time could hold a request for ever). The
  request runs on a worker thread; when the total passes, the caller gets
  ``HttpTimeout`` at once, and the worker stops at its next read (each read is
  bounded by the same total).
- At most ``max_body`` bytes of the body are read; the rest is not fetched.
- Proxies from the environment apply, except for loopback addresses.
- Header values whose names say credential (``Authorization``, ``X-Api-Key``,
  ``Cookie``, ...) are registered with the masker before anything is sent, so a
  server echoing one back never prints it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from runbook.masking import Masker

# Header and query parameter names whose values are credentials.
SECRET_NAME = re.compile(r"auth|token|secret|key|cookie|session|passw|signature|credential", re.I)
USER_AGENT = "runbook"


class TlsOptions(BaseModel):
    """The TLS keys of a request, shared by the http step, the http check and a webhook channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verify: bool = Field(True, description="Check the server's certificate (false: do not; for a test server only).")
    ca_bundle: str | None = Field(None, description="PEM file of the CAs to trust instead of the system's.")
    client_cert: str | None = Field(None, description="PEM client certificate (may hold the key too) for servers that ask for one.")
    client_key: str | None = Field(None, description="PEM private key of client_cert, when it is a file of its own.")


class HttpProblem(Exception):
    """No answer: refused, DNS, TLS, a broken connection. The message says which (unmasked)."""


class HttpTimeout(HttpProblem):
    """No whole answer within the total timeout."""


@dataclass
class Answer:
    status: int
    reason: str
    body: bytes
    # True when the body was longer than ``max_body`` and only that much was read.
    truncated: bool
    charset: str | None
    elapsed_s: float
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    has_body: bool = False


def mask_credentials(headers: dict[str, str], masker: Masker) -> None:
    """Register credential header values (whole, and the part after ``Bearer ``) with ``masker``."""
    for name, value in headers.items():
        if SECRET_NAME.search(name) and value:
            masker.add(value)
            masker.add(value.split(" ", 1)[-1])


def prepare(tls: TlsOptions, base_dir: Path | None = None) -> None:
    """Import httpx and build the SSL context now, on the caller's thread: background
    senders started after this begin sending at once, in the order they were started."""
    import encodings.idna  # noqa: F401  (what a first request would import, each a lock the senders would queue on)

    import h11  # noqa: F401
    import httpx

    httpx.Client(verify=False, trust_env=False).close()  # imports its transport, httpcore
    try:
        _ssl_context(tls, base_dir)
    except (HttpProblem, OSError):
        pass  # the request itself reports it


def send(
    request: Request,
    *,
    tls: TlsOptions,
    timeout: float,
    max_body: int,
    base_dir: Path | None = None,
    follow_redirects: bool = True,
) -> Answer:
    """Send ``request`` and read its answer within ``timeout`` seconds in all; an error
    status is an answer. Raises HttpTimeout or HttpProblem when there is none."""
    box: dict[str, Any] = {}
    worker = threading.Thread(
        target=_exchange, args=(request, tls, timeout, max_body, base_dir, follow_redirects, box), name="runbook-http", daemon=True
    )
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise HttpTimeout(f"no answer within {timeout:g}s")
    if "error" in box:
        raise box["error"]
    answer: Answer = box["answer"]
    return answer


def _exchange(
    request: Request, tls: TlsOptions, timeout: float, max_body: int, base_dir: Path | None, follow_redirects: bool, box: dict[str, Any]
) -> None:
    import ssl

    import httpx

    started = time.monotonic()
    try:
        with _client(request.url, tls, timeout, base_dir, follow_redirects) as client:
            headers = {"User-Agent": USER_AGENT, **request.headers}
            content = None
            if request.has_body:
                content = json.dumps(request.json_body).encode("utf-8")
                if not any(name.lower() == "content-type" for name in headers):
                    headers["Content-Type"] = "application/json"
            with client.stream(request.method, request.url, headers=headers, content=content) as response:
                body, truncated = _read(response, max_body, started + timeout)
                box["answer"] = Answer(
                    response.status_code,
                    response.reason_phrase,
                    body,
                    truncated,
                    response.charset_encoding,
                    time.monotonic() - started,
                    dict(response.headers),
                )
    except httpx.TimeoutException:
        box["error"] = HttpTimeout(f"no answer within {timeout:g}s")
    except HttpProblem as err:
        box["error"] = err
    except (httpx.HTTPError, ssl.SSLError, OSError, ValueError) as err:
        box["error"] = HttpProblem(_describe(err))


def _client(url: str, tls: TlsOptions, timeout: float, base_dir: Path | None, follow_redirects: bool) -> Any:
    import httpx

    return httpx.Client(
        verify=_ssl_context(tls, base_dir),
        timeout=httpx.Timeout(timeout),
        follow_redirects=follow_redirects,
        # A proxy could not reach this machine's loopback anyway.
        trust_env=not _is_loopback(urlsplit(url).hostname),
    )


def _ssl_context(tls: TlsOptions, base_dir: Path | None) -> Any:
    """False (no checks), or the context: ``ssl`` and httpx are imported only when a request is made."""
    if not tls.verify and not tls.client_cert:
        return False
    ca = _path(tls.ca_bundle, base_dir) if tls.ca_bundle else None
    cert = _path(tls.client_cert, base_dir) if tls.client_cert else None
    key = _path(tls.client_key, base_dir) if tls.client_key else None
    return _context(tls.verify, ca, cert, key)


@functools.lru_cache(maxsize=32)
def _context(verify: bool, ca: str | None, cert: str | None, key: str | None) -> Any:
    """One SSL context per set of options for the life of the process: loading the system's
    CAs takes a noticeable fraction of a second, and contexts are safe to share between threads."""
    import ssl

    context = ssl.create_default_context(cafile=ca)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, key)
    return context


def _path(value: str, base_dir: Path | None) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise HttpProblem(f"no file {path}")
    return str(path)


def _read(response: Any, max_body: int, deadline: float) -> tuple[bytes, bool]:
    """At most ``max_body`` bytes; past ``deadline`` the caller has given up, and so does this
    (a server trickling a byte at a time would otherwise keep the worker reading)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise HttpTimeout("the answer did not end in time")
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            return b"".join(chunks)[:max_body], True
    return b"".join(chunks), False


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _describe(err: BaseException) -> str:
    import ssl

    # httpx wraps the socket's and ssl's errors; the innermost one says what happened.
    cause: BaseException = err
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    detail = str(cause) if isinstance(cause, ssl.SSLError) else getattr(cause, "strerror", None) or str(cause) or "no details"
    return f"{type(cause).__name__}: {detail}"
