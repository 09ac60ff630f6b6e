"""The master connections of a run end with it: every master process exits and its
socket (and the run's socket directory) is gone, asked over the control sockets all
at once (runbook.fleet.mux), with ``ssh -O exit`` as the fallback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runbook.fleet import mux
from runbook.fleet.inventory import Host
from runbook.fleet.ssh import SshTransport
from tests.fleet.test_fleet_run import _alive

pytestmark = pytest.mark.slow


def _masters(marker: str) -> list[int]:
    """Pids of the ssh master processes whose control path contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv]
        if words and Path(words[0]).name == "ssh" and "ControlMaster=yes" in words and any(marker in word for word in words) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _all_gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(pid) for pid in pids)


def _connected(fleet, hosts: list[Host]) -> SshTransport:
    transport = SshTransport(str(fleet.ssh_config))
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        assert list(pool.map(transport.connect, hosts)) == [None] * len(hosts)
    return transport


def test_a_run_stops_every_master_and_removes_their_sockets(tmp_path: Path, fleet) -> None:
    name = f"held-{uuid.uuid4().hex[:8]}"
    hosts = fleet.hosts
    (tmp_path / "fleet.yaml").write_text(
        f"""name: master-stop
environments:
  test:
    ssh_config: {fleet.ssh_config}
    hosts: [{', '.join(h.name for h in hosts)}]
steps:
  - id: held
    kind: command
    on: all
    irreversible: true
    run: touch "$RUNBOOK_HOST_DIR/{name}.started"; while [ ! -e "$RUNBOOK_HOST_DIR/{name}.go" ]; do sleep 0.05; done
"""
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", "fleet.yaml", "--env", "test", "--yes"], cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not all((h.state_dir / f"{name}.started").exists() for h in hosts):
            assert run.poll() is None and time.monotonic() < deadline, "the step never started on every host"
            time.sleep(0.05)
        marker = f"/rb-ssh-{run.pid}-"  # the run's socket directory (runbook.fleet.socket_dirs)
        masters = _masters(marker)
        assert len(masters) == len(hosts), masters
        directories = list(Path(tempfile.gettempdir()).glob(f"rb-ssh-{run.pid}-*"))
        assert len(directories) == 1 and len(mux.control_sockets(directories[0])) == len(hosts)
        for host in hosts:
            (host.state_dir / f"{name}.go").touch()
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, out
    assert not directories[0].exists(), "the socket directory outlived the run"
    assert _all_gone(masters), [pid for pid in masters if _alive(pid)]


def test_stop_masters_asks_every_socket_and_each_master_exits(fleet) -> None:
    transport = _connected(fleet, [Host(h.name) for h in fleet.hosts])
    try:
        sockets = mux.control_sockets(transport._control_dir)
        masters = _masters(str(transport._control_dir))
        assert len(sockets) == len(masters) == len(fleet.hosts)
        assert mux.stop_masters(sockets) == []
        assert _all_gone(masters)
        assert not [path for path in sockets if path.exists()], "a master left its socket behind"
    finally:
        transport.close()


def test_ssh_O_exit_is_the_fallback(fleet) -> None:
    host = fleet.hosts[0]
    transport = _connected(fleet, [Host(host.name)])
    try:
        [path] = mux.control_sockets(transport._control_dir)
        masters = _masters(str(transport._control_dir))
        assert len(masters) == 1
        assert mux.exit_by_ssh([path], time.monotonic() + 30) == []
        assert _all_gone(masters)
    finally:
        transport.close()


def test_a_socket_with_no_master_behind_it_is_passed_over() -> None:
    """What a master killed with -9 leaves: a socket file nobody listens on."""
    directory = Path(tempfile.mkdtemp(prefix="rb-mux-"))  # short: a socket path fits in 108 bytes
    path = directory / "stale"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(path))
        assert mux.control_sockets(directory) == [path]
        assert mux.stop_masters([path]) == []
    finally:
        shutil.rmtree(directory, ignore_errors=True)
