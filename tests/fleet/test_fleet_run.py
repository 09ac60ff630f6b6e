"""Fleet steps end to end: real sshd hosts, the runbook CLI, the state store.

Each host's command appends a line to a count file in the host's own state
directory, so a test reads how many times it ran there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _runbook(tmp_path: Path, fleet, step: str, *, hosts: str | None = None, groups: str = "") -> Path:
    names = hosts or "[" + ", ".join(h.name for h in fleet.hosts) + "]"
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"""name: fleet-test
environments:
  test:
    ssh_config: {fleet.ssh_config}
    hosts: {names}
    groups:
      all_hosts: [{', '.join(h.name for h in fleet.hosts)}]
{groups}
steps:
{step}
"""
    )
    return path


def _cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args, "--env", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _count(host, name: str) -> int:
    path = host.state_dir / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def _step(name: str, extra: str = "", run_more: str = "") -> str:
    return f"""  - id: deploy
    kind: command
    on: all_hosts
    irreversible: true
{extra}    run: echo ran >> "$RUNBOOK_HOST_DIR/{name}"; {run_more}test ! -e "$RUNBOOK_HOST_DIR/{name}.fail"
"""


def test_each_host_runs_once_and_resume_reruns_only_the_failed(tmp_path: Path, fleet) -> None:
    name = f"count-{uuid.uuid4().hex[:8]}"
    runbook = _runbook(tmp_path, fleet, _step(name, "    parallel: 3\n"))
    bad = fleet.hosts[1]
    (bad.state_dir / f"{name}.fail").touch()
    first = _cli(tmp_path, "run", str(runbook))
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"1 of {len(fleet.hosts)} host(s) failed ({bad.name})" in first.stdout
    (bad.state_dir / f"{name}.fail").unlink()
    second = _cli(tmp_path, "run", str(runbook), "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    assert {h.name: _count(h, name) for h in fleet.hosts} == {h.name: 2 if h is bad else 1 for h in fleet.hosts}
    assert "passed earlier in this run; not run again" in second.stdout


def test_max_fail_exceeded_in_batch_two_stops_before_batch_three(tmp_path: Path, fleet) -> None:
    name = f"count-{uuid.uuid4().hex[:8]}"
    runbook = _runbook(tmp_path, fleet, _step(name, "    serial: 2\n    max_fail: 1\n"))
    for host in fleet.hosts[2:4]:  # both hosts of batch 2
        (host.state_dir / f"{name}.fail").touch()
    result = _cli(tmp_path, "run", str(runbook))
    assert result.returncode == 1
    assert "batch 2 had 2 failed host(s), more than max_fail 1: later batches not started" in result.stdout
    counts = [_count(h, name) for h in fleet.hosts]
    assert counts == [1, 1, 1, 1, 0, 0]
    for host in fleet.hosts[2:4]:
        (host.state_dir / f"{name}.fail").unlink()


def test_changed_host_key_and_unreachable_host_fail_those_hosts_only(tmp_path: Path, make_fleet) -> None:
    own = make_fleet(["k1", "k2", "k3", "k4", "k5"], 40)
    own.new_host_key(own.host("k2"))
    own.host("k4").stop()  # unreachable from the start
    name = "count"
    runbook = _runbook(tmp_path, own, _step(name))
    result = _cli(tmp_path, "run", str(runbook))
    assert result.returncode == 1
    assert "host k2: its host key has CHANGED" in result.stdout
    assert "host k4: unreachable over ssh" in result.stdout
    assert [_count(h, name) for h in own.hosts] == [1, 0, 1, 0, 1]


def _spawn(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", *args, "--env", "test"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_sigint_stops_the_remote_process_group(tmp_path: Path, fleet) -> None:
    name = f"int-{uuid.uuid4().hex[:8]}"
    host = fleet.hosts[0]
    runbook = _runbook(tmp_path, fleet, _step(name, run_more=f'sleep 300 & echo $! > "$RUNBOOK_HOST_DIR/{name}.pid"; wait; '))
    proc = _spawn(tmp_path, "run", str(runbook))
    _wait_for(host.state_dir / f"{name}.pid")
    for h in fleet.hosts:
        _wait_for(h.state_dir / f"{name}.pid")
    sleepers = [int((h.state_dir / f"{name}.pid").read_text()) for h in fleet.hosts]
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert all(_gone(pid) for pid in sleepers), "a remote sleep outlived the interrupted step"


def test_kill_9_in_a_parallel_batch_then_resume_runs_no_passed_host_again(tmp_path: Path, fleet) -> None:
    name = f"k9-{uuid.uuid4().hex[:8]}"
    slow = fleet.hosts[-1]
    run_more = f'if [ "$RUNBOOK_HOST_NAME" = {slow.name} ] && [ ! -e "$RUNBOOK_HOST_DIR/{name}.resumed" ]; then echo $$ > "$RUNBOOK_HOST_DIR/{name}.pid"; sleep 300; fi; '
    runbook = _runbook(tmp_path, fleet, _step(name, run_more=run_more))
    proc = _spawn(tmp_path, "run", str(runbook))
    _wait_for(slow.state_dir / f"{name}.pid")
    deadline = time.monotonic() + 60
    while sum(_count(h, name) for h in fleet.hosts) < len(fleet.hosts):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # the fast hosts' results are recorded
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    remote = int((slow.state_dir / f"{name}.pid").read_text())
    # Its ssh session's stdin closed with runbook: the host stops the command itself.
    assert _gone(remote), "the remote command outlived runbook"
    (slow.state_dir / f"{name}.resumed").touch()
    resumed = _cli(tmp_path, "run", str(runbook), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    counts = {h.name: _count(h, name) for h in fleet.hosts}
    assert counts[slow.name] == 2
    assert all(counts[h.name] <= 2 for h in fleet.hosts)
    assert sum(1 for h in fleet.hosts if counts[h.name] == 1) >= len(fleet.hosts) - 1 - 0
    import sqlite3

    with sqlite3.connect(tmp_path / ".runbook" / "state.db") as db:
        rows = db.execute("SELECT status FROM host_attempts WHERE host = ? ORDER BY attempt", (slow.name,)).fetchall()
    assert [r[0] for r in rows] == ["interrupted", "passed"]


def test_a_host_whose_sshd_dies_mid_step_fails_and_resume_reruns_only_it(tmp_path: Path, make_fleet) -> None:
    own = make_fleet(["s1", "s2", "s3", "s4", "s5"], 50)
    victim = own.host("s3")
    name = "count"
    run_more = f'if [ "$RUNBOOK_HOST_NAME" = s3 ] && [ ! -e "$RUNBOOK_HOST_DIR/back" ]; then touch "$RUNBOOK_HOST_DIR/started"; sleep 300; fi; '
    runbook = _runbook(tmp_path, own, _step(name, run_more=run_more))
    proc = _spawn(tmp_path, "run", str(runbook))
    _wait_for(victim.state_dir / "started")
    victim.stop()
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 1, out
    assert "1 of 5 host(s) failed (s3)" in out
    own.start_host(victim)
    from local_fleet import _wait_listening

    _wait_listening(victim)
    (victim.state_dir / "back").touch()
    resumed = _cli(tmp_path, "run", str(runbook), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [_count(h, name) for h in own.hosts] == [1, 1, 2, 1, 1]


def test_on_failure_rollback_undoes_passed_hosts_newest_batch_first(tmp_path: Path, fleet) -> None:
    name = f"rb-{uuid.uuid4().hex[:8]}"
    order = tmp_path / "undone"
    extra = f"""    serial: 2
    on_failure: rollback
    rollback:
      kind: command
      run: echo "$RUNBOOK_HOST_NAME" >> {order}
