"""Stopping a run's ssh master connections, all at once.

``ssh -O exit`` is a whole ssh process per master (a few ms each on a quiet
machine, ~20 ms under load): one after another it added host-count times that
to the end of every run. The same request is a few bytes on the master's
control socket, in OpenSSH's multiplexing protocol (PROTOCOL.mux in OpenSSH's
source): read the master's hello, send ours and ``MUX_C_TERMINATE``; the master
closes its end of the socket as it exits (read here as end of file; its
``MUX_S_OK`` rarely gets out first) and removes its socket file. Every socket
is asked at once, from one thread (a selector).

A master that does not answer so (another protocol version, a refusal) is
asked by ``ssh -O exit`` on its socket's path instead, all those processes at
once.
"""

from __future__ import annotations

import os
import selectors
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

MUX_MSG_HELLO = 0x00000001
MUX_C_TERMINATE = 0x10000005
MUX_S_OK = 0x80000001
MUX_VERSION = 4
# A packet from the master larger than this is not one we asked for.
_MAX_PACKET = 256 * 1024


class MuxError(Exception):
    """The master did not answer as the protocol says."""


def control_sockets(directory: Path) -> list[Path]:
    """The sockets in a run's private control directory: one per master connection."""
    found: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        try:
            if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                found.append(Path(entry.path))
        except OSError:
            continue  # gone meanwhile
    return found


def stop_masters(sockets: list[Path], timeout: float = 5.0) -> list[Path]:
    """Ask the master on each socket to exit, all at once; the sockets whose master may
    still run (neither way answered, each within ``timeout``)."""
    if not sockets:
        return []
    refused = terminate_all(sockets, time.monotonic() + timeout)
    return exit_by_ssh(refused, time.monotonic() + timeout) if refused else []


def terminate_all(sockets: list[Path], deadline: float) -> list[Path]:
    """MUX_C_TERMINATE on every socket at once, in this thread (no thread pool: this runs at
    interpreter exit, where concurrent.futures takes no more work); the sockets whose master
    did not close its end by ``deadline``, or refused, or does not speak the protocol."""
    failed: list[Path] = []
    with selectors.DefaultSelector() as selector:
        for path in sockets:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(path))
            except FileNotFoundError:
                sock.close()  # its master exited already (and removed it)
                continue
            except OSError:
                sock.close()
                failed.append(path)
                continue
            selector.register(sock, selectors.EVENT_READ, _Exchange(path, sock))
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                exchange: _Exchange = key.data
                sock = exchange.sock
                try:
                    done = exchange.on_readable()
                except (OSError, MuxError):
                    done, exchange.ok = True, False
                if done:
                    selector.unregister(sock)
                    sock.close()
                    if not exchange.ok:
                        failed.append(exchange.path)
        for key in list(selector.get_map().values()):
            key.data.sock.close()
            failed.append(key.data.path)
    return failed


class _Exchange:
    """One socket's side of the exchange: the master's hello, ours and the request, then
    end of file. The master usually exits before its MUX_S_OK gets out (OpenSSH's mux.c
    says so; its own client takes the end of file for a yes): end of file, or OK then it."""

    def __init__(self, path: Path, sock: socket.socket) -> None:
        self.path = path
        self.sock = sock
        self.received = b""
        self.asked = False
        self.ok = False

    def on_readable(self) -> bool:
        """Read what is there; True when this socket is done with (``ok`` says how)."""
        chunk = self.sock.recv(4096)
        if not chunk:
            self.ok = self.asked
            return True
        self.received += chunk
        packet = _packet_in(self.received)
        if packet is None:
            return False
        kind, body, self.received = packet
        if not self.asked:
            if kind != MUX_MSG_HELLO or len(body) < 4 or struct.unpack_from(">I", body)[0] != MUX_VERSION:
                raise MuxError(f"unexpected hello from the master (type {kind:#x})")
            request = _packet(MUX_MSG_HELLO, MUX_VERSION) + _packet(MUX_C_TERMINATE, 1)
            # 24 bytes into an empty socket buffer: all of it goes.
            if self.sock.send(request) != len(request):
                raise MuxError("the request did not fit the socket")
            self.asked = True
        elif kind != MUX_S_OK:
            raise MuxError(f"the master refused to exit (type {kind:#x})")
        return False


def exit_by_ssh(sockets: list[Path], deadline: float) -> list[Path]:
    """``ssh -O exit`` on each socket's path, every process started before any is waited for."""
    started = []
    for path in sockets:
        # -F none: no user configuration is needed to talk to a socket; %% is a literal % in ControlPath.
        argv = ["ssh", "-F", "none", "-o", "ControlPath=" + str(path).replace("%", "%%"), "-O", "exit", "--", "runbook-master"]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            continue
        started.append((path, proc))
    left = []
    for path, proc in started:
        try:
            proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            left.append(path)
    return left


def _packet(*words: int) -> bytes:
    body = struct.pack(f">{len(words)}I", *words)
    return struct.pack(">I", len(body)) + body


def _packet_in(data: bytes) -> tuple[int, bytes, bytes] | None:
    """The first whole packet of ``data`` (its type, its body, what follows), or None yet."""
    if len(data) < 4:
        return None
    (length,) = struct.unpack_from(">I", data)
    if not 4 <= length <= _MAX_PACKET:
        raise MuxError(f"a packet of {length} bytes from the master")
    if len(data) < 4 + length:
        return None
    return struct.unpack_from(">I", data, 4)[0], data[8 : 4 + length], data[4 + length :]
