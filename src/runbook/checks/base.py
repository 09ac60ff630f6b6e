"""The contract between the engine and a check kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from runbook.masking import Masker

if TYPE_CHECKING:
    from runbook.connections import Connections
    from runbook.process import ProcessSupervisor
    from runbook.state import StateStore


@dataclass
class CheckContext:
    workdir: Path
    env: Mapping[str, str]
    masker: Masker
    connections: Connections
    timeout: float | None = None
    # Checks about history (a run passed in staging) read the state store.
    state: StateStore | None = None
    runbook: str | None = None
    fingerprint: str | None = None
    # Files the runbook ships (an alembic.ini) are relative to the runbook's directory;
    # a context made outside a run (a test, a tool) without one uses workdir.
    runbook_dir: Path | None = None
    # A check that starts a command runs it under the run's supervision, like a
    # step: a signal stops it at once, and its process group is journalled (via
    # ``on_process_start``) so that --resume stops what a killed run left running.
    supervisor: ProcessSupervisor | None = None
    on_process_start: Callable[[int], None] | None = None

    def runbook_file(self, path: str) -> Path:
        return (self.runbook_dir or self.workdir) / path


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: observed next to expected, for the operator.

    A check that could not look (no connection, a missing file, its own
    exception) has ``error`` set instead: that is not an observed value, and
    it is shown as ``error: MESSAGE``.

    ``interrupted``: a signal stopped the check before it could decide; it is
    neither passed nor failed, and the run ends as interrupted.
    """

    ok: bool
    observed: str | None = None
    expected: str | None = None
    detail: str | None = None
    applicable: bool = True
    error: str | None = None
    interrupted: bool = False

    @classmethod
    def errored(cls, message: str) -> CheckResult:
        return cls(False, error=message)

    @property
    def shortfall(self) -> str:
        """Why it did not hold, in one phrase: the error, or observed next to expected."""
        if self.error is not None:
            return f"error: {self.error}"
        return f"observed {self.observed}, expected {self.expected}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "observed": self.observed,
            "expected": self.expected,
            "detail": self.detail,
            "applicable": self.applicable,
            "error": self.error,
        }


def result_text(result: Mapping[str, Any], *, with_expected: bool = True) -> str:
    """A recorded result (``CheckResult.as_dict``, a check event) as the operator reads it:
    ``error: MESSAGE`` for a check that could not look, else what was observed (and expected)."""
    if result.get("error") is not None:
        return f"error: {result['error']}"
    parts = [f"observed {result['observed']}"] if result.get("observed") is not None else []
    if with_expected and result.get("expected") is not None:
        parts.append(f"expected {result['expected']}")
    return ", ".join(parts)


class CheckKind(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    # Only checks that read may run under --dry-run; all shipped kinds do.
    read_only: ClassVar[bool]

    def describe(self, params: Any) -> str: ...

    def evaluate(self, params: Any, ctx: CheckContext) -> CheckResult: ...
