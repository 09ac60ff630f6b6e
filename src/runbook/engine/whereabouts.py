"""Where a run's relative paths point, and what differs from where the run started.

A run records the host and the directory it started in. A team resumes runs
from other checkouts and machines, so steps' relative paths (a command's
``cwd``, a backup glob, the backfill's CSV ``report``, a file notification)
resolve against the **project directory**, not against wherever the command
happens to be typed: the directory holding the ``runbooks/`` directory the
runbook file is in (``runbook run x.yaml`` finds ``./runbooks/x.yaml``, so
from the project root it is the working directory). A runbook file kept
anywhere else has the working directory as its project directory. Files the
runbook ships (SQL files, alembic.ini) stay relative to the runbook file.
The local step logs and the default SQLite store stay in ``.runbook/`` of the
working directory: they belong to the machine, not to the project.
"""

from __future__ import annotations

from pathlib import Path

from runbook.state import RunRecord


def project_dir(runbook_path: Path, workdir: Path) -> Path:
    """The base of a run's relative paths (see the module docstring)."""
    folder = runbook_path.resolve().parent
    return folder.parent if folder.name == "runbooks" else workdir


def differences(record: RunRecord, *, host: str, workdir: Path, base: Path) -> list[str]:
    """One line for each of host and directory in which this process differs from where ``record`` started."""
    lines = []
    if record.host != host:
        lines.append(f"run {record.run_id} started on host {record.host}; this is {host}: its local logs are there (runbook logs reads them from the store)")
    if record.workdir is not None and Path(record.workdir) != workdir:
        lines.append(f"run {record.run_id} started in {record.workdir}; this is {workdir}: relative paths in its steps resolve against {base}")
    return lines
