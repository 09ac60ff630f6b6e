"""Reliability tests: real `runbook` processes, real SIGKILL, real SQLite and PostgreSQL.

A ``Proj`` is a scratch project directory (runbooks/, counters/) whose state
store is the default SQLite file or a fresh PostgreSQL database. ``Live`` wraps
a spawned `runbook` process and reads its console output on a thread, so a
test can wait for a line and SIGKILL the process at a chosen instant.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runbook.state import StateStore


def sqlite_state_url(root: Path) -> str:
    """The default state store of a project directory, named explicitly (RUNBOOK_STATE_URL is ignored)."""
    return f"sqlite:///{root / '.runbook' / 'state.db'}"


def _clean_env(extra: dict[str, str] | None = None, state_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ISP_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if state_url:
        env["RUNBOOK_STATE_URL"] = state_url
    env.update(extra or {})
    return env


class Live:
    """A running `runbook` process whose stdout lines arrive on a queue (with their arrival time)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put((time.monotonic(), line.rstrip("\n")))
        self._queue.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 60) -> tuple[float, str] | None:
        """The first new line matching ``predicate`` and when it arrived; None if the process ended first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout}s; output so far:\n" + "\n".join(self.lines[-30:]))
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                self._queue.put(None)  # later calls see the end too
                return None
            self.lines.append(item[1])
            if predicate(item[1]):
                return item

    def kill(self) -> int:
        """SIGKILL (if still running); returns the exit status."""
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait()

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(10)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.lines.append(item[1])
        return code

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)


@dataclass
class Proj:
    root: Path
    state_url: str | None = None

    @property
    def backend(self) -> str:
        return "postgresql" if self.state_url else "sqlite"

    def write(self, name: str, text: str) -> Path:
        path = self.root / "runbooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return _clean_env(extra, self.state_url)

    def runbook(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Live:
        return Live([sys.executable, "-m", "runbook", *args], self.root, self.env(env))

    def store(self) -> StateStore:
        if self.state_url:
            return StateStore.open(self.state_url)
        (self.root / ".runbook").mkdir(mode=0o700, exist_ok=True)
        return StateStore.open(sqlite_state_url(self.root))

    def count(self, name: str) -> int:
        path = self.root / "counters" / name
        return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def sqlite_proj(tmp_path: Path) -> Proj:
    (tmp_path / "counters").mkdir()
    return Proj(tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Proj:
    """A scratch project on each state store backend."""
    (tmp_path / "counters").mkdir()
    if request.param == "postgresql":
        return Proj(tmp_path, request.getfixturevalue("pg_url"))
    return Proj(tmp_path)


@pytest.fixture
def pg_admin(pg_server_url: str) -> Iterator[Callable[[str], list[tuple[object, ...]]]]:
    """Run SQL as the server's superuser (autocommit), outside any test database."""
    import sqlalchemy as sa

    engine = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")

    def run(sql: str) -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []

    try:
        yield run
    finally:
        engine.dispose()


def timing(label: str, seconds: float) -> None:
    """Measured timings go to the terminal (pytest -s) and to the report's captured output."""
    print(f"[timing] {label}: {seconds * 1000:.0f} ms" if seconds < 10 else f"[timing] {label}: {seconds:.1f} s")
