"""Helpers for the foundation tests: run the real CLI and read its diagnostics.

``cli`` runs ``runbook`` in-process through click's CliRunner (fast; used by
most tests); ``cli_subprocess`` runs ``python -m runbook`` for real, for the
few tests where a separate process matters (hostile input, state on disk).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from runbook.cli import main

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# ``FILE:LINE:COL: key.path: message`` as printed by ``runbook validate``.
DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<message>.*)$")

# Environment variables the loader and planner read; tests start without them.
_RUNBOOK_ENV = ("RUNBOOK_PATH", "RUNBOOK_STEPS_DIR", "RUNBOOK_STATE_URL", "RB_FIXTURE_REGION", "DEPLOY_TOKEN")


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    @property
    def diagnostics(self) -> list[dict[str, str]]:
        """Every ``FILE:LINE:COL: path: message`` line printed on stderr."""
        found = []
        for line in self.stderr.splitlines():
            match = DIAGNOSTIC.match(line)
            if match:
                found.append(match.groupdict())
        return found

    def assert_clean(self) -> None:
        """No traceback or "internal error" reached the operator and no exception escaped."""
        assert "Traceback" not in self.stderr, self.stderr
        assert "Traceback" not in self.stdout, self.stdout
        assert "internal error" not in self.stderr, self.stderr
        assert self.exception is None or isinstance(self.exception, SystemExit), repr(self.exception)


def _invoke(args: list[str], env: dict[str, str] | None = None) -> Outcome:
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=True)
    return Outcome(result.exit_code, result.stdout, result.stderr, result.exception)


def _subprocess(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 30) -> Outcome:
    full_env = {k: v for k, v in os.environ.items() if k not in _RUNBOOK_ENV}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "runbook", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own empty directory without runbook env variables."""
    for name in _RUNBOOK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli() -> Callable[..., Outcome]:
    """``cli("validate", "x.yaml")`` -> Outcome, in-process."""

    def run(*args: str, env: dict[str, str] | None = None) -> Outcome:
        return _invoke(list(args), env)

    return run


@pytest.fixture
def cli_subprocess() -> Callable[..., Outcome]:
    """``cli_subprocess("validate", "x.yaml", cwd=...)`` -> Outcome, as a real process."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Outcome:
        return _subprocess(list(args), cwd=cwd or Path.cwd(), env=env)

    return run


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write("x.yaml", text)`` writes dedented text (or bytes) under the test's directory."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        return path

    return _write
