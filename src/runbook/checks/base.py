"""The contract between the engine and a check kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from runbook.masking import Masker

if TYPE_CHECKING:
    from runbook.connections import Connections
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


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: observed next to expected, for the operator."""

    ok: bool
    observed: str | None = None
    expected: str | None = None
    detail: str | None = None
    applicable: bool = True
    # The check could not observe anything (a connection refused, a driver error):
    # not a false condition, so a precondition's on_fail: skip never applies to it.
    error: str | None = None

    @classmethod
    def failed_with(cls, error: str) -> CheckResult:
        return cls(False, None, None, error, error=error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "observed": self.observed,
            "expected": self.expected,
            "detail": self.detail,
            "applicable": self.applicable,
            "error": self.error,
        }


class CheckKind(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    # Only checks that read may run under --dry-run; all shipped kinds do.
    read_only: ClassVar[bool]

    def describe(self, params: Any) -> str: ...

    def evaluate(self, params: Any, ctx: CheckContext) -> CheckResult: ...
