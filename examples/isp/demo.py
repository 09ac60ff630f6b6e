#!/usr/bin/env python3
"""The subscriber-fk demo, end to end: a fresh ISP application at v1 with
generated data; first the headline guarantee (`--only deploy` on the fresh
database is refused, exit 3, and nothing is deployed), then
`runbook run subscriber-fk.yaml --yes` carries out the whole change (backup,
migrate, backfill dry run and commit, deploy v2, verify).

    python examples/isp/demo.py                  # SQLite (default)
    python examples/isp/demo.py --env staging    # PostgreSQL: embedded server, or ISP_DATABASE_URL
    python examples/isp/demo.py --rows 100000

Run from the project root. Application state goes to examples/isp/var/
(git-ignored); runbook's own state to .runbook/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "examples" / "isp" / "var"
ISPCTL = ROOT / "examples" / "isp" / "ispctl.py"


def sh(argv: list[str], env: dict[str, str], check: bool = True) -> int:
    # The interpreter's full path is noise; "python" says the same to a reader.
    shown = ["python", *argv[1:]] if argv[0] == sys.executable else argv
    print("$ " + shlex.join(shown), flush=True)
    return subprocess.run(argv, cwd=ROOT, env=env, check=check).returncode


def embedded_postgres() -> tuple[str, Any]:
    """Start the embedded PostgreSQL server shipped by the pgserver wheel."""
    import pgserver

    datadir = HOME / "pgdata"
    datadir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(datadir), cleanup_mode="stop")
    return "postgresql+psycopg://" + server.get_uri().split("://", 1)[1], server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=["default", "staging"], default="default")
    parser.add_argument("--rows", type=int, default=20_000, help="plan_subscriptions to generate")
    parser.add_argument("--keep-running", action="store_true", help="leave the application server up afterwards")
    args = parser.parse_args()

    # The runbook's and ispctl's defaults (examples/isp/var/, its SQLite database) are the
    # demo's, so that the commands it suggests at the end work as typed in a new shell.
    env = {k: v for k, v in os.environ.items() if k not in ("ISP_HOME", "RUNBOOK_PYTHON")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server = None
    if args.env == "staging" and not os.environ.get("ISP_DATABASE_URL"):
        env["ISP_DATABASE_URL"], server = embedded_postgres()
    elif args.env == "default":
        env.pop("ISP_DATABASE_URL", None)

    ispctl = [sys.executable, str(ISPCTL)]
    runbook = [sys.executable, "-m", "runbook"]
    env_flag = ["--env", args.env] if args.env != "default" else []
    sh([*ispctl, "reset"], env)
    sh([*ispctl, "init"], env)
    sh([*ispctl, "generate", "--rows", str(args.rows), "--seed", "42"], env)
    sh([*ispctl, "up", "--version", "v1"], env)
    try:
        sh([*runbook, "plan", "subscriber-fk.yaml", *env_flag], env)
        _say("First the guarantee: the code deploy is refused until the migration and backfill checks passed.")
        refused = sh([*runbook, "run", "subscriber-fk.yaml", *env_flag, "--only", "deploy", "--yes"], env, check=False)
        if refused != 3:
            _say(f"expected exit 3 (refused), got {refused}")
            return 1
        sh([*ispctl, "status"], env, check=False)
        _say("Refused with exit 3, and the application is still v1. Now the whole change:")
        code = sh([*runbook, "run", "subscriber-fk.yaml", *env_flag, "--yes"], env, check=False)
        if code == 0:
            run_id = _latest_run(env)
            sh([*runbook, "report", run_id, "--format", "md", "-o", str(HOME / "report.md")], env)
            sh([*runbook, "report", run_id, "--format", "html", "-o", str(HOME / "report.html")], env)
            rollback = f"  .venv/bin/runbook rollback {run_id} --dry-run   # what a rollback would undo, in order\n"
            _say(
                "Next, try:\n"
                f"  .venv/bin/runbook show {run_id} --events      # every transition the run journalled\n"
                f"  .venv/bin/runbook logs {run_id} backfill      # a step's output, from the state store\n"
                "  .venv/bin/runbook history                     # the refused run and the passed one\n"
                + (rollback if args.env == "default" else "")
                + f"  open {HOME / 'report.html'}"
            )
        return code
    finally:
        if not args.keep_running:
            sh([*ispctl, "down"], env, check=False)
            if server is not None:
                server.cleanup()


def _say(text: str) -> None:
    print(f"\n# {text}\n", flush=True)


def _latest_run(env: dict[str, str]) -> str:
    """The newest run's id, from `history --format json` (docs/machine-output.md), not its text."""
    argv = [sys.executable, "-m", "runbook", "history", "--limit", "1", "--format", "json"]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)["runs"][0]["id"])


if __name__ == "__main__":
    sys.exit(main())
