"""One plain function per CLI verb; ``cli.py`` only parses arguments and calls these.

Each function takes plain values, writes its output through ``echo`` and
returns an exit code, so tests call them directly without a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from runbook.errors import ExitCode

Echo = Callable[[str], None]


def _echo(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _load(name: str, *, strict: bool = False):  # type: ignore[no-untyped-def]
    from runbook.loader import find_runbook, load_runbook

    return load_runbook(find_runbook(name), strict=strict)


def validate(name: str, *, strict: bool = False, echo: Echo = _echo, warn: Echo | None = None) -> int:
    loaded = _load(name, strict=strict)
    for warning in loaded.warnings:
        (warn or echo)(str(warning))
    steps = len(loaded.runbook.steps)
    echo(f"{loaded.path}: valid ({steps} steps, {len(loaded.warnings)} warning(s))")
    return ExitCode.OK


def plan(name: str, *, env: str | None = None, var_items: Sequence[str] = (), fmt: str = "text", echo: Echo = _echo) -> int:
    from runbook.planner import build_plan, parse_var_overrides
    from runbook.render.plan import RENDERERS

    built = build_plan(_load(name), env, parse_var_overrides(list(var_items)))
    echo(RENDERERS[fmt](built))
    return ExitCode.OK


def schema(*, echo: Echo = _echo) -> int:
    from runbook.schema import runbook_json_schema

    echo(json.dumps(runbook_json_schema(), indent=2))
    return ExitCode.OK


def list_steps(*, directory: Path | None = None, echo: Echo = _echo) -> int:
    from runbook.definitions import list_definitions

    directory = directory or Path.cwd() / "steps"
    for definition in list_definitions(directory):
        echo(f"{definition.name}: {definition.description}")
        for param in definition.params:
            echo(f"    {param}")
    return ExitCode.OK
