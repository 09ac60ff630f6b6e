"""Bringing the demo up, down and across versions.

State kept in the home directory:

- ``app.json``          ``{"version": "v1"|"v2", "port": N}``: the deployed
                        version (the jobs follow it) and the API's port
- ``api-server.pid``    pid of the running API server
- ``logs/``             ``api-server.log``, ``celery-worker.log``
- ``backups/``          see ``backup``
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from isp.errors import IspError
from isp.settings import ALEMBIC_INI, PACKAGE_ROOT, Settings

ISPCTL = PACKAGE_ROOT / "ispctl.py"
VERSIONS = ("v1", "v2")
# The state before the change: both heads, without ee4f9c4fb5b3.
PRE_CHANGE_REVISIONS = ("c64d9a16fa9d", "c6b208ba7659")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AppState:
    version: str
    port: int


def load_state(settings: Settings) -> AppState | None:
    try:
        return AppState(**json.loads(settings.app_state.read_text()))
    except FileNotFoundError:
        return None


def deployed_version(settings: Settings) -> str:
    """The version the jobs run as: the last one deployed, else v1 (the code before the change)."""
    state = load_state(settings)
    return state.version if state else "v1"


def alembic_config(settings: Settings) -> Config:
    config = Config(str(ALEMBIC_INI))
    # Config values go through configparser interpolation: a literal % must be doubled.
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return config


def alembic_current(settings: Settings) -> list[str]:
    engine = settings.engine()
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def init(settings: Settings) -> dict[str, Any]:
    """Migrate to the state before the change."""
    settings.home.mkdir(parents=True, exist_ok=True)
    config = alembic_config(settings)
    for revision in PRE_CHANGE_REVISIONS:
        command.upgrade(config, revision)
    return {"alembic_current": alembic_current(settings)}


def reset(settings: Settings) -> dict[str, Any]:
    """Stop the server, drop every table (alembic_version included) and clear the home state."""
    down(settings)
    engine = settings.engine()
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()
    # Only what this tool writes: --home may point at a directory holding other things.
    for path in (settings.app_state, settings.pid_file):
        path.unlink(missing_ok=True)
    for directory in (settings.logs_dir, settings.backups_dir):
        shutil.rmtree(directory, ignore_errors=True)
    return {"dropped_tables": sorted(metadata.tables), "home": str(settings.home)}


def up(settings: Settings, version: str, port: int | None = None) -> dict[str, Any]:
    """Start the API server in the background and wait until /health answers with that version."""
    pid = running_pid(settings)
    if pid is not None:
        raise IspError(f"the API server is already running (pid {pid}); use `ispctl deploy --to {version}`")
    previous = load_state(settings)
    port = port or (previous.port if previous else None) or free_port()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with settings.api_log.open("a", encoding="utf-8") as log:
        # Output goes to the log file, not our stdout: a caller capturing
        # `ispctl up` must not wait on a pipe held open by the server.
        process = subprocess.Popen(
            [sys.executable, str(ISPCTL), "serve", "--version", version, "--port", str(port)],
            env=settings.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    settings.pid_file.write_text(f"{process.pid}\n")
    try:
        _wait_healthy(process, port, version, settings.api_log)
    except IspError:
        _stop(process.pid)
        settings.pid_file.unlink(missing_ok=True)
        raise
    settings.app_state.write_text(json.dumps(asdict(AppState(version, port))) + "\n")
    return {"version": version, "pid": process.pid, "port": port, "url": f"http://127.0.0.1:{port}"}


def down(settings: Settings) -> dict[str, Any]:
    pid = running_pid(settings)
    if pid is not None:
        _stop(pid)
    settings.pid_file.unlink(missing_ok=True)
    return {"stopped": pid}


def deploy(settings: Settings, version: str, port: int | None = None) -> dict[str, Any]:
    """The deploy script: replace the running server by the given version, on the same port."""
    previous = load_state(settings)
    down(settings)
    started = up(settings, version, port)
    return {**started, "previous": previous.version if previous else None}


def status(settings: Settings) -> dict[str, Any]:
    state = load_state(settings)
    pid = running_pid(settings)
    return {
        "version": state.version if state else None,
        "pid": pid,
        "port": state.port if state else None,
        "alive": pid is not None and state is not None and health(state.port) is not None,
        "alembic_current": alembic_current(settings),
        "database": settings.safe_url,
    }


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def running_pid(settings: Settings) -> int | None:
    """The pid in the pid file if that process is alive and is our server (pids get reused)."""
    try:
        pid = int(settings.pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) and _is_api_server(pid) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(process: subprocess.Popen[bytes], port: int, version: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise IspError(f"the {version} API server exited with status {process.returncode}: {_tail(log)}")
        answer = health(port)
        if answer is not None and answer.get("version") == version:
            return
        time.sleep(0.1)
    raise IspError(f"the {version} API server did not answer /health on port {port} within {START_TIMEOUT_S:.0f} s")


def _stop(pid: int) -> None:
    # The process may exit on its own between any two of these calls.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child, or a zombie would look alive forever.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Exited but not yet reaped: after `ispctl up` returns, the server's parent is
    init, which may take seconds to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def _is_api_server(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no procfs: trust the pid file
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in args and any(arg.endswith(b"ispctl.py") for arg in args)


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(encoding="utf-8").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
