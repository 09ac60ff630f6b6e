"""Two working directories, two (or more) real OS users, one PostgreSQL state store.

Identity is never taken from the environment (runbook/identity.py), so the
only honest way to be someone else is to be someone else: the commands of
another person run through ``runuser -u NAME``, as that OS user. Tests that
need it are skipped when this process is not root or has no ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from runbook.state import StateStore

PEOPLE = ("alice", "bob", "carol")


def _runnable_by_others(path: Path) -> bool:
    """Whether any user may run ``path``: every directory above it searchable by all."""
    resolved = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [resolved, *resolved.parents])


def _interpreter_for_others() -> str | None:
    """This interpreter if other users may run it; else the system's of the same version (a
    pyenv interpreter under /root is not), given this one's packages through PYTHONPATH."""
    if _runnable_by_others(Path(sys.executable)):
        return sys.executable
    same = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    return str(same) if same.exists() and _runnable_by_others(same) else None


def _can_switch_users() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("runuser", "useradd")) and _interpreter_for_others() is not None


def _path_for_others() -> str:
    import runbook

    return os.pathsep.join([sysconfig.get_paths()["purelib"], str(Path(runbook.__file__).resolve().parents[1])])


needs_other_users = pytest.mark.skipif(not _can_switch_users(), reason="needs root and runuser to act as other OS users")


@pytest.fixture(scope="session")
def people() -> tuple[str, ...]:
    """OS users alice, bob and carol (created once, without a home or a login shell)."""
    for name in PEOPLE:
        if subprocess.run(["id", "-u", name], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    return PEOPLE


@dataclass
class Checkout:
    """One working directory (a teammate's checkout) sharing ``state_url``."""

    root: Path
    state_url: str

    def write(self, name: str, text: str) -> None:
        path = self.root / "runbooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        path.chmod(0o644)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
        env["RUNBOOK_STATE_URL"] = self.state_url
        env["HOME"] = str(self.root)
        return env

    def _argv(self, args: tuple[str, ...], user: str | None) -> list[str]:
        if user is None:
            return [sys.executable, "-m", "runbook", *args]
        python = _interpreter_for_others()
        assert python is not None
        return ["runuser", "-u", user, "--", "env", f"PYTHONPATH={_path_for_others()}", python, "-m", "runbook", *args]

    def runbook(self, *args: str, user: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``runbook ARGS`` here, as ``user`` (an OS user) or as this process's user."""
        return subprocess.run(
            self._argv(args, user), cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    @contextmanager
    def running(self, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
        """``runbook ARGS`` in the background, its output going to a file (read while it runs);
        killed on the way out if it still runs (a test that failed, or timed out waiting for it)."""
        out = self.root / f"out-{time.monotonic_ns()}.log"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                self._argv(args, None), cwd=self.root, env=self.env(), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            yield proc, out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def checkouts(pg_url: str) -> Iterator[tuple[Checkout, Checkout]]:
    """Directories A and B, readable by every user (pytest's tmp_path is not)."""
    made = [Path(tempfile.mkdtemp(prefix=f"runbook-team-{side}-")) for side in "AB"]
    for path in made:
        path.chmod(0o755)
    try:
        yield Checkout(made[0], pg_url), Checkout(made[1], pg_url)
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def write_both(checkouts: tuple[Checkout, Checkout], name: str, text: str) -> None:
    """The same runbook in both checkouts."""
    for side in checkouts:
        side.write(name, text)


def only_run(url: str, runbook: str) -> str:
    """The id of the one run of ``runbook`` in the shared store."""
    with StateStore.open(url) as store:
        (run,) = store.list_runs(runbook)
        return run.run_id


def run_status(url: str, run_id: str) -> str:
    with StateStore.open(url) as store:
        run = store.get_run(run_id)
        assert run is not None
        return run.status


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0, output: Path | None = None) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` (and showing ``output``) after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            shown = output.read_text() if output is not None and output.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{shown}")
        time.sleep(0.05)
