"""Taking a lock safely: nothing of a previous holder may still run when the next one starts.

A step's command leads its own process group (see process.py), so when the
runbook process dies mid-step the command outlives it. Whoever takes the
(runbook, env) lock next — ``--resume`` of the dead run, ``rollback``, or a
plain ``run`` once the dead run was abandoned — settles every attempt still
marked 'running' in a real run of that runbook and environment before it
starts anything (``settle``, called by ``Session.holding``):

* this host, the process that ran the attempt is alive (same pid and start
  time): the lock was broken (``unlock --force``) under a live run. Refuse.
  Stopping its command under its feet is what made steps run twice; the live
  run stops by itself before its next step, and then the way is clear.
* this host, that process is gone: stop the attempt's recorded process groups
  (SIGTERM, SIGKILL after the grace) before anything runs again. A group
  whose leader's pid now belongs to a process started at another time was
  gone and its number reused: it is not signalled.
* another host: its groups cannot be signalled from here. Past the command's
  recorded deadline (start + timeout + kill grace, both by the store's clock) go on, naming the group;
  within ``WAIT_LIMIT`` of it, wait, saying so; otherwise, or with no
  deadline (no timeout), refuse and say until when.

An attempt of another run is then marked interrupted (and that run too, if it
still says 'running'); the taker's own run's attempts are left for the
resume's recovery, which re-runs them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from runbook.errors import Refused
from runbook.process import longest_run, stop_group
from runbook.state import AttemptRecord, StateStore
from runbook.state.locks import LockHandle, process_gone, process_start_ticks
from runbook.status import EventName, RunStatus

# Longest wait for another host's leftover command to reach its deadline. Well
# under LOCK_STALE_AFTER, so a wait never lets the lock just taken look dead.
WAIT_LIMIT = 60.0

Notice = Callable[[str], None]


def process_started_detail(pgid: int, host: str, attempt: int | None, timeout: float | None, now: Callable[[], datetime]) -> dict[str, Any]:
    """The ``process_started`` event of a command: its group (and its leader's start, which
    tells a reused number apart), and by when it is stopped at the latest, by the store's
    clock (``now``): another host compares it with that same clock, never with its own."""
    deadline = None
    if timeout is not None:
        deadline = (now() + timedelta(seconds=longest_run(timeout))).isoformat()
    return {"pgid": pgid, "host": host, "attempt": attempt, "deadline": deadline, "started": process_start_ticks(pgid)}


def settle(store: StateStore, lock: LockHandle, *, notice: Notice) -> None:
    """Settle what earlier holders of ``lock`` left running; raises Refused when that cannot be done safely."""
    for attempt in store.running_attempts(lock.runbook, lock.env):
        _settle(store, lock, attempt, notice)


def _settle(store: StateStore, lock: LockHandle, attempt: AttemptRecord, notice: Notice) -> None:
    where = f"step {attempt.step_id!r} (attempt {attempt.attempt} of run {attempt.run_id})"
    if attempt.host == store.host:
        if (attempt.pid, attempt.pid_started) == (os.getpid(), process_start_ticks(os.getpid())):
            return  # this very process: nothing left over
        if not process_gone(attempt.pid, attempt.pid_started):
            raise Refused(
                f"{where} is still being run by process {attempt.pid} on {attempt.host}, which is alive: "
                "its lock was broken while it ran, and running on now would run steps twice",
                hint=f"that run stops by itself before its next step; wait for process {attempt.pid} to exit "
                f"(or stop it: kill {attempt.pid}), then try again",
            )
        for group in _groups(store, attempt):
            pgid = int(group["pgid"])
            if _same_group(pgid, group.get("started")) and stop_group(pgid):
                message = f"stopped process group {pgid} of {where}, left running by the killed run"
                store.append_event(
                    lock.run_id,
                    str(EventName.LEFTOVER_STOPPED),
                    step_id=attempt.step_id,
                    detail={"run": attempt.run_id, "attempt": attempt.attempt, "pgid": pgid, "message": message},
                )
                notice(message)
    else:
        _await_remote(attempt, where, _groups(store, attempt), notice, store.database_now)
    if attempt.run_id != lock.run_id:
        store.mark_interrupted(attempt.run_id, attempt.step_id, attempt.attempt)
        run = store.get_run(attempt.run_id)
        if run is not None and run.status == RunStatus.RUNNING:
            store.set_run_status(attempt.run_id, str(RunStatus.INTERRUPTED))


def _groups(store: StateStore, attempt: AttemptRecord) -> list[dict[str, Any]]:
    """The ``process_started`` details of the attempt's commands."""
    return [
        event.detail
        for event in store.events(attempt.run_id)
        if event.event == EventName.PROCESS_STARTED
        and event.step_id == attempt.step_id
        and event.detail.get("attempt") == attempt.attempt
    ]


def _same_group(pgid: int, leader_started: int | None) -> bool:
    """Whether ``pgid`` still names the recorded group. A pid is not reused while a group
    of that number exists, so a live process with the leader's pid but another start
    time means the group ended and its number now belongs to someone else."""
    if leader_started is None:
        return True  # recorded before leader start times were: as before, trust the number
    now = process_start_ticks(pgid)
    return now is None or now == leader_started


def _await_remote(
    attempt: AttemptRecord, where: str, groups: list[dict[str, Any]], notice: Notice, now: Callable[[], datetime]
) -> None:
    """Another host's command cannot be stopped from here: go on past its deadline, wait a
    little for it, or refuse."""
    if not groups:
        return  # no command was started: nothing of it outlives its runbook process
    names = ", ".join(str(g["pgid"]) for g in groups)
    deadlines = [g.get("deadline") for g in groups]
    if None in deadlines:
        raise Refused(
            f"{where} started process group {names} on {attempt.host}, which has no timeout: "
            "nothing here can tell whether it still runs there",
            hint=f"run this from {attempt.host}, which stops that group first",
        )
    deadline = max(datetime.fromisoformat(str(d)) for d in deadlines)
    # The store's clock, which the deadline was computed with: this host's may be minutes off.
    remaining = (deadline - now()).total_seconds()
    until = f"{deadline:%Y-%m-%d %H:%M:%S} UTC"
    if remaining > WAIT_LIMIT:
        raise Refused(
            f"{where} may still be running on {attempt.host} (process group {names}) until {until}, "
            "when its timeout has stopped it",
            hint=f"try again after {until}, or run this from {attempt.host}, which stops that group first",
        )
    if remaining > 0:
        notice(f"waiting {remaining:.0f} s until {until}, when {where} on {attempt.host} (process group {names}) has reached its timeout")
        time.sleep(remaining)
    else:
        notice(f"{where} ran on {attempt.host}; its process group {names} had to end by {until} (its timeout); make sure it is gone there")
