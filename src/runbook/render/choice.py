"""Which console output a run gets: the live view, or plain lines.

The live view redraws a table in place, which only a person at a terminal can
read. Plain lines, the same a log file gets, are chosen when asked for
(``--plain``), when standard output is not a terminal, on a dumb terminal, and
under CI (``CI`` set to anything but empty, ``0`` or ``false``, as GitHub
Actions, GitLab CI and most others set ``CI=true``), whose log viewers show
every redraw as new lines even when the job runs on a pseudo-terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from runbook.stdstreams import is_terminal


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in ("", "0", "false", "no")


def wants_live_view(*, plain: bool = False) -> bool:
    """Whether ``runbook run`` shows the live view (see the module docstring)."""
    return not plain and is_terminal(sys.stdout) and os.environ.get("TERM") != "dumb" and not in_ci()
