"""Benchmark of fleet steps: runbook over OpenSSH vs Ansible's ad-hoc ``command`` module.

    python bench/fleet_bench.py [--hosts 20] [--repeat 3] [--no-ansible]

Needs root (one real sshd per host on 127.0.0.100, .101, ...: examples/fleet/local_fleet.py).
Contenders, side by side, on the same hosts, ssh_config and known_hosts:

* runbook: ``runbook run`` (whole process: start-up, state store, one master
  connection per host, the step, the summary) of one ``command`` step
  ``run: "true"`` on every host with ``parallel: N``; a fresh state store each time;
* Ansible: ``ansible all -m command -a true -f N`` (ansible-core from PyPI, installed
  into a temporary venv here only), ControlPersist on: its first run opens the
  connections (cold), later runs reuse them (warm, as favourable to Ansible as it gets).

CPU time beside each wall time: user + system of the process and the children it waited for
(runbook's and Ansible's ssh clients; not the masters, which run in the background).

Then the overhead of a second step on the same hosts: a runbook of two such steps;
each host's time in the second step (from the state store: journalled before the
ssh session, finished after it) minus a bare ``ssh HOST true`` over an open master
connection on the same host: what runbook adds per host over the remote command.

Baselines in the same run: bare ``ssh HOST true`` on every host at once, cold
(a new connection each) and over open master connections.

The fastest of ``--repeat`` runs counts. Every contender logs in as a dedicated
user (local_fleet.PLAIN_USER, created if missing) whose login shell is /bin/sh
with no rc files: root's ~/.bashrc on this machine runs ``pyenv init`` for every
ssh session (~0.1 s), which measured the shell, not runbook or Ansible.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "fleet"))

import local_fleet  # noqa: E402

from runbook.fleet.inventory import Host  # noqa: E402
from runbook.fleet.ssh import SshTransport  # noqa: E402


def runbook_file(directory: Path, fleet: local_fleet.LocalFleet, steps: int, parallel: int) -> Path:
    names = ", ".join(h.name for h in fleet.hosts)
    body = "".join(
        f"""  - id: step{i}
    kind: command
    on: all
    parallel: {parallel}
    run: "true"
    irreversible: true
"""
        for i in range(1, steps + 1)
    )
    path = directory / f"fleet{steps}.yaml"
    path.write_text(f"name: fleet-bench\nenvironments:\n  bench:\n    ssh_config: {fleet.ssh_config}\n    hosts: [{names}]\nsteps:\n{body}")
    return path


def time_runbook(path: Path) -> tuple[float, float, Path]:
    """Wall and CPU time (user + system of runbook and its ssh clients) of one run, and its directory."""
    # Inside the fleet's directory: removed with it.
    work = Path(tempfile.mkdtemp(prefix="run-", dir=path.parent))
    wall, cpu, code, out = _timed_process([sys.executable, "-m", "runbook", "run", str(path), "--env", "bench", "--yes"], work)
    if code != 0:
        raise SystemExit(f"runbook failed:\n{out}")
    return wall, cpu, work


def _timed_process(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """Wall time, CPU time (the process and the children it waited for), exit status, output."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status), text[-6000:]


def second_step_wall(work: Path) -> float:
    """From the first host's journalled start to the last host's recorded end, in step 2."""
    from datetime import datetime

    conn = sqlite3.connect(work / ".runbook" / "state.db")
    first, last = conn.execute("SELECT MIN(started_at), MAX(finished_at) FROM host_attempts WHERE step_id = 'step2'").fetchone()
    conn.close()
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def cold_ssh_wall(fleet: local_fleet.LocalFleet, repeat: int) -> float:
    """``ssh HOST true`` on every host at once, each opening its own connection."""
    from concurrent.futures import ThreadPoolExecutor

    argvs = [["ssh", "-F", str(fleet.ssh_config), "-o", "ControlMaster=no", "-o", "ControlPath=none", "-T", "--", h.name, "true"] for h in fleet.hosts]
    walls = []
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        for _ in range(repeat):
            started = time.perf_counter()
            list(pool.map(_timed, argvs))
            walls.append(time.perf_counter() - started)
    return min(walls)


