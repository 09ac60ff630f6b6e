"""Engine tests run the real CLI in a scratch project directory.

``Project.runbook`` starts ``python -m runbook``; a test module whose tests need no
separate process (nothing is killed, signalled, raced or timed) overrides the
``project`` fixtures with ``in_process()`` so that its commands run through click's
CliRunner in the test process instead: same command line, environment, working
directory and standard input, without an interpreter start and imports per command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Project:
    root: Path
    state_url: str | None = None
    in_process: bool = False

    def write(self, name: str, text: str) -> Path:
        path = self.root / "runbooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if self.state_url:
            env["RUNBOOK_STATE_URL"] = self.state_url
        env.update(extra or {})
        return env

    def runbook(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        if self.in_process:
            return self._invoke(list(args), env, input)
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def _invoke(self, args: list[str], env: dict[str, str] | None, input: str | None) -> subprocess.CompletedProcess[str]:
        """``runbook ARGS`` through CliRunner, with exactly the environment and working directory a process would get."""
        from click.testing import CliRunner

        from runbook.cli import main

        wanted = self.env(env)
        isolated: dict[str, str | None] = {name: None for name in os.environ if name not in wanted}
        isolated.update(wanted)
        previous = Path.cwd()
        os.chdir(self.root)
        try:
            result = CliRunner().invoke(main, args, input=input, env=isolated, catch_exceptions=True)
        finally:
            os.chdir(previous)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return subprocess.CompletedProcess(["runbook", *args], result.exit_code, result.stdout, result.stderr)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runbook", *args],
            cwd=self.root,
            env=self.env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def count(self, name: str) -> int:
        path = self.root / "counters" / name
        return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A scratch project; its state store is SQLite or PostgreSQL."""
    (tmp_path / "counters").mkdir()
    if request.param == "postgresql":
        return Project(tmp_path, request.getfixturevalue("pg_url"))
    return Project(tmp_path)


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Project:
    """A scratch project with the default SQLite state store."""
    (tmp_path / "counters").mkdir()
    return Project(tmp_path)


def in_process(project: Project) -> Project:
    """The same project, its ``runbook`` commands run in-process (see the module's docstring)."""
    project.in_process = True
    return project


def counter_step(step_id: str, extra: str = "") -> str:
    """YAML for a step that appends a line to counters/<id> (proves how often it ran)."""
    return f"""
  - id: {step_id}
    kind: command
    run: echo ran >> counters/{step_id}
    irreversible: true{extra}
"""


CounterStep = Callable[[str, str], str]
