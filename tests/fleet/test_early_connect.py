"""A fresh run whose first step runs on hosts begins their master connections while it
prepares (runbook.fleet.context.connect_early); the step takes them over. Only
connections: a run refused before the step ran nothing on the hosts and leaves no
master behind; a dry run connects to nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from runbook.fleet.inventory import Host
from runbook.fleet.remote import script, stdin_payload
from runbook.fleet.ssh import SshTransport
from tests.fleet.test_fleet_run import _cli, _count, _runbook, _step
from tests.fleet.test_master_stop import _all_gone, _masters

pytestmark = pytest.mark.slow


def test_the_step_takes_over_the_master_begun_early(make_fleet) -> None:
    """After the early master is up the host's sshd stops listening: only that master can carry the command."""
    own = make_fleet(["e1"], 80)
    host = own.hosts[0]
    transport = SshTransport(str(own.ssh_config))
    try:
        transport.connect_early([Host(host.name)])
        assert transport.connect(Host(host.name)) is None
        assert len(_masters(str(transport._control_dir))) == 1, "connect started a master of its own"
        assert host.process is not None
        os.kill(host.process.pid, signal.SIGTERM)  # the listener only: the master's session stays
        host.process.wait()
        host.process = None
        # stdin stays open while the command runs, as runbook holds it (its end stops the command).
        ran = subprocess.Popen(transport.command_argv(Host(host.name)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert ran.stdin is not None and ran.stdout is not None
        ran.stdin.write(stdin_payload(script("echo over the early master")))
        ran.stdin.flush()
        out = ran.stdout.read()
        assert (ran.wait(timeout=30), out) == (0, b"over the early master\n")
        ran.stdin.close()
    finally:
        transport.close()


def test_a_run_refused_before_its_first_step_runs_nothing_and_leaves_no_master(tmp_path: Path, fleet) -> None:
    name = f"early-{uuid.uuid4().hex[:8]}"
    step = _step(name, "    preconditions:\n      - check: file_exists\n        path: /nonexistent/runbook-precondition\n")
    run = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(_runbook(tmp_path, fleet, step)), "--env", "test"], cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 3, out
    assert {h.name: _count(h, name) for h in fleet.hosts} == {h.name: 0 for h in fleet.hosts}
    assert not list(Path(tempfile.gettempdir()).glob(f"rb-ssh-{run.pid}-*"))
    assert _all_gone(_masters(f"/rb-ssh-{run.pid}-"))


def test_a_dry_run_connects_to_nothing(tmp_path: Path, fleet) -> None:
    """The step's host is a bare listener instead of an sshd: a connection would queue there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.86", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        name = f"dry-{uuid.uuid4().hex[:8]}"
        path = tmp_path / "dry.yaml"
        path.write_text(
            f"name: dry\nenvironments:\n  test:\n    ssh_config: {fleet.ssh_config}\n    hosts:\n      d1: {{address: 127.0.0.86, port: {port}}}\n"
            f"steps:\n{_step(name).replace('on: all_hosts', 'on: d1')}"
        )
        result = _cli(tmp_path, "run", str(path), "--dry-run")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "d1| echo ran" in result.stdout
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()[0].close()
