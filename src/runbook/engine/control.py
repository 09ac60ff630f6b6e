"""Live control of a running run from any machine sharing the store.

``runbook cancel|pause|set`` (and ``run --resume`` of a paused run) write a
row to ``controls``; the run's heartbeat thread reads new rows every second
(``poll``) and only sets flags, except for a cancel, which it turns into the
SIGINT that Ctrl-C would send (``ProcessSupervisor.interrupt_from_thread``):
one stop path, so the step's process group is stopped exactly as on Ctrl-C,
the run is recorded interrupted and the process exits 130.

The main thread acts on the rest at safe points: between steps
(``Session.check_still_holding``) and between a backfill's batches
(``StepContext.control``). A pause holds there, the lock and its heartbeat
kept, until a continue (``run --resume`` from anywhere) or a cancel arrives;
``set`` values are handed to the running backfill at its next batch.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any

from runbook.engine.journal import Journal
from runbook.engine.outcome import Stop
from runbook.errors import ExitCode
from runbook.process import ProcessSupervisor
from runbook.state.records import ControlRecord
from runbook.status import EventName, RunStatus

# How often a paused run looks at its flags (the heartbeat thread reads the store every second).
_HOLD_TICK = 0.25


class RunControl:
    def __init__(self, journal: Journal, supervisor: ProcessSupervisor, resume_command: Callable[[], str]) -> None:
        self.journal = journal
        self.supervisor = supervisor
        self.resume_command = resume_command
        # Requests made before this process took the run are not for it.
        self._after = journal.store.last_control_id(journal.run_id)
        self._lock = threading.Lock()
        # One reader at a time, so that no request is acted on twice.
        self._reading = threading.Lock()
        self.cancelled_by: str | None = None
        self._pause_by: str | None = None
        self._continue_by: str | None = None
        self._settings: dict[str, list[ControlRecord]] = {}

    # ------------------------------------------------------------ heartbeat thread

    def poll(self) -> None:
        """Read new requests (heartbeat thread, and the main thread at each safe point so
        that a pause asked before it is never missed): flags only, and the cancel's SIGINT."""
        with self._reading:
            requests = self.journal.store.controls_since(self.journal.run_id, self._after)
            if requests:
                self._after = requests[-1].id
        for request in requests:
            with self._lock:
                if request.action == "cancel" and self.cancelled_by is None:
                    self.cancelled_by = request.requested_by
                    self.supervisor.interrupt_from_thread()
                elif request.action == "pause":
                    self._pause_by, self._continue_by = request.requested_by, None
                elif request.action == "continue":
                    self._continue_by = request.requested_by
                elif request.action == "set" and request.step_id:
                    self._settings.setdefault(request.step_id, []).append(request)

    # ------------------------------------------------------------ main thread

    def hold_if_paused(self, where: str, *, ask_store: bool = True) -> None:
        """At a safe point: when a pause was asked, hold here (lock kept) until a continue;
        a cancel or signal meanwhile raises Stop(interrupted). ``ask_store=False`` (between
        a backfill's batches, many a second) trusts the heartbeat's last read instead of one
        more query: a pause then lands within about a second."""
        if ask_store:
            self.poll()
        with self._lock:
            by, self._pause_by = self._pause_by, None
        if by is None:
            return
        store, run_id = self.journal.store, self.journal.run_id
        store.set_run_status(run_id, str(RunStatus.PAUSED))
        self.journal.emit(EventName.PAUSED, by=by, at=where)
        self.journal.notice(
            f"paused {where} by {by}; this process keeps the lock. Continue from any machine sharing the state store: "
            f"{self.resume_command()}   or stop it: runbook cancel {run_id}"
        )
        while True:
            with self._lock:
                resumed_by = self._continue_by
            if resumed_by is not None or self.supervisor.stop_requested:
                break
            wake = self.supervisor.wake_fd
            if wake is not None:
                select.select([wake], [], [], _HOLD_TICK)
            else:
                time.sleep(_HOLD_TICK)
        if self.supervisor.stop_requested:
            raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED)
        with self._lock:
            self._continue_by = None
        store.set_run_status(run_id, str(RunStatus.RUNNING))
        self.journal.emit(EventName.CONTINUED, by=resumed_by)
        self.journal.notice(f"continued by {resumed_by}")

    def take_settings(self, step_id: str) -> dict[str, Any]:
        """New values for the running step since it last asked (later requests win), each change journaled."""
        with self._lock:
            requests = self._settings.pop(step_id, [])
        merged: dict[str, Any] = {}
        for request in requests:
            merged.update(request.params)
            self.journal.emit(EventName.SETTING_CHANGED, step=step_id, by=request.requested_by, values=request.params)
        return merged