def bare_ssh_wall(fleet: local_fleet.LocalFleet, repeat: int) -> float:
    """``ssh HOST true`` on every host at once, each over its open master connection."""
    from concurrent.futures import ThreadPoolExecutor

    transport = SshTransport(str(fleet.ssh_config))
    try:
        argvs = []
        for host in fleet.hosts:
            target = Host(host.name)
            assert transport.connect(target) is None
            argvs.append(transport.base_argv(target) + ["-o", "ControlMaster=no", "-T", "--", host.name, "true"])
        walls = []
        with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
            for _ in range(repeat):
                started = time.perf_counter()
                list(pool.map(_timed, argvs))
                walls.append(time.perf_counter() - started)
        return min(walls)
    finally:
        transport.close()


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def ansible_setup(directory: Path) -> Path | None:
    venv = directory / "ansible-venv"
    print("installing ansible-core into a temporary venv ...", flush=True)
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    installed = made.returncode == 0 and subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "ansible-core"], capture_output=True).returncode == 0
    return venv / "bin" / "ansible" if installed else None


def time_ansible(ansible: Path, fleet: local_fleet.LocalFleet, parallel: int, control_dir: Path) -> tuple[float, float]:
    inventory = fleet.directory / "ansible.ini"
    inventory.write_text("[fleet]\n" + "\n".join(h.name for h in fleet.hosts) + "\n")
    env = {
        **os.environ,
        "ANSIBLE_SSH_ARGS": f"-F {fleet.ssh_config} -o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_LOCALHOST_WARNING": "False",
    }
    wall, cpu, code, out = _timed_process([str(ansible), "all", "-i", str(inventory), "-m", "command", "-a", "true", "-f", str(parallel)], env=env)
    if code != 0:
        raise SystemExit(f"ansible failed:\n{out}")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-ansible", action="store_true")
    args = parser.parse_args()
    reason = local_fleet.unavailable_reason()
    if reason:
        print(f"cannot start a local fleet: {reason}", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="rb-fbench-"))
    fleet = local_fleet.LocalFleet(directory, login_user=local_fleet.ensure_plain_user()).start([f"h{i:02d}" for i in range(args.hosts)], first_octet=100)
    try:
        one = runbook_file(directory, fleet, 1, args.hosts)
        two = runbook_file(directory, fleet, 2, args.hosts)
        ansible = None if args.no_ansible else ansible_setup(directory)
        runbook_runs: list[tuple[float, float]] = []
        ansible_cold: list[tuple[float, float]] = []
        ansible_warm: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            runbook_runs.append(time_runbook(one)[:2])
            if ansible is not None:
                control = Path(tempfile.mkdtemp(prefix="acp-", dir=directory))
                ansible_cold.append(time_ansible(ansible, fleet, args.hosts, control))
                ansible_warm.append(time_ansible(ansible, fleet, args.hosts, control))
        best, best_cpu = min(runbook_runs)
        cold_ssh = cold_ssh_wall(fleet, args.repeat)
        print(f"\none command step on {args.hosts} hosts, parallel {args.hosts}, login shell /bin/sh (best of {args.repeat}; CPU: user + system of the process and its children):")
        print(f"  bare `ssh HOST true` x{args.hosts} at once, new connections    {cold_ssh:6.2f} s")
        print(f"  runbook run (whole process, connections opened)   {best:6.2f} s   CPU {best_cpu:5.2f} s   (target <= 1.5 s)")
        if ansible_cold:
            (cold, cold_cpu), (warm, warm_cpu) = min(ansible_cold), min(ansible_warm)
            print(f"  ansible -m command, cold (connections opened)      {cold:6.2f} s   CPU {cold_cpu:5.2f} s   {cold / best:5.1f}x runbook")
            print(f"  ansible -m command, warm (ControlPersist reused)   {warm:6.2f} s   CPU {warm_cpu:5.2f} s   {warm / best:5.1f}x runbook  (target >= 5x)")
        step2 = min(second_step_wall(time_runbook(two)[2]) for _ in range(args.repeat))
        bare = bare_ssh_wall(fleet, args.repeat)
        print(f"\nsecond step on the same {args.hosts} hosts, all at once (best of {args.repeat}):")
        print(f"  runbook step 2, first journalled start to last recorded end   {step2 * 1000:6.0f} ms")
        print(f"  bare `ssh HOST true` on every host at once, masters open      {bare * 1000:6.0f} ms")
        print(f"  overhead per host: (difference) / {args.hosts}                        {(step2 - bare) * 1000 / args.hosts:6.1f} ms   (target <= 30 ms)")
        print(f"\nload average during the bench: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        fleet.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
