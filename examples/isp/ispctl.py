#!/usr/bin/env python3
"""ispctl: drive the ISP demo application (see README.md beside this file).

Global options, accepted before or after the command:
  --db URL     database URL (else ISP_DATABASE_URL, else sqlite:///<home>/isp.db)
  --home DIR   state directory (else ISP_HOME, else examples/isp/var/)

Every command prints one line on stdout: JSON, except `backup` (the path).
Errors print one line on stderr, `ispctl: error: ...`, and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Runnable from any cwd: the `isp` package sits beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from alembic.util.exc import CommandError  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from isp import app, backup, generate, jobs, lifecycle  # noqa: E402
from isp.errors import IspError  # noqa: E402
from isp.settings import Settings, redact  # noqa: E402

Handler = Callable[[Settings, argparse.Namespace], Any]


def _backup(settings: Settings, _args: argparse.Namespace) -> str:
    made = backup.backup(settings)
    if made.note:
        print(f"ispctl: note: {made.note}", file=sys.stderr)
    return str(made.path)


COMMANDS: dict[str, tuple[str, Handler]] = {
    "reset": ("stop the server, drop every table, clear the home state", lambda s, a: lifecycle.reset(s)),
    "init": ("migrate to the state before the change (c64d9a16fa9d + c6b208ba7659)", lambda s, a: lifecycle.init(s)),
    "generate": ("insert deterministic demo data", lambda s, a: generate.generate(s, a.rows, a.seed)),
    "up": ("start the API server in the background", lambda s, a: lifecycle.up(s, a.version, a.port)),
    "down": ("stop the API server", lambda s, a: lifecycle.down(s)),
    "status": ("deployed version, server process, alembic revision", lambda s, a: lifecycle.status(s)),
    "deploy": ("replace the running server by another version", lambda s, a: lifecycle.deploy(s, a.to, a.port)),
    "backup": ("back the database up; prints the file's path", _backup),
    "job": ("run a worker task once", lambda s, a: jobs.run_task(s, a.task, a.limit)),
    "serve": ("run the API server in the foreground (what `up` starts)", lambda s, a: app.serve(s, a.version, a.port)),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command is not reset by the subparser's default.
    common.add_argument("--db", default=argparse.SUPPRESS, help="database URL")
    common.add_argument("--home", default=argparse.SUPPRESS, help="state directory")
    parser = argparse.ArgumentParser(prog="ispctl", description=__doc__.splitlines()[0], parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = {name: commands.add_parser(name, help=help_, parents=[common]) for name, (help_, _) in COMMANDS.items()}
    sub["generate"].add_argument("--rows", type=int, default=10_000, help="plan_subscriptions to create")
    sub["generate"].add_argument("--seed", type=int, default=42)
    for name in ("up", "serve"):
        sub[name].add_argument("--version", choices=lifecycle.VERSIONS, required=True)
    sub["up"].add_argument("--port", type=int, help="default: the last one used, else a free port")
    sub["serve"].add_argument("--port", type=int, required=True)
    sub["deploy"].add_argument("--to", choices=lifecycle.VERSIONS, required=True)
    sub["deploy"].add_argument("--port", type=int, help="default: the running server's port")
    sub["job"].add_argument("task", choices=sorted(jobs.TASKS))
    sub["job"].add_argument("--limit", type=int, default=10)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_flags(getattr(args, "db", None), getattr(args, "home", None))
    try:
        result = COMMANDS[args.command][1](settings, args)
    except (IspError, SQLAlchemyError, CommandError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"ispctl: error: {redact(message, settings.database_url)}", file=sys.stderr)
        return 1
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
