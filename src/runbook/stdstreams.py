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
"""

from __future__ import annotations

import os
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
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
