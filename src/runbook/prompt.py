"""Yes/no questions to the operator at the terminal, which a signal interrupts.

A plain ``sys.stdin.readline()`` cannot be interrupted by the process
supervisor: its handler returns (it only records the request), and Python
then restarts the read (PEP 475), so Ctrl-C and SIGTERM at a confirmation
were ignored until SIGKILL. Here the answer is read only once ``poll`` says
the terminal has a line, and the same ``poll`` watches the supervisor's
wake-up pipe: a stop requested while waiting raises ``Interrupted`` at once.

Without an installed supervisor (before a run holds anything) the default
handlers apply: SIGINT raises KeyboardInterrupt out of ``poll``, the other
signals end the process.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from runbook.errors import Interrupted

if TYPE_CHECKING:
    from runbook.process import ProcessSupervisor

# Asks a yes/no question; True only for an explicit yes.
Prompt = Callable[[str], bool]

# An answer longer than this is not a yes; reading stops there rather than growing without end.
_MAX_ANSWER = 4096
# A terminal that hangs up reads as end of input a moment before its SIGHUP is
# handled; this long is waited for the signal, so that the hang-up is not taken for a no.
_HANGUP_SIGNAL_WAIT_MS = 1000


def make_prompt(supervisor: ProcessSupervisor | None, *, stdin: int = 0, stdout: TextIO | None = None) -> Prompt:
    """A prompt that asks on ``stdout`` and reads the answer from the ``stdin`` file
    descriptor; anything but y/yes (or end of input) is a no. Raises ``Interrupted``
    when ``supervisor`` saw a signal before or while it waits."""

    def ask(question: str) -> bool:
        _check(supervisor)
        out = stdout if stdout is not None else sys.stdout
        out.write(question + "\nProceed? [y/N] ")
        out.flush()
        try:
            answer = _read_line(stdin, supervisor)
        except Interrupted:
            # What follows (the run's end) starts on a line of its own, not after "^C".
            out.write("\n")
            out.flush()
            raise
        return answer.strip().lower() in ("y", "yes")

    return ask


def _check(supervisor: ProcessSupervisor | None) -> None:
    if supervisor is not None and supervisor.stop_requested:
        assert supervisor.signal_received is not None
        raise Interrupted(supervisor.signal_received)


def _read_line(fd: int, supervisor: ProcessSupervisor | None) -> str:
    """One line from ``fd`` (without waiting past its newline), or what came before end of input."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    wake_fd = supervisor.wake_fd if supervisor is not None else None
    if wake_fd is not None:
        poller.register(wake_fd, select.POLLIN)
    was_terminal = os.isatty(fd)
    line = bytearray()
    while True:
        events = poller.poll()
        # The flag, not the wake-up byte, says whether a stop was requested: the
        # byte may have been consumed by a command's supervision loop already.
        _check(supervisor)
        if not any(ready == fd for ready, _ in events):
            continue
        # A terminal in canonical mode returns at most one line per read, and only
        # once it is complete; one byte at a time keeps a pipe's next lines unread.
        try:
            chunk = os.read(fd, 1)
        except OSError:
            # EIO: the terminal is gone; like end of input.
            chunk = b""
        if not chunk:
            break
        line += chunk
        if chunk == b"\n" or len(line) >= _MAX_ANSWER:
            break
    if was_terminal and not line and wake_fd is not None and not os.isatty(fd):
        # Not Ctrl-D: the terminal hung up (an SSH disconnect), and its SIGHUP is on
        # its way. That is no answer at all rather than a no.
        wake = select.poll()
        wake.register(wake_fd, select.POLLIN)
        wake.poll(_HANGUP_SIGNAL_WAIT_MS)
    _check(supervisor)
    return line.decode("utf-8", "replace")
