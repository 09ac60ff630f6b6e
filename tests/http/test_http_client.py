"""The shared HTTP client (runbook.httpclient) through its three users, against real local servers:
HTTPS with a CA made here (server and client certificates), a total timeout against a server that
trickles, a bounded body read, and no retry of a 4xx."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from runbook.checks import get_check_kind  # noqa: E402
from runbook.checks.base import CheckContext  # noqa: E402
from runbook.connections import Connections  # noqa: E402
from runbook.httpclient import TlsOptions  # noqa: E402
from runbook.masking import Masker  # noqa: E402
from runbook.notify import send_webhook  # noqa: E402
from runbook.steps.base import StepContext, StepOutcome  # noqa: E402
from runbook.steps.http import KIND, MAX_BODY_BYTES, MAX_BODY_CHARS, HttpParams  # noqa: E402

BIG = 3 * 1024 * 1024


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A certificate with its key in the same file.
    client_combined: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("runbook test CA", ca_key, None, ca_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert("127.0.0.1", server_key, ca.subject, ca_key, ca=False, server=True)
    client = _cert("runbook client", client_key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    files = {
        "ca.pem": ca.public_bytes(pem),
        "server.pem": server.public_bytes(pem),
        "server.key": _pem_key(server_key),
        "client.pem": client.public_bytes(pem),
        "client.key": _pem_key(client_key),
        "client-combined.pem": client.public_bytes(pem) + _pem_key(client_key),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return Pki(*(root / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key", "client-combined.pem")))


class Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if self.path == "/big":
            self._send(200, b"x" * BIG)
        elif self.path == "/secret-at-the-cut":
            self._send(200, b"x" * (MAX_BODY_CHARS - 8) + SECRET_AT_THE_CUT.encode() + b"x" * 100)
        elif self.path == "/trickle":
            # One byte every 0.2 s of a 100-byte body: each read is quick, the whole takes 20 s.
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up at its total timeout, as it should
        elif self.path == "/missing":
            self._send(404, b'{"error": "no such thing"}')
        else:
            self._send(200, b'{"status": "ok", "client": "%s"}' % (b"yes" if peer else b"no"))

    do_POST = do_GET


def _serve(context: ssl.SSLContext | None) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def https(pki: Pki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    yield from _serve(context)


@pytest.fixture(scope="module")
def mutual(pki: Pki) -> Iterator[str]:
    """HTTPS that refuses a client without a certificate from the test CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    yield from _serve(context)


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    yield from _serve(None)


class _NoCheckpoints:
    def load(self) -> None:
        return None

    def save(self, data: dict[str, Any]) -> None:
        pass


def _step(tmp_path: Path, **params: Any) -> tuple[StepOutcome, list[str]]:
    masker = Masker()
    lines: list[str] = []
    ctx = StepContext("r", "s", tmp_path, dict(os.environ), masker, Connections({}, masker), lines.append, _NoCheckpoints())  # type: ignore[arg-type]
    return KIND.run(HttpParams.model_validate(params), ctx), lines


def _check(tmp_path: Path, timeout: float = 5.0, **params: Any) -> Any:
    masker = Masker()
    kind = get_check_kind("http")
    ctx = CheckContext(workdir=tmp_path, env={}, masker=masker, connections=Connections({}, masker), timeout=timeout)
    return kind.evaluate(kind.Params.model_validate(params), ctx)


def test_step_trusts_the_ca_bundle_and_only_it(https: str, pki: Pki, tmp_path: Path) -> None:
    outcome, _ = _step(tmp_path, url=f"{https}/", ca_bundle=str(pki.ca))
    assert outcome.ok, outcome.error
    untrusted, _ = _step(tmp_path, url=f"{https}/")
    assert not untrusted.ok and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
    unchecked, _ = _step(tmp_path, url=f"{https}/", verify=False)
    assert unchecked.ok, unchecked.error


def test_ca_bundle_relative_to_the_runbook_directory(https: str, pki: Pki, tmp_path: Path) -> None:
    masker = Masker()
    ctx = StepContext("r", "s", tmp_path, {}, masker, Connections({}, masker), lambda _l: None, _NoCheckpoints(), runbook_dir=pki.ca.parent)  # type: ignore[arg-type]
    assert KIND.run(HttpParams.model_validate({"url": f"{https}/", "ca_bundle": pki.ca.name}), ctx).ok
    missing, _ = _step(tmp_path, url=f"{https}/", ca_bundle="nope.pem")
    assert not missing.ok and f"no file {tmp_path / 'nope.pem'}" in (missing.error or "")


