"""Values that cross the engine's layers: how a run ended, and the signal to stop it."""

from __future__ import annotations

from dataclasses import dataclass

from runbook.errors import ExitCode
from runbook.status import RunStatus


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: RunStatus
    exit_code: int


class Stop(Exception):
    """Ends the run loop with a final status and exit code (not an operator error).

    ``step`` is the step that stopped it, ``acted`` whether anything changed before
    (a refusal before any step acted announces nothing)."""

    def __init__(self, status: RunStatus, code: ExitCode, *, step: str | None = None, reason: str | None = None) -> None:
        super().__init__(str(status))
        self.status = status
        self.code = code
        self.step = step
        self.reason = reason
