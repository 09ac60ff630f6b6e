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

from runbook.engine.outcome import RunResult
from runbook.engine.session import RunOptions, Session

__all__ = ["RunOptions", "RunResult", "Session"]
