"""``check: command`` - passes when the command exits 0 (and its output matches)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel

from runbook.checks.base import CheckContext, CheckResult
from runbook.expect import RegexText
from runbook.steps.command import CommandParams

DEFAULT_TIMEOUT_S = 60.0


# The command as a step declares it (``run``, ``cwd``, ``env``), and what its output must show.
class CommandCheckParams(CommandParams):
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
        from runbook.steps.command import run_command

        lines: list[str] = []
        result = run_command(params, ctx, timeout=ctx.timeout or DEFAULT_TIMEOUT_S, on_line=lines.append)
        return verdict(params, lines, result.returncode, timed_out=result.timed_out, interrupted=result.interrupted)


def verdict(params: CommandCheckParams, lines: list[str], returncode: int | None, *, timed_out: bool, interrupted: bool) -> CheckResult:
    """What a command check concludes from how its command ended (here or on a host)."""
    output = "\n".join(lines)
    last = lines[-1] if lines else ""
    if interrupted:
        return CheckResult(False, "interrupted", "exit 0", last, interrupted=True)
    if timed_out:
        return CheckResult(False, "timed out", "exit 0", last)
    if returncode != 0:
        return CheckResult(False, f"exit {returncode}", "exit 0", last)
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
