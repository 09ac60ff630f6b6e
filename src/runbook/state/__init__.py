"""Durable state: runs, step attempts, events, approvals, checkpoints, locks.

Importing this package imports SQLAlchemy, so it stays off the ``runbook plan``
path; only the engine and the commands that read history import it.
"""

from runbook.state.locks import LOCK_STALE_AFTER, Heartbeat, LockHandle, LockRecord
from runbook.state.versions import SCHEMA_VERSION
from runbook.state.store import (
    ATTEMPT_KINDS,
    ATTEMPT_STATUSES,
    RUN_STATUSES,
    STATE_URL_ENV,
    UNFINISHED_RUN_STATUSES,
    ApprovalRecord,
    AttemptRecord,
    EventRecord,
    LogChunk,
    RunRecord,
    StateStore,
    new_run_id,
)

__all__ = [
    "ATTEMPT_KINDS",
    "ATTEMPT_STATUSES",
    "LOCK_STALE_AFTER",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "STATE_URL_ENV",
    "UNFINISHED_RUN_STATUSES",
    "ApprovalRecord",
    "AttemptRecord",
    "EventRecord",
    "Heartbeat",
    "LockHandle",
    "LockRecord",
    "LogChunk",
    "RunRecord",
    "StateStore",
    "new_run_id",
]
