"""Notifications: the runbook's announcements, sent to console, file and webhook channels.

Sending never fails or blocks a run: a webhook gets a short timeout and a few
retries on a daemon thread, and any error becomes a warning event. Messages
are rendered from templates and masked before they leave the process.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runbook.errors import RunbookError
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


def send_webhook(url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float, retries: int, warn: Warn) -> None:
    """POST Slack-compatible JSON; retries with backoff, then gives up with a warning."""
    data = json.dumps(payload).encode()
    request_headers = {"Content-Type": "application/json", **headers}
    delay = 0.5
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, headers=request_headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status < 300:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            problem = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            problem = str(getattr(err, "reason", err))
        except ValueError as err:  # not a URL urllib can send to; retrying will not help
            warn(f"webhook notification not sent: {err}")
            return
        if attempt < retries:
            time.sleep(delay)
            delay *= 2
    warn(f"webhook notification not delivered after {retries + 1} attempt(s): {problem}")


class Dispatcher:
    """Sends one message to a list of channels."""

    def __init__(self, masker: Masker, workdir: Path, console: Callable[[str | None, str], None], warn: Warn) -> None:
        self.masker = masker
        self.workdir = workdir
        self.console = console
        self.warn = warn
        self.threads: list[threading.Thread] = []

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
                    thread = threading.Thread(
                        target=send_webhook,
                        args=(channel.url, {"text": text}, channel.headers, channel.timeout, channel.retries, self.warn),
                        daemon=True,
                    )
                    thread.start()
                    self.threads.append(thread)
            except (OSError, RunbookError) as err:
                self.warn(f"{channel.type} notification failed: {err}")

    def drain(self, timeout: float = WEBHOOK_DRAIN_S) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.threads.clear()


def render_message(message: Message, render: Callable[[str], str]) -> tuple[str | None, str]:
    return (render(message.title) if message.title else None, render(message.body))
