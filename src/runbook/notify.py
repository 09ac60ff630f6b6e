"""Notifications: the runbook's announcements, sent to console, file and webhook channels.

Sending never fails or blocks a run: a webhook gets a short total timeout per
attempt and a few retries (never after a 4xx: the receiver said no) on a daemon
thread, and any error becomes a warning event. A receiver that has not answered
when the run ends is waited for at most ``WEBHOOK_DRAIN_S``, then left with a
warning. Messages are rendered from templates and masked before they leave the
process; so are a webhook's headers (rendered by the caller), whose values are
credentials as often as not and never printed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runbook.errors import RunbookError
from runbook.httpclient import HttpProblem, HttpTimeout, Request, TlsOptions, mask_credentials, prepare, send
from runbook.masking import Masker
from runbook.model import Channel, Message
from runbook.safefile import append_text

Warn = Callable[[str], None]
# Joined at the end of a run so a slow receiver delays exit by at most this much.
WEBHOOK_DRAIN_S = 5.0


def send_file(path: Path, workdir: Path, title: str | None, body: str) -> None:
    """Append one message to a file channel's file (``path`` relative to ``workdir``), never through a link."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_text(path, workdir, f"--- {stamp} {title or ''}\n{body.rstrip()}\n", what="the notification file")


# A receiver's answer is not read beyond this.
WEBHOOK_MAX_BODY = 4096


def send_webhook(url: str, payload: dict[str, Any], headers: dict[str, str], tls: TlsOptions, timeout: float, retries: int, warn: Warn, base_dir: Path | None = None) -> None:
    """POST Slack-compatible JSON; retries with backoff (not after a 4xx), then gives up with a warning.
    ``warn`` gets masked text only: the caller's masker knows the header credentials."""
    delay = 0.5
    request = Request("POST", url, dict(headers), payload, has_body=True)
    problem = "not sent"
    for attempt in range(retries + 1):
        try:
            answer = send(request, tls=tls, timeout=timeout, max_body=WEBHOOK_MAX_BODY, base_dir=base_dir)
            if answer.status < 300:
                return
            problem = f"HTTP {answer.status} {answer.reason}"
            if 400 <= answer.status < 500 and answer.status not in (408, 429):
                warn(f"webhook notification refused by the receiver: {problem} (not retried)")
                return
        except HttpTimeout:
            problem = f"the receiver did not answer within {timeout:g}s"
        except HttpProblem as err:
            problem = str(err)
        if attempt < retries:
            time.sleep(delay)
            delay *= 2
    warn(f"webhook notification not delivered after {retries + 1} attempt(s): {problem}")


class Dispatcher:
    """Sends one message to a list of channels."""

    def __init__(
        self, masker: Masker, workdir: Path, console: Callable[[str | None, str], None], warn: Warn, runbook_dir: Path | None = None
    ) -> None:
        self.masker = masker
        self.workdir = workdir
        # A webhook's ca_bundle or client_cert, when relative, is a file of the runbook's.
        self.runbook_dir = runbook_dir or workdir
        self.console = console
        self.warn = lambda text: warn(masker.mask(text))
        self.threads: list[tuple[threading.Thread, str]] = []

    def send(self, channels: list[Channel], title: str | None, body: str, event: str | None = None) -> None:
        title = self.masker.mask(title) if title else None
        body = self.masker.mask(body)
        for channel in channels:
            if event is not None and channel.events is not None and event not in channel.events:
                continue
            try:
                if channel.type == "console":
                    self.console(title, body)
                elif channel.type == "file" and channel.path:
                    send_file(Path(channel.path), self.workdir, title, body)
                elif channel.type == "webhook" and channel.url:
                    text = f"*{title}*\n{body}" if title else body
                    mask_credentials(channel.headers, self.masker)
                    prepare(channel, self.runbook_dir)
                    thread = threading.Thread(
                        target=send_webhook,
                        args=(channel.url, {"text": text}, channel.headers, channel, channel.timeout, channel.retries, self.warn, self.runbook_dir),
                        daemon=True,
                    )
                    thread.start()
                    self.threads.append((thread, urlsplit(channel.url).hostname or "?"))  # the path of a webhook URL is often its secret
            except (OSError, RunbookError) as err:
                self.warn(f"{channel.type} notification failed: {err}")

    def drain(self, timeout: float = WEBHOOK_DRAIN_S) -> None:
        """Wait for the webhooks still sending, at most ``timeout`` in all; warn for each left behind."""
        deadline = time.monotonic() + timeout
        for thread, url in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.warn(f"webhook to {url} still had not answered after {timeout:g}s; not waiting longer (the notification may be lost)")
        self.threads.clear()


def render_message(message: Message, render: Callable[[str], str]) -> tuple[str | None, str]:
    return (render(message.title) if message.title else None, render(message.body))