def test_client_certificate_for_a_server_that_asks(mutual: str, pki: Pki, tmp_path: Path) -> None:
    refused, _ = _step(tmp_path, url=f"{mutual}/", ca_bundle=str(pki.ca))
    assert not refused.ok
    separate, _ = _step(tmp_path, url=f"{mutual}/", ca_bundle=str(pki.ca), client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    assert separate.ok, separate.error
    assert separate.outputs["json"] == {"status": "ok", "client": "yes"}
    combined, _ = _step(tmp_path, url=f"{mutual}/", ca_bundle=str(pki.ca), client_cert=str(pki.client_combined))
    assert combined.ok, combined.error


def test_check_uses_the_same_tls_options(mutual: str, pki: Pki, tmp_path: Path) -> None:
    result = _check(tmp_path, url=f"{mutual}/", ca_bundle=str(pki.ca), client_cert=str(pki.client_cert), client_key=str(pki.client_key), expect_json={"client": "== 'yes'"})
    assert result.ok, result
    assert not _check(tmp_path, url=f"{mutual}/").ok


def test_webhook_uses_the_same_tls_options(mutual: str, pki: Pki) -> None:
    warnings: list[str] = []
    tls = TlsOptions(ca_bundle=str(pki.ca), client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    send_webhook(f"{mutual}/hook", {"text": "hi"}, {}, tls, 5.0, 0, warnings.append)
    assert warnings == []
    send_webhook(f"{mutual}/hook", {"text": "hi"}, {}, TlsOptions(), 5.0, 0, warnings.append)
    assert len(warnings) == 1 and "CERTIFICATE_VERIFY_FAILED" in warnings[0]


def test_step_reads_a_bounded_body(plain: str, tmp_path: Path) -> None:
    outcome, lines = _step(tmp_path, url=f"{plain}/big")
    assert outcome.ok, outcome.error
    assert len(outcome.outputs["body"]) == MAX_BODY_CHARS
    assert f"{MAX_BODY_BYTES} bytes, cut at {MAX_BODY_BYTES // 1024} KiB" in lines[1]


SECRET_AT_THE_CUT = "tok-Secret-at-the-cut-9"


def test_a_secret_across_the_body_cut_is_masked_whole(plain: str, tmp_path: Path) -> None:
    """The stored body is cut at MAX_BODY_CHARS after masking: a secret across the cut leaves no part."""
    masker = Masker([SECRET_AT_THE_CUT])
    ctx = StepContext("r", "s", tmp_path, {}, masker, Connections({}, masker), lambda _l: None, _NoCheckpoints())  # type: ignore[arg-type]
    outcome = KIND.run(HttpParams.model_validate({"url": f"{plain}/secret-at-the-cut"}), ctx)
    assert outcome.ok, outcome.error
    body = outcome.outputs["body"]
    assert "x***x" in body and SECRET_AT_THE_CUT[:8] not in body and len(body) == MAX_BODY_CHARS


def test_timeout_is_a_total_not_per_read(plain: str, tmp_path: Path) -> None:
    """Every byte of /trickle comes well within the timeout; the whole answer does not."""
    outcome, _ = _step(tmp_path, url=f"{plain}/trickle", timeout="1s")
    assert not outcome.ok and outcome.timed_out
    assert outcome.error == f"GET {plain}/trickle: timed out after 1s"
    result = _check(tmp_path, 1.0, url=f"{plain}/trickle")
    assert not result.ok and result.observed == "timed out"


def test_webhook_4xx_not_retried_5xx_retried(plain: str) -> None:
    warnings: list[str] = []
    before = Handler.hits.get("/missing", 0)
    send_webhook(f"{plain}/missing", {"text": "hi"}, {}, TlsOptions(), 5.0, 2, warnings.append)
    assert Handler.hits["/missing"] == before + 1
    assert warnings == ["webhook notification refused by the receiver: HTTP 404 Not Found (not retried)"]
