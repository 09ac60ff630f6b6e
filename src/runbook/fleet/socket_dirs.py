"""The private directories of ssh master sockets: one per runbook process, named by its pid.

A run killed with -9 cannot remove its directory; its masters outlive it for
``ControlPersist`` and then remove their own sockets, leaving the directory empty.
The next run sweeps such leftovers. Only safely: a directory of this user whose
owning process is gone, untouched for longer than a master can persist, and empty
(``rmdir`` refuses otherwise, so a live master's socket is never taken away).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

PREFIX = "rb-ssh-"
_NAMED = re.compile(rf"{PREFIX}(\d+)-")


def make_socket_dir() -> Path:
    # Short: a socket path must fit in 108 bytes.
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def sweep_dead_socket_dirs(older_than: float, parent: Path | None = None) -> list[Path]:
    """Remove the empty socket directories of dead runbook processes; the ones removed."""
    base = parent or Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        named = _NAMED.match(entry.name)
        if named is None or _alive(int(named.group(1))):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or info.st_uid != os.geteuid() or time.time() - info.st_mtime < older_than:
                continue
            os.rmdir(entry.path)
        except OSError:
            continue  # not empty (a master still persists), or gone already
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
