"""``kind: command`` - run a shell string or an argv list as a real subprocess."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from runbook.steps.base import StepContext, StepOutcome

if TYPE_CHECKING:
    from runbook.masking import Masker
    from runbook.process import ProcessResult, ProcessSupervisor

# Outputs keep the end of long output: enough for a JSON summary line, bounded for the state store.
MAX_CAPTURE_CHARS = 64 * 1024


class CommandParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str | list[str] = Field(description="A shell string (run by /bin/sh) or an argv list (no shell).")
    cwd: str | None = None
    env: dict[str, str] = {}


class CommandStep:
    name: ClassVar[str] = "command"
    Params: ClassVar[type[BaseModel]] = CommandParams
    # A ``run`` string is a /bin/sh command line: the values templated into it are shell-quoted.
    shell_keys: ClassVar[frozenset[str]] = frozenset({"run"})
    changes_data: ClassVar[bool] = True
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: CommandParams) -> str:
        text = describe_run(params.run)
        return f"(cd {params.cwd} && {text})" if params.cwd else text

    def run(self, params: CommandParams, ctx: StepContext) -> StepOutcome:
        captured: list[str] = []

        def on_line(line: str) -> None:
            captured.append(line)
            ctx.output(line)

        result = run_command(params, ctx, timeout=ctx.timeout, on_line=on_line)
        outputs = command_outputs(captured, result.returncode)
        if result.timed_out:
            return StepOutcome(False, outputs, f"timed out after {ctx.timeout:g}s", result.tail, timed_out=True)
        if result.interrupted:
            return StepOutcome(False, outputs, "interrupted", result.tail, interrupted=True)
        if result.returncode != 0:
            return StepOutcome(False, outputs, f"exited with status {result.returncode}", result.tail)
        return StepOutcome(True, outputs, tail=result.tail)


def describe_run(run: str | list[str]) -> str:
    """A shell string as written; an argv list as the words a shell would need to run it
    the same way, marked so a reader knows no shell is involved."""
    return run if isinstance(run, str) else f"{shlex.join(str(arg) for arg in run)}  (argv, no shell)"


class CommandContext(Protocol):
    """What running a declared command needs; ``StepContext`` and ``CheckContext`` both have it."""

    @property
    def workdir(self) -> Path: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def masker(self) -> Masker: ...
    @property
    def supervisor(self) -> ProcessSupervisor | None: ...
    @property
    def on_process_start(self) -> Callable[[int], None] | None: ...


def run_command(
    params: CommandParams, ctx: CommandContext, *, timeout: float | None, on_line: Callable[[str], None]
) -> ProcessResult:
    """Run the command a step or a ``check: command`` declares, under the run's
    supervision: a signal to the runbook stops its process group at once, and the
    group is reported to ``on_process_start`` so that a resume can stop leftovers."""
    from runbook.process import run_process

    return run_process(
        params.run,
        cwd=resolve_cwd(params.cwd, ctx.workdir),
        env={**ctx.env, **params.env},
        timeout=timeout,
        on_line=on_line,
        mask=ctx.masker.mask,
        supervisor=ctx.supervisor,
        on_start=ctx.on_process_start,
    )


def resolve_cwd(cwd: str | None, workdir: Path) -> Path:
    return workdir if not cwd else (workdir / cwd)


def command_outputs(lines: list[str], returncode: int | None) -> dict[str, Any]:
    """``exit_code``, ``stdout`` (its end) and ``json``: the whole output, or else
    its last line, parsed as JSON when it is JSON."""
    stdout = "\n".join(lines)[-MAX_CAPTURE_CHARS:]
    outputs: dict[str, Any] = {"exit_code": returncode, "stdout": stdout}
    for candidate in (stdout, lines[-1] if lines else ""):
        try:
            outputs["json"] = json.loads(candidate)
            break
        except ValueError:
            continue
    return outputs


KIND = CommandStep()
