"""A fleet of test hosts on this machine: one real ``sshd`` per host.

Each host is its own ``sshd`` process on its own loopback address
(127.0.0.2, 127.0.0.3, ...) and a free port, with its own host key and a
state directory of its own (``RUNBOOK_HOST_DIR`` in the sessions it serves,
set by sshd's ``SetEnv``). Login is by a generated client key; the client
side is an ``ssh_config`` (pass it to runbook with ``ssh_config:`` or
``RUNBOOK_SSH_CONFIG``) naming every host, its key and a known_hosts file
prepared here, so strict host key checking holds from the first connection.

Used by the fleet demo, the tests (session-scoped fixture) and the bench.
sshd needs to run as root here (it must be able to switch to the login user)
and its privilege-separation directory. By default we log in as the user
running this; ``LocalFleet(directory, login_user=PLAIN_USER)`` logs in as a
dedicated user whose login shell is /bin/sh with no rc files (created here if
missing), so a session costs ssh and nothing else: root's ~/.bashrc on this
machine runs ``pyenv init`` for every ssh session (Debian's bash reads
~/.bashrc for sshd sessions), ~0.1 s each. The bench uses it; the tests keep
the default, since several share files with the test process through the hosts
(pytest's private tmp_path, the fleet demo's database, sshd's pid file), which
the plain user cannot reach (tried: 3 of tests/fleet fail that way).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PLAIN_USER = "rbfleet"
PLAIN_HOME = Path("/var/lib/rbfleet")


def unavailable_reason() -> str | None:
    """Why a local fleet cannot be started here, or None when it can."""
    if not Path(SSHD).exists():
        return f"{SSHD} is not installed (Debian: apt-get install openssh-server)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "the OpenSSH client (ssh, ssh-keygen) is not installed"
    if os.geteuid() != 0:
        return "sshd on loopback addresses needs root here"
    return None


@dataclass
class TestHost:
    name: str
    address: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def stop(self) -> None:
        """Kill this host's sshd and every session it serves (the host vanishes)."""
        if self.process is None:
            return
        pid = self.process.pid
        # Session children are in the listener's process group (sshd -D does not setsid them
        # before auth; after it they are their own sessions): kill the children by parent too.
        for child in _descendants(pid):
            _kill(child)
        _kill(pid)
        self.process.wait()
        self.process = None


def ensure_plain_user(name: str = PLAIN_USER, home: Path = PLAIN_HOME) -> str:
    """A login user with /bin/sh (dash) and an empty home: no rc file runs in its sessions."""
    if subprocess.run(["id", "-u", name], capture_output=True).returncode != 0:
        # Password "*": no password login, yet not "locked" ("!"), which sshd refuses without PAM.
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", "--password", "*", name], check=True)
    home.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(home, user=name)
    return name


@dataclass
class LocalFleet:
    directory: Path
    hosts: list[TestHost] = field(default_factory=list)
    login_user: str | None = None  # None: the user running this

    @property
    def ssh_config(self) -> Path:
        return self.directory / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    def host(self, name: str) -> TestHost:
        return next(h for h in self.hosts if h.name == name)

    def start(self, names: list[str], first_octet: int = 2) -> LocalFleet:
        self.directory.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        _keygen(self.client_key)
        (self.directory / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        if self.login_user is not None:
            # sshd reads authorized_keys as the login user: it must reach the file.
            self.directory.chmod(0o755)
            (self.directory / "authorized_keys").chmod(0o644)
        for offset, name in enumerate(names):
            address = f"127.0.0.{first_octet + offset}"
            host = TestHost(name, address, _free_port(address), self.directory / name)
            host.state_dir.mkdir(parents=True, exist_ok=True)
            if self.login_user is not None:
                host.directory.chmod(0o755)
                shutil.chown(host.state_dir, user=self.login_user)
            _keygen(host.directory / "host_key")
            self.hosts.append(host)
        self.write_client_files()
        for host in self.hosts:
            self.start_host(host)
        for host in self.hosts:
            _wait_listening(host)
        return self

    def start_host(self, host: TestHost) -> None:
        config = host.directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.address}:{host.port}",
                    f"HostKey {host.directory / 'host_key'}",
                    f"PidFile {host.directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "UsePAM no",
                    "UseDNS no",
                    "LogLevel ERROR",
                    "MaxStartups 200",
                    "MaxSessions 200",
                    f"SetEnv RUNBOOK_HOST_DIR={host.state_dir} RUNBOOK_HOST_NAME={host.name}",
                    "",
                ]
            )
        )
        log = open(host.directory / "sshd.log", "ab")
        host.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log, start_new_session=True)
        log.close()

    def restart(self, host: TestHost) -> None:
        host.stop()
        self.start_host(host)
        _wait_listening(host)

    def new_host_key(self, host: TestHost) -> None:
        """Give ``host`` a new host key (as a reinstalled or impostor machine would have)."""
        host.stop()
        for suffix in ("", ".pub"):
            (host.directory / f"host_key{suffix}").unlink()
        _keygen(host.directory / "host_key")
        self.start_host(host)
        _wait_listening(host)

    def write_client_files(self) -> None:
        entries, config = [], [f"# written by {__name__}"]
        for host in self.hosts:
            public = (host.directory / "host_key.pub").read_text().split()
            entries.append(f"[{host.address}]:{host.port} {public[0]} {public[1]}")
            config += [
                f"Host {host.name}",
                f"  HostName {host.address}",
                f"  Port {host.port}",
                f"  User {self.login_user or getpass.getuser()}",
                f"  IdentityFile {self.client_key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {self.known_hosts}",
                "  GlobalKnownHostsFile /dev/null",
                "  BatchMode yes",
                "  LogLevel ERROR",
                # The post-quantum default costs ~0.1 s of CPU per handshake on this machine's
                # loaded cores; the tests and the bench measure runbook, not key exchange.
                "  KexAlgorithms curve25519-sha256",
            ]
        self.known_hosts.write_text("\n".join(entries) + "\n")
        self.ssh_config.write_text("\n".join(config) + "\n")

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True, stdin=subprocess.DEVNULL)


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _wait_listening(host: TestHost, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.address, host.port), timeout=0.5):
                return
        except OSError:
            if host.process is not None and host.process.poll() is not None:
                raise RuntimeError(f"sshd for {host.name} exited: {(host.directory / 'sshd.log').read_text()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