"""
    runbook = _runbook(tmp_path, fleet, _step(name, extra).replace("    irreversible: true\n", ""))
    failing = fleet.hosts[5]
    (failing.state_dir / f"{name}.fail").touch()
    result = _cli(tmp_path, "run", str(runbook))
    (failing.state_dir / f"{name}.fail").unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    undone = order.read_text().split()
    names = [h.name for h in fleet.hosts]
    assert sorted(undone) == sorted(names[:5]), result.stdout
    assert undone[0] == names[4]
    assert set(undone[1:3]) == set(names[2:4]) and set(undone[3:5]) == set(names[0:2])


def test_a_second_step_on_a_host_reuses_its_connection(tmp_path: Path, make_fleet) -> None:
    """The first step stops the host's sshd listener: only the open master connection can carry the second."""
    own = make_fleet(["m1"], 70)
    host = own.hosts[0]
    steps = f"""  - id: first
    kind: command
    on: m1
    run: kill $(cat {host.directory / 'sshd.pid'}); sleep 0.5
    irreversible: true
  - id: second
    kind: command
    on: m1
    run: echo second on $RUNBOOK_HOST_NAME
    irreversible: true
"""
    result = _cli(tmp_path, "run", str(_runbook(tmp_path, own, steps)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "m1| second on m1" in result.stdout
    with pytest.raises(OSError):
        import socket

        socket.create_connection((host.address, host.port), timeout=2).close()


def test_a_secret_reaches_the_host_but_not_its_process_list_nor_the_output(tmp_path: Path, fleet) -> None:
    host = fleet.hosts[0]
    name = f"secret-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "secret.yaml"
    path.write_text(
        f"""name: fleet-secret
vars:
  token: {{secret: true, default: "s3cr3t-{name}"}}
environments:
  test:
    ssh_config: {fleet.ssh_config}
    hosts: [{host.name}]
steps:
  - id: use
    kind: command
    on: {host.name}
    env: {{TOKEN: "{{{{ vars.token }}}}"}}
    run: 'echo {{{{ vars.token }}}} > "$RUNBOOK_HOST_DIR/{name}"; ps -eo args > "$RUNBOOK_HOST_DIR/{name}.ps"; echo "$TOKEN"'
    irreversible: true
"""
    )
    result = _cli(tmp_path, "run", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    secret = f"s3cr3t-{name}"
    assert (host.state_dir / name).read_text().strip() == secret
    assert secret not in (host.state_dir / f"{name}.ps").read_text()
    assert secret not in result.stdout + result.stderr and "***" in result.stdout
    assert secret.encode() not in (tmp_path / ".runbook" / "state.db").read_bytes()
