"""What an operator sees and touches: the live terminal view through a real
pty, the HTML report in a real browser, notifications to a real HTTP
receiver, shell completion through click's protocol, the history table."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# CSI (colours, cursor moves, line erase) and OSC sequences, as rich writes them.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


def plain(text: str) -> str:
    """Terminal output without escape sequences and carriage returns: what the eye reads, frame after frame."""
    return _ESCAPES.sub("", text).replace("\r", "")


@dataclass
class Scratch:
    """A scratch project directory with runbooks/ and its own state store."""

    root: Path

    def write(self, name: str, text: str) -> Path:
        path = self.root / "runbooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # The caller's RUNBOOK_* settings and terminal size must not leak into the child, nor CI's
        # CI=true (.ci/run sets it), which turns the live view off (render/choice.py).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_") and k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "CI")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra or {})
        return env

    def runbook(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def latest_run_id(self) -> str:
        return self.runbook("history", "--limit", "1").stdout.splitlines()[1].split()[0]


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    return Scratch(tmp_path)


def _take_controlling_terminal() -> None:
    # In the child, after setsid(): its stdin (the pty's slave side) becomes its controlling terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@dataclass
class Terminal:
    """A child process whose stdin, stdout and stderr are a real pseudo-terminal."""

    proc: subprocess.Popen[bytes]
    master: int
    raw: bytearray = field(default_factory=bytearray)

    @classmethod
    def spawn(
        cls, argv: list[str], *, cwd: Path, env: dict[str, str], rows: int = 40, cols: int = 120, controlling: bool = False
    ) -> Terminal:
        """``controlling``: the pty becomes the child's controlling terminal, as at a login:
        Ctrl-C typed into it sends SIGINT, closing it (a disconnect) sends SIGHUP."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "TERM": "xterm-256color"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_controlling_terminal if controlling else None,
        )
        os.close(slave)
        return cls(proc, master)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the slave side has exited
            return False
        self.raw += chunk
        return bool(chunk)

    def expect(self, needle: str, timeout: float = 20) -> str:
        """Wait until ``needle`` has been printed (escape sequences ignored); the plain output so far."""
        deadline = time.monotonic() + timeout
        while needle not in plain(self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not printed within {timeout}s; output:\n{plain(self.text)[-3000:]}")
            if not self._read(0.2) and needle not in plain(self.text):
                raise AssertionError(f"output ended without {needle!r}:\n{plain(self.text)[-3000:]}")
        return plain(self.text)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 30) -> int:
        """Read to the end of output; the exit code."""
        deadline = time.monotonic() + timeout
        while self._read(0.2):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout}s; output:\n{plain(self.text)[-3000:]}")
        return self.proc.wait(timeout=10)


@pytest.fixture
def terminal(scratch: Scratch) -> Iterator[Callable[..., Terminal]]:
    """Starts ``runbook ARGS`` in a pty in the scratch project; stops what a failed test left running."""
    started: list[Terminal] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Terminal:
        term = Terminal.spawn([sys.executable, "-m", "runbook", *args], cwd=scratch.root, env=scratch.env(env))
        started.append(term)
        return term

    yield start
    for term in started:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()
        os.close(term.master)
