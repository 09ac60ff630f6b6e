"""What the store hands back: one frozen record per row, and who is writing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    runbook: str
    env: str
    path: str
    fingerprint: str
    dry_run: bool
    status: str
    actor: str
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None
    params: dict[str, Any]
    # The directory the run started in; None for a run recorded before schema version 4.
    workdir: str | None = None

    @property
    def resume_command(self) -> str | None:
        """The command that continues this run from any machine sharing the store, None when
        nothing does (it finished, or it is a dry run: a dry run is started again, not resumed)."""
        if self.finished_at is not None or self.dry_run or self.status in ("passed", "abandoned", "rolled_back"):
            return None
        parent = (self.params or {}).get("rollback_of")
        return f"runbook rollback {parent}" if parent else f"runbook run --resume {self.run_id}"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    run_id: str
    step_id: str
    attempt: int
    kind: str
    status: str
    fingerprint: str
    pid: int
    pid_started: int | None
    host: str
    started_at: datetime
    finished_at: datetime | None
    outputs: dict[str, Any] | None
    error: str | None
    checks: list[dict[str, Any]] | None
    log_path: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    run_id: str
    step_id: str | None
    event: str
    at: datetime
    actor: str
    pid: int
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    run_id: str
    step_id: str
    by: str
    comment: str | None
    fingerprint: str
    at: datetime
    host: str
    os_user: str | None = None
    decision: str = "approved"


@dataclass(frozen=True, slots=True)
class ControlRecord:
    id: int
    run_id: str
    step_id: str | None
    action: str
    params: dict[str, Any]
    requested_by: str
    host: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Lines an attempt printed (masked), joined by newlines; ``id`` orders chunks across a run."""

    id: int
    run_id: str
    step_id: str
    attempt: int
    seq: int
    stream: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Writer:
    """The process writing to the store, stamped on the rows it writes."""

    actor: str
    host: str
    pid: int
    # Clock ticks since boot when the process started: tells a reused pid apart.
    pid_started: int | None


def require_one_of(value: str, allowed: frozenset[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {sorted(allowed)}")
