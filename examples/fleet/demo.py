#!/usr/bin/env python3
"""The subscriber-fk change on a small fleet: a db host and two application hosts over ssh.

Starts a local fleet (one real sshd per host on 127.0.0.x, as root: see
local_fleet.py), prepares the ISP demo application at v1 with generated data, then
runs runbooks/subscriber-fk-fleet.yaml: backup and migration on db1, the backfill
over the database connection, deploy v2 to app1 (api-server) and app2
(celery-worker) in parallel, verification on both.

    python examples/fleet/demo.py
    python examples/fleet/demo.py --ssh-config FILE --root DIR   # hosts db1, app1, app2 already there

The single-machine demo (examples/isp/demo.py) is unchanged.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import local_fleet  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE.parents[1], help="the project (runbooks/, examples/isp/)")
    parser.add_argument("--ssh-config", help="an ssh_config naming db1, app1, app2 (default: start a local fleet)")
    parser.add_argument("--rows", type=int, default=2_000)
    args = parser.parse_args()
    root = args.root.resolve()
    fleet = None
    ssh_config = args.ssh_config
    if ssh_config is None:
        reason = local_fleet.unavailable_reason()
        if reason:
            print(f"cannot start a local fleet: {reason}", file=sys.stderr)
            return 2
        fleet = local_fleet.LocalFleet(Path(tempfile.mkdtemp(prefix="rb-demo-fleet-"))).start(["db1", "app1", "app2"], first_octet=20)
        ssh_config = str(fleet.ssh_config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ISP_", "RUNBOOK_"))}
    env.update(ISP_PROJECT=str(root), RUNBOOK_PYTHON=sys.executable, RUNBOOK_SSH_CONFIG=ssh_config)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    ispctl = [sys.executable, "examples/isp/ispctl.py"]
    runbook = [sys.executable, "-m", "runbook"]

    def sh(*argv: str, check: bool = True) -> int:
        print("$ " + shlex.join(["python" if a == sys.executable else a for a in argv]), flush=True)
        return subprocess.run(argv, cwd=root, env=env, check=check).returncode

    try:
        sh(*ispctl, "reset")
        sh(*ispctl, "init")
        sh(*ispctl, "generate", "--rows", str(args.rows), "--seed", "42")
        sh(*ispctl, "up", "--version", "v1")
        sh(*runbook, "plan", "subscriber-fk-fleet.yaml", "--env", "fleet")
        code = sh(*runbook, "run", "subscriber-fk-fleet.yaml", "--env", "fleet", "--yes", check=False)
        sh(*ispctl, "status", check=False)
        return code
    finally:
        subprocess.run([*ispctl, "down"], cwd=root, env=env, check=False, stdout=subprocess.DEVNULL)
        if fleet is not None:
            fleet.stop()


if __name__ == "__main__":
    sys.exit(main())
