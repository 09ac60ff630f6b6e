"""``check: command`` - passes when the command exits 0 (and its output matches)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from runbook.checks.base import CheckContext, CheckResult
from runbook.expect import RegexText

DEFAULT_TIMEOUT_S = 60.0


class CommandCheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str | list[str] = Field(description="A shell string (run by /bin/sh) or an argv list (no shell).")
    cwd: str | None = None
    env: dict[str, str] = {}
    output_matches: RegexText | None = None
    output_excludes: RegexText | None = None


class CommandCheck:
    name: ClassVar[str] = "command"
    Params: ClassVar[type[BaseModel]] = CommandCheckParams
    # A ``run`` string is a /bin/sh command line: the values templated into it are shell-quoted.
    shell_keys: ClassVar[frozenset[str]] = frozenset({"run"})
    read_only: ClassVar[bool] = True

    def describe(self, params: CommandCheckParams) -> str:
        from runbook.steps.command import describe_run

        text = describe_run(params.run)
        if params.output_matches:
            text += f"  (output matches /{params.output_matches}/)"
        if params.output_excludes:
            text += f"  (output has no /{params.output_excludes}/)"
        return text

    def evaluate(self, params: CommandCheckParams, ctx: CheckContext) -> CheckResult:
        from runbook.process import run_process
        from runbook.steps.command import resolve_cwd

        lines: list[str] = []
        result = run_process(
            params.run,
            cwd=resolve_cwd(params.cwd, ctx.workdir),
            env={**ctx.env, **params.env},
            timeout=ctx.timeout or DEFAULT_TIMEOUT_S,
            on_line=lines.append,
            mask=ctx.masker.mask,
        )
        output = "\n".join(lines)
        last = lines[-1] if lines else ""
        if result.timed_out:
            return CheckResult(False, "timed out", "exit 0", last)
        if result.returncode != 0:
            return CheckResult(False, f"exit {result.returncode}", "exit 0", last)
        if params.output_matches and not re.search(params.output_matches, output, re.M):
            return CheckResult(False, _excerpt(last), f"output matching /{params.output_matches}/")
        if params.output_excludes:
            found = re.search(params.output_excludes, output, re.M)
            if found:
                line = output[: found.start()].count("\n")
                return CheckResult(False, _excerpt(lines[line]), f"no output matching /{params.output_excludes}/")
        return CheckResult(True, "exit 0", "exit 0")


def _excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


KIND = CommandCheck()
