"""How a runbook is named and versioned, without the engine's weight.

`runbook plan -o` saves these in a plan file: importing them from
``session.py`` would load the state store (SQLAlchemy) and the whole engine
into a command that touches no state (tests/foundation/test_import_budget.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runbook.model import Runbook


def runbook_fingerprint(runbook: Runbook) -> str:
    """The runbook's version: its definition as written, the same in every
    environment (so production can ask whether this version passed staging)."""
    return hashlib.sha256(runbook.model_dump_json().encode()).hexdigest()[:16]


def runbook_argument(path: Path) -> str:
    """How to name the runbook on a command line from here: its bare name when
    ./runbooks/ finds it, else its path."""
    try:
        if path.resolve() == (Path.cwd() / "runbooks" / path.name).resolve():
            return path.name
        return os.path.relpath(path)
    except (OSError, ValueError):
        return str(path)
