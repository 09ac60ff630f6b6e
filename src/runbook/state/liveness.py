"""Whether a run recorded as ``running`` is still alive, decided when it is shown.

A run killed with SIGKILL (or whose machine died) never writes its end, so its
record says ``running`` until someone resumes it. ``status``, ``history`` and
``show`` are read-only verbs: they do not rewrite the record, they derive what
to show from the evidence the store already holds, the same evidence a new run
uses to take a dead holder's lock over (``locks.stale_reason``, by the store's clock):

* a real run holds the (runbook, env) lock from before its status becomes
  ``running`` until after it leaves it, so a ``running`` run whose lock is
  gone or held by another run has lost its process; one that still holds the
  lock is gone when, on this host, its pid is dead or reused, or, from another
  host, its heartbeat is stale;
* a dry run takes no lock, so only its pid tells, and only on its own host:
  the pid is dead, a zombie, or belongs to a process started after the run.

A ``paused`` run is held by its live process too (``runbook pause``: the
process keeps the lock and waits for a continue), so the same evidence tells
when that process is gone (killed with SIGKILL while paused): the run is
shown ``interrupted``, with why, and ``RunRecord.resume_command`` says how to
go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# _proc_stat is shared, not copied; locks.py is being edited elsewhere, so it stays private there for now.
from runbook.state.locks import LockRecord, _proc_stat, stale_reason
from runbook.state.store import RunRecord, StateStore

# The recorded statuses that a live process holds: its death leaves them as they are.
HELD_BY_A_PROCESS = frozenset({"running", "paused"})

# /proc's boot time has whole-second resolution; a process started this much
# after the run record's timestamp cannot be the process that wrote it.
_START_SLACK = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class ShownStatus:
    """The status to display, and why it differs from the record (None if it does not)."""

    status: str
    why: str | None = None


def shown_status(run: RunRecord, holder: LockRecord | None, *, host: str, now: datetime) -> ShownStatus:
    """What ``run`` is, given the current holder of its lock (pure but for /proc)."""
    if run.status not in HELD_BY_A_PROCESS:
        return ShownStatus(run.status)
    recorded = f"recorded as {run.status}"
    if run.dry_run:
        if run.host == host and not _same_process_alive(run.pid, run.started_at):
            return ShownStatus("interrupted", f"{recorded}, but its process {run.pid} on {run.host} is gone")
        return ShownStatus(run.status)
    if holder is None or holder.run_id != run.run_id:
        return ShownStatus(
            "interrupted", f"{recorded}, but the process that ran it is gone: it no longer holds the lock on {run.runbook} in {run.env}"
        )
    reason = stale_reason(holder, host=host, now=now)
    if reason is not None:
        return ShownStatus("interrupted", f"{recorded}, but the process that ran it is gone: {reason}")
    return ShownStatus(run.status)


def observe(store: StateStore, run: RunRecord) -> tuple[RunRecord, ShownStatus]:
    """The run as it stands now and what to show for it.

    The lock is read after the run record, then the record again: a run that
    finished in between released its lock only after recording its end, so the
    second read sees that end instead of a run without its lock.
    """
    if run.status not in HELD_BY_A_PROCESS:
        return run, ShownStatus(run.status)
    holder = None if run.dry_run else store.lock_holder(run.runbook, run.env)
    current = store.get_run(run.run_id) or run
    now = store.database_now() if holder is not None else datetime.now(UTC)  # staleness is judged by the store's clock
    return current, shown_status(current, holder, host=store.host, now=now)


def _same_process_alive(pid: int, run_started: datetime) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    stat, boot = _proc_stat(pid), _boot_time()
    if stat is None or boot is None:
        return True  # no /proc to tell a reused pid by: presume alive, as the lock does
    state, ticks = stat
    started = boot + timedelta(seconds=ticks / os.sysconf("SC_CLK_TCK"))
    return state != "Z" and started <= run_started + _START_SLACK


def _boot_time() -> datetime | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return datetime.fromtimestamp(int(line.split()[1]), UTC)
    except (OSError, ValueError):
        pass
    return None
