"""One command on one host: connect (the master connection), then run the script over it.

Runs in a worker thread: it touches no state store and no reporter, it only
puts what happens on the run's queue (output lines, the ssh client's process
group) for the main thread to journal.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runbook.fleet.inventory import Host
from runbook.fleet.remote import script, stdin_payload
from runbook.fleet.ssh import SSH_FAILED, SshTransport, explain_ssh_failure
from runbook.process import ProcessSupervisor, run_process


@dataclass
class HostResult:
    host: str
    status: str  # passed, failed, unreachable, interrupted, timed_out
    exit_code: int | None = None
    error: str | None = None
    duration: float = 0.0
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"


# What workers tell the main thread: ("line", host, text), ("pgid", host, pgid).
Messages = queue.Queue[tuple[str, str, object]]


def run_on_host(
    transport: SshTransport,
    host: Host,
    run: str | list[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    timeout: float | None,
    supervisor: ProcessSupervisor | None,
    mask: Callable[[str], str],
    messages: Messages,
) -> HostResult:
    started = time.monotonic()
    if supervisor is not None and supervisor.stop_requested:
        return HostResult(host.name, "interrupted", error="interrupted before it started")
    failure = transport.connect(host)
    if failure is not None:
        return HostResult(host.name, "unreachable", error=mask(failure.message), duration=time.monotonic() - started)
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        messages.put(("line", host.name, line))

    result = run_process(
        transport.command_argv(host),
        stdin=stdin_payload(script(run, cwd=cwd, env=env)),
        timeout=timeout,
        on_line=on_line,
        mask=mask,
        supervisor=supervisor,
        on_start=lambda pgid: messages.put(("pgid", host.name, pgid)),
    )
    duration = time.monotonic() - started
    if result.interrupted or (supervisor is not None and supervisor.stop_requested):
        return HostResult(host.name, "interrupted", error="interrupted", duration=duration, lines=lines)
    if result.timed_out:
        return HostResult(host.name, "timed_out", error=f"timed out after {timeout:g}s", duration=duration, lines=lines)
    if result.returncode == SSH_FAILED:
        why = explain_ssh_failure(host, "\n".join(lines))
        return HostResult(host.name, "unreachable", SSH_FAILED, mask(f"{why.message} (or the command exited 255)"), duration, lines)
    if result.returncode != 0:
        return HostResult(host.name, "failed", result.returncode, f"exited with status {result.returncode}", duration, lines)
    return HostResult(host.name, "passed", 0, None, duration, lines)
