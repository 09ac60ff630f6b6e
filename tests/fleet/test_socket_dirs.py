"""Leftover ssh socket directories of killed runs are swept, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runbook.fleet.socket_dirs import PREFIX, sweep_dead_socket_dirs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _made(parent: Path, pid: int, suffix: str, *, old: bool = True, socket: bool = False) -> Path:
    path = parent / f"{PREFIX}{pid}-{suffix}"
    path.mkdir()
    if socket:
        (path / "0123abcd").touch()  # stands for a master's socket
    if old:
        os.utime(path, (0, 0))
    return path


def test_only_old_empty_directories_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    leftover = _made(tmp_path, dead, "a")
    persisting = _made(tmp_path, dead, "b", socket=True)
    recent = _made(tmp_path, dead, "c", old=False)
    mine = _made(tmp_path, os.getpid(), "d")
    unrelated = tmp_path / "rb-ssh-notapid"
    unrelated.mkdir()
    os.utime(unrelated, (0, 0))
    assert sweep_dead_socket_dirs(older_than=70, parent=tmp_path) == [leftover]
    assert not leftover.exists()
    assert persisting.exists() and recent.exists() and mine.exists() and unrelated.exists()
