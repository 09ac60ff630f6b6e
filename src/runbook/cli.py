"""The ``runbook`` command line: parse arguments, call ``runbook.commands``.

No business logic lives here. Heavy modules are imported inside each command
so that ``runbook --help`` and ``runbook plan`` stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from runbook.errors import ExitCode, RunbookError

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 a step failed, 2 invalid input, 3 refused, 4 awaiting approval, 130 interrupted."


def _call(function: Callable[..., int], **kwargs: Any) -> None:
    """Run a command function; print operator errors as one message, never a traceback."""
    try:
        code = function(**kwargs)
    except RunbookError as err:
        click.echo(f"error: {err}" if "\n" not in err.message else str(err), err=True)
        sys.exit(int(err.exit_code))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(int(code))


def _warn(text: str) -> None:
    click.echo(text, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="runbook")
def main() -> None:
    """Run deployment runbooks: ordered, gated, resumable, recorded."""


RUNBOOK_ARG = click.argument("runbook_file", metavar="RUNBOOK")
ENV_OPT = click.option("--env", "env", metavar="NAME", help="Apply this environment's overrides.")
VAR_OPT = click.option("--var", "var_items", multiple=True, metavar="NAME=VALUE", help="Set a var (overrides everything else).")


@main.command()
@RUNBOOK_ARG
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(runbook_file: str, strict: bool) -> None:
    """Check a runbook file and report every problem at once (exit 2 if any)."""
    from runbook import commands

    _call(commands.validate, name=runbook_file, strict=strict, warn=_warn)


@main.command()
@RUNBOOK_ARG
@ENV_OPT
@VAR_OPT
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
def plan(runbook_file: str, env: str | None, var_items: tuple[str, ...], fmt: str) -> None:
    """Print what a run would do, without executing anything."""
    from runbook import commands

    _call(commands.plan, name=runbook_file, env=env, var_items=var_items, fmt=fmt)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the runbook format."""
    from runbook import commands

    _call(commands.schema)


if __name__ == "__main__":  # pragma: no cover
    main()
