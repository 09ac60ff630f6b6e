"""The one way runbook writes files: never through a symbolic link.

Step logs, file notifications, reports (``report -o``, ``init``) and the
backfill's CSV report all land in directories someone else may control (a
shared checkout, ``.runbook/`` of a shared working directory). A link planted
at any level would redirect the write onto a file the attacker chose, with our
permissions. So a file is opened by walking down from a root directory one
component at a time: each directory with ``O_DIRECTORY | O_NOFOLLOW`` relative
to its parent (missing ones created 0700), the file with ``O_NOFOLLOW`` (created
0600). Nothing is ever opened by its full path, so no link on the way, and no
link swapped in while we walk, is followed.

The root itself is trusted: the working directory, or for a path outside it,
the directory the operator named (``report -o /elsewhere/r.md``).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from runbook.errors import Refused

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def open_for_writing(path: Path, root: Path, *, what: str, append: bool = True) -> int:
    """A file descriptor for writing ``path``, walked down from ``root`` (see the module docstring).

    ``append``: keep what is there and write at its end; else truncate it. ``what``
    names the file in errors ("the step log"). Raises ``Refused`` (exit 3) naming
    the link to remove, or the reason the file cannot be opened."""
    path = path if path.is_absolute() else root / path
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        root, parts = path.parent, ()
    directory = _open_root(root, what)
    try:
        for depth, part in enumerate(parts):
            where = root.joinpath(*parts[: depth + 1])
            try:
                os.mkdir(part, 0o700, dir_fd=directory)
            except FileExistsError:
                pass
            except OSError as err:
                raise Refused(f"cannot write {what} {path}: cannot create {where}: {err.strerror}") from err
            try:
                child = os.open(part, _DIRECTORY_FLAGS, dir_fd=directory)
            except OSError as err:
                raise _refusal(what, path, where, err, directory, part) from err
            os.close(directory)
            directory = child
        try:
            return os.open(path.name, _FILE_FLAGS | (os.O_APPEND if append else os.O_TRUNC), 0o600, dir_fd=directory)
        except OSError as err:
            raise _refusal(what, path, path, err, directory, path.name) from err
    finally:
        os.close(directory)


def write_text(path: Path, root: Path, text: str, *, what: str) -> None:
    """Replace the contents of ``path`` with ``text`` (UTF-8)."""
    _write_all(open_for_writing(path, root, what=what, append=False), text.encode("utf-8"), what, path)


def append_text(path: Path, root: Path, text: str, *, what: str) -> None:
    """Add ``text`` (UTF-8) at the end of ``path``."""
    _write_all(open_for_writing(path, root, what=what), text.encode("utf-8"), what, path)


class AppendLog:
    """A file appended to one line at a time (a step's log), opened on ``open()`` or the first line."""

    def __init__(self, path: Path, root: Path, *, what: str = "the step log") -> None:
        self.path = path
        self.root = root
        self.what = what
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is None:
            self._fd = open_for_writing(self.path, self.root, what=self.what)

    def write(self, line: str) -> None:
        self.open()
        assert self._fd is not None
        view = memoryview((line + "\n").encode("utf-8", "replace"))
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as err:
            raise Refused(f"cannot write {self.what} {self.path}: {err.strerror}") from err

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


def _open_root(root: Path, what: str) -> int:
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)  # trusted: created as named
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise Refused(f"cannot write {what}: cannot open the directory {root}: {err.strerror}") from err


def _refusal(what: str, path: Path, where: Path, err: OSError, directory: int, name: str) -> Refused:
    """Why ``name`` in ``directory`` could not be opened: a link (remove it) or another reason."""
    try:
        mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode) or err.errno == errno.ELOOP:
        return Refused(
            f"refusing to write {what} through {where}: it is a symbolic link",
            hint="remove the link; runbook never writes through one (it creates missing directories itself)",
        )
    if err.errno == errno.ENOTDIR or (where != path and mode and not stat.S_ISDIR(mode)):
        return Refused(f"refusing to write {what} through {where}: it is not a directory", hint="remove or rename it")
    return Refused(f"cannot write {what} {path}: {err.strerror}")


def _write_all(fd: int, data: bytes, what: str, path: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as err:
        raise Refused(f"cannot write {what} {path}: {err.strerror}") from err
    finally:
        os.close(fd)
