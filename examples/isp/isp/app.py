"""The API server (stdlib ``http.server``), at version v1 or v2.

Routes:

- ``GET /health`` -> 200 ``{"status": "ok", "version": "v1"|"v2"}``. Liveness
  only: a v2 server on an un-migrated database still answers ok, exactly like
  the seed's broken deployment, so the log is where the failure shows.
- ``POST /api/v1/services/internet-plans/subscriptions`` with a JSON body
  ``plan_id``, ``customer_id``, ``subscriber_id``, ``start_date`` -> 201 and
  the subscription; 422 ``{"detail": ...}`` for an invalid request (logged as
  ``ValueError: ...``); 500 on a database error (logged through
  ``describe_db_error``, so a missing column reads
  ``ProgrammingError: column "subscriber_id" does not exist``).

Everything is logged to ``<home>/logs/api-server.log``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from isp.errors import describe_db_error
from isp.releases import RELEASES, Release, SubscriptionRequest
from isp.settings import Settings, file_logger

SUBSCRIPTIONS_PATH = "/api/v1/services/internet-plans/subscriptions"
MAX_BODY_BYTES = 64 * 1024


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, release: Release, engine: Engine, log: logging.Logger) -> None:
        self.release = release
        self.engine = engine
        self.log = log
        super().__init__(("127.0.0.1", port), ApiHandler)


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer

    def do_GET(self) -> None:
        if self.path != "/health":
            self._answer(HTTPStatus.NOT_FOUND, {"detail": "not found"})
            return
        self._answer(HTTPStatus.OK, {"status": "ok", "version": self.server.release.name})

    def do_POST(self) -> None:
        if self.path != SUBSCRIPTIONS_PATH:
            self._answer(HTTPStatus.NOT_FOUND, {"detail": "not found"})
            return
        log = self.server.log
        try:
            request = SubscriptionRequest.parse(self._json_body())
            with self.server.engine.begin() as conn:
                created = self.server.release.create_subscription(conn, request)
        except ValueError as err:
            log.warning("ValueError: %s", err)
            self._answer(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": str(err)})
            return
        except DBAPIError as err:
            log.error("POST %s failed: %s", SUBSCRIPTIONS_PATH, describe_db_error(err))
            self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"detail": "internal server error"})
            return
        log.info("created subscription id=%s subscriber_id=%s", created["id"], created.get("subscriber_id"))
        self._answer(HTTPStatus.CREATED, created)

    def _json_body(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body larger than {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except json.JSONDecodeError as err:
            raise ValueError(f"request body is not JSON: {err}") from err

    def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        self.server.log.info("%s %s", self.address_string(), format % args)


def serve(settings: Settings, version: str, port: int) -> None:
    """Run the server in the foreground until SIGTERM or SIGINT (`ispctl up` runs this detached)."""
    log = file_logger("isp.api", settings.api_log)
    release = RELEASES[version]
    engine = settings.engine()
    _self_check(release, engine, log)
    server = ApiServer(port, release, engine, log)

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever(), which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("api-server %s listening on 127.0.0.1:%d database=%s", version, port, settings.safe_url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        engine.dispose()
        log.info("api-server %s stopped", version)


def _self_check(release: Release, engine: Engine, log: logging.Logger) -> None:
    """Query every column this release uses, so a schema it cannot work with is logged at start."""
    try:
        with engine.connect() as conn:
            release.startup_check(conn)
    except DBAPIError as err:
        log.error("startup self-check failed: %s", describe_db_error(err))
    else:
        log.info("startup self-check passed")
