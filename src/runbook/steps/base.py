"""The contract between the engine and a step kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from runbook.masking import Masker

if TYPE_CHECKING:
    from runbook.connections import Connections
    from runbook.process import ProcessSupervisor


class Checkpoints(Protocol):
    """Durable progress of a resumable step, kept in the state store."""

    def load(self) -> dict[str, Any] | None: ...
    def save(self, data: dict[str, Any]) -> None: ...


class LiveControl(Protocol):
    """What other machines ask of the running run, for a step to honour at its safe points
    (engine/control.py): a pause holds there; ``set`` values arrive between batches."""

    def hold_if_paused(self, where: str, *, ask_store: bool = True) -> None: ...
    def take_settings(self, step_id: str) -> dict[str, Any]: ...


@dataclass
class StepContext:
    """Everything a step kind may use while it runs. Output goes through
    ``output`` (already masked by the engine's sink), never ``print``."""

    run_id: str
    step_id: str
    workdir: Path
    env: Mapping[str, str]
    masker: Masker
    connections: Connections
    output: Callable[[str], None]
    checkpoints: Checkpoints
    attempt: int = 1
    timeout: float | None = None
    dry_run: bool = False
    log_path: Path | None = None
    supervisor: ProcessSupervisor | None = None
    progress: Callable[[dict[str, Any]], None] = lambda _event: None
    # Called with the process group of each command started, so that a later
    # --resume can stop what a killed run left running.
    on_process_start: Callable[[int], None] = lambda _pgid: None
    # Files the runbook ships (a SQL file, an alembic.ini) are relative to the runbook's
    # directory; a context made outside a run (a test, a tool) without one uses workdir.
    runbook_dir: Path | None = None
    # None outside a run that holds its lock (a dry run, a test, a tool).
    control: LiveControl | None = None

    def runbook_file(self, path: str) -> Path:
        return (self.runbook_dir or self.workdir) / path


@dataclass
class StepOutcome:
    """What a step kind returns: a value, never an exception, for expected failures."""

    ok: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    tail: list[str] = field(default_factory=list)
    summary: str | None = None
    timed_out: bool = False
    interrupted: bool = False
    # Refused before acting (nothing was changed): the run stops with exit 3, no retries.
    refused: bool = False
    # Retrying cannot change it (an HTTP 4xx): failed at once, without the step's retries.
    final: bool = False


class StepKind(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    # A kind that changes data must declare ``rollback`` or ``irreversible: true``.
    changes_data: ClassVar[bool]
    # Manual work always waits for a person (or an approval) before it counts as done.
    needs_confirmation: ClassVar[bool]

    def describe(self, params: Any) -> str:
        """One line (or a short block) saying what will run, for plans and prompts."""
        ...

    def run(self, params: Any, ctx: StepContext) -> StepOutcome: ...
