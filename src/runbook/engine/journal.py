"""The one writer of a run's record: events, step attempts and checkpoints.

Everything recorded or told to a reporter passes through the run's masker
here, so no other part of the engine has to remember to mask. The journal
knows nothing of the engine above it: it receives plain values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runbook.engine.leftovers import process_started_detail
from runbook.masking import Masker
from runbook.reporting import Event
from runbook.state import StateStore
from runbook.status import EventName, StepStatus


class Journal:
    def __init__(self, store: StateStore, masker: Masker, emit: Callable[[str, Event], None]) -> None:
        self.store = store
        self.masker = masker
        self._emit = emit
        self.run_id = ""

    def emit(self, name: EventName, /, *, step: str | None = None, record: bool = True, **data: Any) -> None:
        """Journal the event (masked) in the store, then tell the reporters."""
        event = self.masker.mask_data({"run_id": self.run_id, **({"step": step} if step else {}), **data})
        assert isinstance(event, dict)
        if record and self.run_id:
            detail = {k: v for k, v in event.items() if k not in ("run_id", "step")}
            self.store.append_event(self.run_id, str(name), step_id=step, detail=detail)
        self._emit(str(name), event)

    def notice(self, message: str) -> None:
        self.emit(EventName.NOTICE, message=message, record=False)

    def warning(self, message: str, *, step: str | None = None) -> None:
        self.emit(EventName.WARNING, step=step, message=message)

    def start_attempt(self, step_id: str, fingerprint: str, *, rollback: bool = False) -> int:
        return self.store.start_attempt(self.run_id, step_id, fingerprint=fingerprint, kind="rollback" if rollback else "step")

    def finish_attempt(
        self,
        step_id: str,
        attempt: int,
        status: StepStatus,
        *,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        checks: list[dict[str, Any]] | None = None,
        log_path: str | None = None,
    ) -> dict[str, Any] | None:
        """Record how the attempt ended; returns the outputs as recorded (masked)."""
        masked_outputs = self.masker.mask_data(outputs) if outputs is not None else None
        masked_checks = self.masker.mask_data(checks) if checks is not None else None
        assert masked_outputs is None or isinstance(masked_outputs, dict)
        assert masked_checks is None or isinstance(masked_checks, list)
        self.store.finish_attempt(
            self.run_id,
            step_id,
            attempt,
            status=str(status),
            outputs=masked_outputs,
            error=self.masker.mask(error) if error else None,
            checks=masked_checks,
            log_path=log_path,
        )
        return masked_outputs

    def record_step(self, step_id: str, status: StepStatus, fingerprint: str, reason: str) -> None:
        """A step that ended without running (skipped, refused, awaiting approval, rolled back)."""
        self.store.record_step(self.run_id, step_id, status=str(status), fingerprint=fingerprint, reason=self.masker.mask(reason))

    def process_started(self, step_id: str, attempt: int | None, pgid: int, timeout: float | None) -> None:
        """Where a step's (or its check's) process group runs and by when its timeout ends it,
        so the next holder of the lock can stop it (or wait for it) if this process dies.
        ``attempt`` is None for a check outside an attempt (a precondition)."""
        detail = process_started_detail(pgid, self.store.host, attempt, timeout, self.store.database_now)
        self.store.append_event(self.run_id, str(EventName.PROCESS_STARTED), step_id=step_id, detail=detail)

    def checkpoints(self, step_id: str) -> Checkpoints:
        return Checkpoints(self.store, self.run_id, step_id)


class Checkpoints:
    """A step's resumable progress (the backfill's last committed key)."""

    def __init__(self, store: StateStore, run_id: str, step_id: str) -> None:
        self.store, self.run_id, self.step_id = store, run_id, step_id

    def load(self) -> dict[str, Any] | None:
        return self.store.load_checkpoint(self.run_id, self.step_id)

    def save(self, data: dict[str, Any]) -> None:
        self.store.save_checkpoint(self.run_id, self.step_id, data)
