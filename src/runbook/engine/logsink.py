"""Step logs: masked lines appended to one attempt's file under .runbook/logs/."""

from __future__ import annotations

import os
from pathlib import Path

from runbook.errors import Refused


class LogSink:
    """Appends masked lines to one attempt's log file, 0600 in 0700 directories.

    Opened before the step runs, walking down from the working directory one
    level at a time with O_NOFOLLOW, so a planted symbolic link anywhere on the
    way (.runbook, logs, the run's directory, the file) refuses the step before
    its command starts instead of redirecting its output."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        self._fd: int | None = None

    def open(self) -> None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        try:
            parts = self.path.parent.relative_to(self.root).parts
        except ValueError:
            parts = ()
        directory = os.open(self.root if parts else self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts:
                try:
                    os.mkdir(part, 0o700, dir_fd=directory)
                except FileExistsError:
                    pass
                try:
                    child = os.open(part, flags, dir_fd=directory)
                except OSError as err:
                    where = self.root.joinpath(*parts[: parts.index(part) + 1])
                    raise Refused(f"refusing to write step logs through {where}: it is a symlink or not a directory; remove it") from err
                os.close(directory)
                directory = child
            try:
                self._fd = os.open(self.path.name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600, dir_fd=directory)
            except OSError as err:
                raise Refused(f"refusing to write the step log {self.path}: it is a symlink or unwritable ({err.strerror}); remove it") from err
        finally:
            os.close(directory)

    def write(self, line: str) -> None:
        if self._fd is None:
            self.open()
        assert self._fd is not None
        os.write(self._fd, (line + "\n").encode("utf-8", "replace"))

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


