"""One exception tree for everything the operator may be told.

Every error carries its exit code and a message written for the person at
the terminal. The CLI catches ``RunbookError`` once and prints it as is; any
lower-level error is converted at the boundary where it happens
(``raise ... from err``) so no traceback ever reaches the operator.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by every command (documented in the README).

    A signal that ends the process gives 128 + its number, the code a shell
    shows for a process killed by it: the same code whether the signal came
    before the run started (default action) or during it (handled: the step
    stopped, the run recorded ``interrupted``).
    """

    OK = 0
    STEP_FAILED = 1
    INVALID = 2
    REFUSED = 3
    AWAITING_APPROVAL = 4
    # A dry run that could not preview every step (or ended refused/failed in the preview).
    DRY_RUN_INCOMPLETE = 5
    HANGUP = 129
    INTERRUPTED = 130
    QUIT = 131
    TERMINATED = 143

    @classmethod
    def for_signal(cls, signum: int) -> ExitCode:
        """The code for a run ended by ``signum`` (one the process supervisor handles)."""
        try:
            return cls(128 + signum)
        except ValueError:
            return cls.INTERRUPTED


class RunbookError(Exception):
    """Base of every error meant for the operator."""

    exit_code: ExitCode = ExitCode.INVALID

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(RunbookError):
    """The command line asked for something that cannot be done."""


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a runbook file, located as ``file:line:col``."""

    file: str
    line: int
    col: int
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        label = "" if self.severity == "error" else "warning: "
        return f"{where}: {self.path or '<root>'}: {label}{self.message}"


class InvalidRunbook(RunbookError):
    """The runbook file (or a step definition it uses) is not valid."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"]
        super().__init__("\n".join(str(d) for d in diagnostics) + f"\n{len(errors)} error(s)")


class InvalidChecklist(RunbookError):
    """A Markdown checklist that ``runbook import`` cannot read (empty, binary, too large, no steps)."""


class Refused(RunbookError):
    """A precondition, gate, ordering rule or lock said no."""

    exit_code = ExitCode.REFUSED


class LockHeld(Refused):
    """Another run holds the lock for this runbook and environment."""


class Interrupted(RunbookError):
    """A signal asked the run to stop while it waited for something other than a
    command (an operator's answer): raised so that the wait ends at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = ExitCode.for_signal(signum)


class StateStoreError(RunbookError):
    """The state store could not be opened, read or written."""

    exit_code = ExitCode.STEP_FAILED


class StateStoreUnusable(StateStoreError):
    """This runbook cannot use the store as configured or as found (a schema name it
    refuses, a layout newer than it understands): refused before anything is written."""

    exit_code = ExitCode.INVALID


# The distribution name on PyPI (the import package and the command are ``runbook``).
DISTRIBUTION = "gated-runbook"
# Modules that not every user needs, by the extra that installs them (pyproject.toml).
EXTRA_OF_MODULE = {"psycopg": "postgresql", "pymysql": "mysql", "alembic": "alembic"}


class MissingExtra(RunbookError):
    """A runbook or a ``--state`` URL needs a driver or library of an optional extra
    that is not installed. Exit 2 (invalid input for this install), before anything runs."""

    def __init__(self, extras: dict[str, str]) -> None:
        """``extras``: extra name -> what needs it (a step kind, a connection, the state store)."""
        self.extras = extras
        needs = "; ".join(f"{what} needs the {extra!r} extra" for extra, what in extras.items())
        names = ",".join(extras)
        super().__init__(f"{needs}, which is not installed", hint=f"pip install '{DISTRIBUTION}[{names}]'")

    @classmethod
    def of_import_error(cls, err: ImportError, what: str) -> MissingExtra | None:
        """The error to show for ``err`` (an import that failed while doing ``what``) when the
        missing module is one an extra installs; None for any other import error."""
        module = (err.name or "").partition(".")[0]
        extra = EXTRA_OF_MODULE.get(module)
        return None if extra is None else cls({extra: what})
