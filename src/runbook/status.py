"""The statuses of runs and step attempts, and the names of engine events.

One enumeration each, shared by the engine, the state store and the
renderers; members are ``str`` so they compare equal to what the store holds.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    REFUSED = "refused"
    INTERRUPTED = "interrupted"
    AWAITING_APPROVAL = "awaiting_approval"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    ABANDONED = "abandoned"
    # Stopped at a safe point by ``runbook pause``; its process still holds the lock (control.py).
    PAUSED = "paused"


class StepStatus(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    REFUSED = "refused"
    AWAITING_APPROVAL = "awaiting_approval"
    DRY_RUN = "dry_run"
    ROLLED_BACK = "rolled_back"


class EventName(StrEnum):
    """What the engine journals and tells its reporters (``on_<name>`` handlers)."""

    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_RECOVERED = "step_recovered"
    STEP_CHANGED = "step_changed"
    LEFTOVER_STOPPED = "leftover_stopped"
    PROCESS_STARTED = "process_started"
    CHECK = "check"
    CRITERION = "criterion"
    WARNING = "warning"
    NOTICE = "notice"
    OUTPUT = "output"
    PROGRESS = "progress"
    APPROVED = "approved"
    APPROVAL_RECORDED = "approval_recorded"
    AWAITING_APPROVAL = "awaiting_approval"
    FAILURE_HELP = "failure_help"
    WOULD_RUN = "would_run"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_STEP_STARTED = "rollback_step_started"
    ROLLBACK_SKIPPED = "rollback_skipped"
    ROLLED_BACK_BY = "rolled_back_by"
    ABANDONED = "abandoned"
    NOTIFIED = "notified"
    NOTIFICATION = "notification"
    ERROR = "error"
    # Approvals with identity and live control (engine/control.py, control_commands.py).
    REJECTED = "rejected"
    CONTROL_REQUESTED = "control_requested"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    CONTINUED = "continued"
    SETTING_CHANGED = "setting_changed"


# A run in one of these may be resumed (when it is also not finished).
RESUMABLE_RUN_STATUSES = frozenset(
    {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.AWAITING_APPROVAL, RunStatus.REFUSED, RunStatus.PAUSED}
)
