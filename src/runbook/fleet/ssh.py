"""OpenSSH as the transport: one master connection per host, every command over it.

The first use of a host starts a master (``ssh -M -N -f``, ControlPersist) on a
socket in a private directory of this process; every command then runs as a
multiplexed session over it, so a second step on the same host pays no
handshake. Without ``ssh_config:`` (or ``RUNBOOK_SSH_CONFIG``) ssh reads the
user's own ``~/.ssh/config`` as usual: ProxyJump, agent, known_hosts, keys.

Always set on the command line (over any config): ``BatchMode=yes`` (never a
prompt), ``StrictHostKeyChecking=yes`` (an unknown or changed host key refuses
the host), ``ConnectTimeout`` and ``ServerAlive*`` (an unreachable host fails
within ``CONNECT_TIMEOUT`` seconds, one that vanishes mid-command within
``ALIVE_INTERVAL * ALIVE_COUNT`` seconds).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from runbook.fleet.inventory import Host
from runbook.fleet.mux import control_sockets, stop_masters
from runbook.fleet.remote import WRAPPER_COMMAND
from runbook.fleet.socket_dirs import make_socket_dir, sweep_dead_socket_dirs

CONNECT_TIMEOUT = 10
ALIVE_INTERVAL = 5
ALIVE_COUNT = 3
# A master with no session for this long exits by itself (runbook killed before closing it).
CONTROL_PERSIST = 60
SSH_FAILED = 255

_HOST_KEY_CHANGED = "REMOTE HOST IDENTIFICATION HAS CHANGED"
_HOST_KEY_UNKNOWN = "Host key verification failed"


@dataclass(frozen=True)
class ConnectFailure:
    """Why a host could not be reached; ``kind`` is host_key_changed, host_key_unknown or unreachable."""

    kind: str
    message: str


def explain_ssh_failure(host: Host, text: str) -> ConnectFailure:
    """An operator's sentence for ssh's own error output (exit status 255)."""
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip() and not line.startswith("@")), "no error output")
    if _HOST_KEY_CHANGED in text:
        return ConnectFailure(
            "host_key_changed",
            f"host {host.name}: its host key has CHANGED since it was recorded in known_hosts; refused "
            "(a reinstalled host, or someone in between). Verify the new key out of band, then update known_hosts "
            f"(ssh-keygen -R) and resume",
        )
    if _HOST_KEY_UNKNOWN in text:
        return ConnectFailure("host_key_unknown", f"host {host.name}: its host key is not in known_hosts (strict host key checking); add it after verifying it, then resume ({last})")
    return ConnectFailure("unreachable", f"host {host.name}: unreachable over ssh: {last}")


class SshTransport:
    """The ssh command lines for a run's hosts, and their master connections."""

    def __init__(self, config: str | None = None) -> None:
        self.config = config
        # Leftovers of runs killed with -9 (runbook.fleet.socket_dirs); %C (a hash) names each connection.
        sweep_dead_socket_dirs(older_than=CONTROL_PERSIST + CONNECT_TIMEOUT)
        self._control_dir = make_socket_dir()
        # Hosts whose master connection is up.
        self._hosts: dict[str, Host] = {}
        # Masters begun by connect_early, not yet taken by connect.
        self._pending: dict[str, Future[ConnectFailure | None]] = {}
        # ssh processes starting a master (stopped by close).
        self._starting: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self._lock = threading.Lock()
        atexit.register(self.close)

    def base_argv(self, host: Host) -> list[str]:
        argv = ["ssh"]
        if self.config:
            argv += ["-F", self.config]
        argv += [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", f"ServerAliveInterval={ALIVE_INTERVAL}",
            "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
            "-o", f"ControlPath={self._control_dir}/%C",
        ]  # fmt: skip
        if host.address:
            argv += ["-o", f"HostName={host.address}"]
        if host.port:
            argv += ["-p", str(host.port)]
        if host.user:
            argv += ["-l", host.user]
        return argv

    def connect(self, host: Host) -> ConnectFailure | None:
        """Start the host's master connection once; None when it is up (or was already).
        A failure is not remembered: a retry of the step, or a later step, tries again.
        A master begun by ``connect_early`` is waited for, and its outcome is this one's."""
        with self._lock:
            if host.name in self._hosts:
                return None
            pending = self._pending.pop(host.name, None)
        failure = pending.result() if pending is not None else self._start_master(host)
        if failure is None:
            with self._lock:
                self._hosts[host.name] = host
        return failure

    def connect_early(self, hosts: list[Host]) -> None:
        """Begin the hosts' master connections in the background (``connect`` takes each over)."""
        for host in hosts:
            with self._lock:
                if self._closed or host.name in self._hosts or host.name in self._pending:
                    continue
                future: Future[ConnectFailure | None] = Future()
                self._pending[host.name] = future
            threading.Thread(target=self._start_into, args=(host, future), name=f"ssh-{host.name}", daemon=True).start()

    def _start_into(self, host: Host, future: Future[ConnectFailure | None]) -> None:
        try:
            future.set_result(self._start_master(host))
        except BaseException as err:  # noqa: BLE001 - handed to connect(), which raises it
            future.set_exception(err)

    def _start_master(self, host: Host) -> ConnectFailure | None:
        argv = self.base_argv(host) + ["-o", "ControlMaster=yes", "-o", f"ControlPersist={CONTROL_PERSIST}", "-N", "-f", "--", host.name]
        limit = CONNECT_TIMEOUT * 2 + 5
        # stderr to a file, not a pipe: the master forks to the background and keeps it open.
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
            except FileNotFoundError:
                return ConnectFailure("unreachable", "the OpenSSH client (ssh) is not installed")
            with self._lock:
                self._starting.add(proc)
                if self._closed:
                    proc.kill()
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return ConnectFailure("unreachable", f"host {host.name}: no ssh connection within {limit}s")
            finally:
                with self._lock:
                    self._starting.discard(proc)
            errors.seek(0)
            text = errors.read().decode(errors="replace")
        return None if code == 0 else explain_ssh_failure(host, text)

    def command_argv(self, host: Host) -> list[str]:
        """The ssh command that runs one step's script on ``host`` (the script comes on stdin)."""
        return self.base_argv(host) + ["-o", "ControlMaster=no", "-T", "--", host.name, WRAPPER_COMMAND]

    def close(self) -> None:
        """Stop the master connections, all at once, and remove their sockets."""
        with self._lock:
            self._closed = True
            self._hosts.clear()
            pending = list(self._pending.values())
            self._pending.clear()
            for proc in self._starting:
                proc.kill()  # a master still connecting (begun early, never used): not needed
        for future in pending:
            future.exception()  # returns at once: its ssh was stopped just now
        # Every socket in the private directory is a master of this transport's.
        stop_masters(control_sockets(self._control_dir))
        shutil.rmtree(self._control_dir, ignore_errors=True)


def ssh_config_path(option: str | None, base: Path) -> str | None:
    """``ssh_config:`` of the environment (relative to the runbook), else RUNBOOK_SSH_CONFIG, else
    None (ssh reads ~/.ssh/config)."""
    if option:
        return str(base / option)
    from_env = os.environ.get("RUNBOOK_SSH_CONFIG")
    # As given on the command line: relative to the current directory.
    return os.path.abspath(from_env) if from_env else None
