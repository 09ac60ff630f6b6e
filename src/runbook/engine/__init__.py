"""The engine: executes a plan in enforced order, journalling every transition.

Layers, each importing only the ones below it::

    run.py, rollback.py   strategies: the main loop; undo and rollback options
    session.py            one lifecycle for runs and rollbacks: lock, heartbeat, signals, finish
    resume.py             what a resume recovers, re-verifies (the frontier) and carries over
    step.py               StepRunner: the only code that executes a step body
    approvals.py          confirmations and recorded approvals
    checks.py             one check evaluated and journalled
    context.py            step states, the template view, rendering
    journal.py            the one writer of events and attempts; masks everything
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.engine.outcome import RunResult
    from runbook.engine.session import RunOptions, Session

__all__ = ["RunOptions", "RunResult", "Session"]


def __getattr__(name: str) -> Any:
    """Loaded on first use: a light submodule (``runbook.engine.values``,
    ``runbook.engine.naming``) must not pull in the session, the state store
    and SQLAlchemy with it (`runbook plan -o` imports those two)."""
    if name == "RunResult":
        from runbook.engine.outcome import RunResult

        return RunResult
    if name in ("RunOptions", "Session"):
        from runbook.engine import session

        return getattr(session, name)
    raise AttributeError(f"module 'runbook.engine' has no attribute {name!r}")
