"""``run --lock-timeout DURATION``: wait for a held (runbook, environment) lock instead of refusing.

Without it a held lock refuses the run at once (exit 3), as before. With it the
run says once who holds the lock and tries again every ``POLL_S`` until the lock
is free or the duration has passed, then refuses with the holder named and how
long it waited. A dead holder's lock is taken over on the first try, as always
(``state/locks.py``). Ctrl-C ends the wait like any other (exit 130).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from runbook.errors import LockHeld
from runbook.state import StateStore
from runbook.state.locks import LockHandle

POLL_S = 0.5


def acquire_waiting(store: StateStore, runbook: str, env: str, run_id: str, timeout: float, notice: Callable[[str], None]) -> LockHandle:
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            return store.acquire_lock(runbook, env, run_id)
        except LockHeld as err:
            left = deadline - time.monotonic()
            if left <= 0:
                if timeout > 0:
                    err.message = f"{err.message} (waited {timeout:g}s for it: --lock-timeout)"
                raise
            if not told:
                notice(f"{err.message}; waiting up to {timeout:g}s for it (--lock-timeout)")
                told = True
            time.sleep(min(POLL_S, left))
