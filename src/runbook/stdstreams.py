"""Closed standard streams (``<&-``, ``>&-``, ``2>&-``), made safe before any command runs.

Python sets ``sys.stdin``/``sys.stdout``/``sys.stderr`` to None when the
descriptor was closed at start-up, and the operating system hands the lowest
free descriptor to the next ``open``: with fd 1 closed, the state database or a
step log would become "standard output", and anything written there (by us, or
by a child that inherits it) would land inside that file. So each closed
descriptor is first plugged with /dev/null, then:

* stdin closed means no terminal to ask: it reads as empty, so a step that
  needs a confirmation pauses (exit 4) as it does under ``</dev/null``;
* stdout closed is a usage error (exit 2): the results of every verb go there,
  and a run whose progress nobody can see should not start; the message goes to
  stderr when that is open;
* stderr closed: the command runs; its warnings and errors are discarded, and
  the exit code still says how it ended.

Standard output closed *later*, by its reader (``runbook run ... | head -1``:
the write fails with EPIPE, a ``BrokenPipeError``): a command that changes
things (``run``, ``rollback``) must not stop half way because nobody reads its
progress, so ``keep_going_without_reader`` points standard output at /dev/null
on the first broken pipe, says so once on stderr, and the run goes on to its
end and its own exit code. Any other verb ends quietly (``_call`` in cli.py):
what the reader read is what it wanted.
"""

from __future__ import annotations

import io
import os
import select
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from runbook.errors import ExitCode

_STREAMS = ((0, "stdin"), (1, "stdout"), (2, "stderr"))

CLOSED_STDOUT_MESSAGE = (
    "error: standard output is closed (>&-); runbook writes its results there\n"
    "  hint: redirect it instead, to a file or to /dev/null (>/dev/null)"
)


def _plug(fd: int) -> None:
    """Point descriptor ``fd`` at /dev/null, unless something opened in the meantime already holds it."""
    try:
        os.fstat(fd)
        return
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def closed_at_start() -> list[str]:
    """The standard streams that were closed when the interpreter started (``sys.__stdout__`` is None then)."""
    return [name for _, name in _STREAMS if getattr(sys, f"__{name}__") is None]


def guard_standard_streams() -> None:
    """Plug closed standard descriptors; exit 2 if stdout is closed (see the module docstring)."""
    closed = closed_at_start()
    for fd, name in _STREAMS:
        if name in closed:
            _plug(fd)
    if "stdin" in closed:
        sys.stdin = open(os.devnull, encoding="utf-8")  # kept open for the life of the process
    if "stderr" in closed:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    if "stdout" in closed:
        if "stderr" not in closed:
            sys.stderr.write(CLOSED_STDOUT_MESSAGE + "\n")
            sys.stderr.flush()
        raise SystemExit(int(ExitCode.INVALID))


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an open terminal (False for None: a stream closed at start-up)."""
    return stream is not None and not stream.closed and stream.isatty()

@contextmanager
def reader_may_stop_early() -> Iterator[None]:
    """Output a reader may stop reading part way (``runbook docs format | head``): what it
    read is what it wanted, so a broken pipe ends the command quietly instead of as an error.
    Standard output then points at /dev/null, so the interpreter's last flush has nowhere to fail."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_reader_left():
            raise


READER_GONE_MESSAGE = (
    "runbook: standard output was closed by its reader (broken pipe): output stops here, the run goes on "
    "(follow it with `runbook status` and `runbook logs RUN`)"
)


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def stdout_reader_left() -> bool:
    """Whether standard output is a pipe whose reader has closed it (so a write fails with EPIPE);
    if so, standard output now points at /dev/null, so the interpreter's last flush succeeds.

    Asked before treating a BrokenPipeError as "the reader stopped": one from anywhere
    else (a child's stdin, a socket) is not that, and stays an error."""
    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        left = any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False
    if left:
        _to_devnull(1)
    return left


class _WithoutReader(io.TextIOWrapper):
    """A standard stream that, when its reader goes away, writes to /dev/null from then on."""

    announce = False
    _gone = False

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        if self._gone:
            return
        self._gone = True
        _to_devnull(self.fileno())
        try:
            super().flush()  # what was pending now goes to /dev/null
        except OSError:
            pass
        if self.announce:
            try:
                sys.stderr.write(READER_GONE_MESSAGE + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


# The wrappers replaced by _guarded: one collected would close the buffer it shares with its
# replacement (the /dev/null that stands for a stderr closed at start-up is no sys.__stderr__).
_REPLACED: list[TextIO] = []


def _guarded(stream: TextIO, *, announce: bool) -> TextIO:
    if isinstance(stream, _WithoutReader) or not isinstance(stream, io.TextIOWrapper):
        return stream
    stream.flush()
    _REPLACED.append(stream)
    guarded = _WithoutReader(
        stream.buffer, encoding=stream.encoding, errors=stream.errors, line_buffering=stream.line_buffering, write_through=stream.write_through
    )
    guarded.announce = announce
    return guarded


def keep_going_without_reader() -> None:
    """For commands that change things (run, rollback): a reader that stops reading standard
    output (or standard error) does not stop the command (see the module docstring)."""
    sys.stderr = _guarded(sys.stderr, announce=False)
    sys.stdout = _guarded(sys.stdout, announce=True)
