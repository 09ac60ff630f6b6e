"""Run one step's command as a real subprocess and stop it reliably.

The child leads its own session and process group, so a timeout or an
operator's Ctrl-C reaches everything it started (grandchildren included) and
the terminal's SIGINT never reaches it directly: the runbook decides how it
stops. Output (stdout and stderr merged) is read as it arrives, with no
thread per call: one ``poll`` loop watches the output pipe, a pidfd for the
child's exit and the supervisor's wake-up pipe.

A step is over when its command exits: anything it left running in its
process group (``cmd &``) is stopped then, like a timed-out command, so no
stray process outlives its step or holds the output pipe open. Processes that
leave the group on purpose (``setsid``, daemons) are not tracked.

Only the standard library is imported: the CLI imports this module on every
invocation.
"""

from __future__ import annotations

import math
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType

_READ_SIZE = 65536
# Used only where pidfds are unavailable (non-Linux, kernels before 5.3):
# the child's exit is then polled for, quickly right after output (its end
# usually comes with the exit), backing off while the pipe stays quiet.
_FIRST_NAP = 0.001
_MAX_NAP = 0.05
# How often to look for group members still alive once the leader is gone;
# they are not our children, so nothing can wake us when they exit.
_GROUP_POLL = 0.02
# A SIGKILLed process is gone within microseconds unless stuck in the kernel
# (uninterruptible I/O); waiting longer than this would hang the run on it.
_KILL_SETTLE = 1.0
# How long a stopped group gets between SIGTERM and SIGKILL.
DEFAULT_KILL_GRACE = 5.0
# Data still buffered once the group is gone is at most a pipe's capacity;
# more can only come from a process that left the group and kept the pipe.
_MAX_DRAIN = 1 << 20
_CANNOT_RUN = 126
_NOT_FOUND = 127


@dataclass(frozen=True)
class ProcessResult:
    """How a command ended.

    ``returncode`` is the command's exit status, negative when a signal not
    sent by us killed it (``-9``), and ``None`` when we stopped it (timeout or
    interruption). ``tail`` holds the last output lines, already masked;
    ``duration`` is in seconds; ``pid`` is 0 when no process was started.
    """

    returncode: int | None
    timed_out: bool
    interrupted: bool
    tail: list[str]
    duration: float
    pid: int


def _unmasked(text: str) -> str:
    return text


class _Group:
    """The process group led by a child started with ``start_new_session``."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self._terminating = False

    def terminate(self) -> None:
        # Idempotent: many tools (terraform, docker compose) take a second
        # SIGTERM as "skip the graceful shutdown", so a timeout racing an
        # operator's signal must not send two.
        if self._terminating:
            return
        self._terminating = True
        _signal_group(self.pgid, signal.SIGTERM)

    def kill(self) -> None:
        _signal_group(self.pgid, signal.SIGKILL)

    def alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            # A member runs as another user (setuid): it exists.
            return True
        return group_alive(self.pgid)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        # Already gone, or only members we may not signal are left: nothing
        # more can be done, and this also runs inside a signal handler.
        pass


def group_alive(pgid: int) -> bool:
    """Whether a process of the group is alive, not merely a zombie (public: tests and
    the engine's leftover check ask the same question).

    Orphaned members stay zombies until init reaps them, which some inits do
    only every second or two, and ``kill(0)`` succeeds on zombies. Only
    Linux's /proc tells them apart; elsewhere any member counts as alive.
    """
    try:
        entries = os.scandir("/proc")
    except FileNotFoundError:
        return True
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                    stat = stat_file.read()
            except OSError:
                continue
            # The command name may contain spaces and ")", so fields are
            # counted from the last ")": state, ppid, pgrp.
            fields = stat[stat.rindex(b")") + 2 :].split(maxsplit=3)
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
    return False


# Every signal that would end the process: each stops the step's process group
# and ends the run as interrupted instead. (SIGHUP: the terminal went away, e.g.
# an SSH disconnect; SIGQUIT: Ctrl-\ at the terminal.)
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class ProcessSupervisor:
    """Tracks the running child process group so that a signal to the runbook process stops it.

    ``install()`` (main thread only) replaces the handlers of ``HANDLED_SIGNALS``.
    On the first signal the handler sets ``stop_requested`` and
    ``signal_received``, writes to ``wake_fd`` and sends SIGTERM to the
    current child's process group; ``run_process`` then sends SIGKILL after
    its ``kill_grace`` and returns ``interrupted=True``. A second signal sends
    SIGKILL at once, for the operator who will not wait. Between steps the
    handler only records the request: the caller checks ``stop_requested``
    and exits (128 + the signal's number, ``ExitCode.for_signal``). Code that
    waits for something else (an operator's answer) waits on ``wake_fd`` too.

    Several ``run_process`` calls may use one supervisor at once, from threads
    (a step on many hosts): a signal stops every attached group.
    """

    def __init__(self) -> None:
        self.stop_requested = False
        self.signal_received: int | None = None
        # Replaced, never mutated: the signal handler reads it while threads attach and detach.
        self._groups: tuple[_Group, ...] = ()
        self._groups_lock = threading.Lock()
        self._previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
        self._wake_read: int | None = None
        self._wake_write: int | None = None
        self._terminal_fds: list[int] = []

    @property
    def wake_fd(self) -> int | None:
        """Readable once a stop was requested; None unless installed."""
        return self._wake_read

    def install(self) -> None:
        """Handle ``HANDLED_SIGNALS``; must be called from the main thread."""
        if self._previous:
            raise RuntimeError("ProcessSupervisor is already installed")
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._terminal_fds = [fd for fd in (0, 1, 2) if os.isatty(fd)]
        for signum in HANDLED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        """Restore the handlers that were in place before ``install()``."""
        for signum, previous in self._previous.items():
            # None means a handler set outside Python; the default is the
            # closest thing we can restore.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        for fd in (self._wake_read, self._wake_write):
            if fd is not None:
                os.close(fd)
        self._wake_read = self._wake_write = None

    def interrupt_from_thread(self) -> None:
        """Stop as Ctrl-C does, asked from another thread (``runbook cancel``, read from the
        store by the heartbeat): SIGINT to the main thread, whose handler is the one path
        that stops the step's process group; a system call it waits in returns at once."""
        if self._previous:
            main = threading.main_thread().ident
            if main is not None:
                signal.pthread_kill(main, signal.SIGINT)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A hang-up is never the operator's impatience, and often comes twice (the
        # kernel, then the login shell passing it on to its jobs): it must not
        # turn the group's graceful stop into SIGKILL.
        repeated = self.stop_requested and signum != signal.SIGHUP
        self.stop_requested = True
        if self.signal_received is None:
            self.signal_received = signum
        if signum == signal.SIGHUP:
            self._forget_hung_up_terminal()
        for group in self._groups:
            if repeated:
                group.kill()
            else:
                group.terminate()
        if self._wake_write is not None:
            try:
                os.write(self._wake_write, b"\0")
            except BlockingIOError:
                # Full pipe: a wake-up is already pending.
                pass

    def _forget_hung_up_terminal(self) -> None:
        """Point stdin/stdout/stderr that were a terminal now hung up at /dev/null.

        Every write to a hung-up terminal fails (EIO), which would turn the
        orderly end of the run (attempt and run recorded ``interrupted``) into
        a crash. A terminal still answering (``kill -HUP`` with the session
        alive) keeps the output; the kernel marks a terminal hung up before it
        sends SIGHUP, so the check below sees it.
        """
        gone = [fd for fd in self._terminal_fds if not os.isatty(fd)]
        if not gone:
            return
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in gone:
                os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        self._terminal_fds = [fd for fd in self._terminal_fds if fd not in gone]

    def _attach(self, group: _Group) -> int | None:
        with self._groups_lock:
            self._groups = (*self._groups, group)
        return self._wake_read

    def _detach(self, group: _Group) -> None:
        with self._groups_lock:
            self._groups = tuple(g for g in self._groups if g is not group)


class _Output:
    """Splits the merged output into lines: mask, then on_line and the tail."""

    def __init__(
        self,
        mask: Callable[[str], str],
        on_line: Callable[[str], None] | None,
        tail_lines: int,
    ) -> None:
        self._mask = mask
        self._on_line = on_line
        self.tail: deque[str] = deque(maxlen=tail_lines)
        # Lines are never cut at a chunk boundary, however long: a secret cut
        # in two would escape masking.
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        end = data.rfind(b"\n")
        if end < 0:
            self._partial += data
            return
        complete = bytes(self._partial) + data[:end] if self._partial else data[:end]
        self._partial = bytearray(data[end + 1 :])
        # Splitting bytes before decoding keeps multi-byte characters whole:
        # no UTF-8 sequence contains the byte 0x0A.
        self._emit(complete.split(b"\n"))

    def close(self) -> None:
        if self._partial:
            self._emit([bytes(self._partial)])
            self._partial.clear()

    def message(self, text: str) -> None:
        """Add a line of our own, e.g. why the command could not start."""
        self._emit([text.encode()])

    def _emit(self, raw_lines: list[bytes]) -> None:
        # One mask call per read, not per line: masking costs a few C-level scans
        # per call, and a line of a few bytes would make the call overhead dominate.
        # The mask never adds a line break (it may remove one inside a secret).
        text = self._mask(b"\n".join(raw_lines).decode("utf-8", errors="replace"))
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        if self._on_line is not None:
            for line in lines:
                self._on_line(line)
        self.tail.extend(lines)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        # No pidfd support (non-Linux, old kernel, seccomp): poll instead.
        return None


class _Watch:
    """Waits on the output pipe, the leader's exit and the supervisor's wake-up at once."""

    def __init__(self, proc: subprocess.Popen[bytes], output: _Output, wake_fd: int | None) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self._output = output
        self._pipe = proc.stdout.fileno()
        self._wake_fd = wake_fd
        self._pidfd = _open_pidfd(proc.pid)
        self._poller = select.poll()
        self._poller.register(self._pipe, select.POLLIN)
        if self._pidfd is not None:
            self._poller.register(self._pidfd, select.POLLIN)
        if wake_fd is not None:
            self._poller.register(wake_fd, select.POLLIN)
        self._eof = False
        self._nap = _FIRST_NAP

    def wait(self, timeout: float | None) -> None:
        """Block up to ``timeout`` seconds (None: no limit) and handle whatever arrived."""
        if self._pidfd is None and self.proc.returncode is None:
            timeout = self._nap if timeout is None else min(timeout, self._nap)
            self._nap = min(self._nap * 2, _MAX_NAP)
        millis = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
        for fd, _ in self._poller.poll(millis):
            if fd == self._pipe:
                self._read()
            elif fd == self._pidfd:
                # Readable for good once the leader exited; proc.poll() reaps it.
                self._poller.unregister(fd)
            elif fd == self._wake_fd:
                _drain_wake(fd)
        self.proc.poll()

    def drain(self) -> None:
        """Read what is already buffered, without waiting for writers."""
        pipe_only = select.poll()
        pipe_only.register(self._pipe, select.POLLIN)
        budget = _MAX_DRAIN
        while not self._eof and budget > 0 and pipe_only.poll(0):
            budget -= self._read()

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)

    def _read(self) -> int:
        self._nap = _FIRST_NAP
        data = os.read(self._pipe, _READ_SIZE)
        if data:
            self._output.feed(data)
        else:
            self._eof = True
            self._poller.unregister(self._pipe)
        return len(data)


def _drain_wake(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _stop(group: _Group, watch: _Watch, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, return once all of it is gone."""
    group.terminate()
    end = time.monotonic() + grace
    while watch.proc.returncode is None or group.alive():
        remaining = end - time.monotonic()
        if remaining <= 0:
            group.kill()
            watch.proc.wait()
            _settle(group)
            return
        if watch.proc.returncode is not None:
            remaining = min(remaining, _GROUP_POLL)
        watch.wait(remaining)


def _settle(group: _Group) -> None:
    end = time.monotonic() + _KILL_SETTLE
    while group.alive() and time.monotonic() < end:
        time.sleep(_GROUP_POLL)


def run_process(
    command: str | list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
    mask: Callable[[str], str] = _unmasked,
    tail_lines: int = 40,
    supervisor: ProcessSupervisor | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    on_start: Callable[[int], None] | None = None,
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run ``command`` to completion, streaming its output line by line.

    A ``str`` runs through ``/bin/sh -c``; a list runs as argv with no shell,
    so nothing in it is ever interpreted. ``env``, when given, is the child's
    whole environment. stdin is /dev/null, or with ``stdin`` a pipe that
    receives those bytes and then stays open until the command has ended (an
    ssh session's remote end takes its closing as "stop"); stdout and stderr
    are merged.

    Each output line (newline removed, undecodable bytes replaced) is passed
    through ``mask``, then to ``on_line`` (the engine's step log, through
    ``runbook.safefile``, and its reporters) and kept in the last
    ``tail_lines`` of the result.

    When ``timeout`` seconds pass, or the ``supervisor`` sees a signal,
    the command's whole process group gets SIGTERM, then SIGKILL after
    ``kill_grace`` seconds. Processes the command leaves behind in its group
    when it exits get the same treatment. If the supervisor had already seen
    a signal, nothing is started and the result says ``interrupted``.

    A command that cannot be started does not raise: the result has
    returncode 127 when the program or ``cwd`` does not exist, 126 when it
    cannot be executed (the shell's conventions), and the reason as its one
    masked output line (also given to ``on_line``). If ``on_line`` or ``mask``
    raises, or KeyboardInterrupt arrives without a supervisor, the group is
    killed at once and the exception propagates. An empty command is a
    ValueError.
    """
    if not command:
        raise ValueError("empty command")
    started = time.monotonic()
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
    output = _Output(mask, on_line, tail_lines)
    if supervisor is not None and supervisor.stop_requested:
        return ProcessResult(None, False, True, [], time.monotonic() - started, 0)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if on_start is not None:
            # The child leads its own session: its pid is the process group to stop later.
            on_start(proc.pid)
    except OSError as err:
        code = _NOT_FOUND if isinstance(err, (FileNotFoundError, NotADirectoryError)) else _CANNOT_RUN
        # Popen names the cwd (as given, maybe a Path) when chdir failed.
        what = "working directory" if cwd is not None and err.filename == cwd else "command"
        output.message(f"runbook: cannot start the {what} {err.filename}: {err.strerror}")
        return ProcessResult(code, False, False, list(output.tail), time.monotonic() - started, 0)
    if stdin is not None:
        _feed(proc, stdin)
    try:
        return _supervise(proc, output, timeout, supervisor, kill_grace, started)
    finally:
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    """Write ``data`` to the child's stdin (small: a script) and keep the pipe open."""
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
    except BrokenPipeError:
        # The child exited (or closed stdin) at once; its exit status says why.
        pass


def _supervise(
    proc: subprocess.Popen[bytes],
    output: _Output,
    timeout: float | None,
    supervisor: ProcessSupervisor | None,
    kill_grace: float,
    started: float,
) -> ProcessResult:
    group = _Group(proc.pid)
    wake_fd = supervisor._attach(group) if supervisor is not None else None
    watch = _Watch(proc, output, wake_fd)
    deadline = None if timeout is None else started + timeout
    timed_out = interrupted = finished = False
    try:
        while True:
            # A signal that arrived while the child was being started only
            # set the flag (no group was attached yet): this check catches it.
            if supervisor is not None and supervisor.stop_requested:
                interrupted = True
                break
            if proc.returncode is not None:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                timed_out = True
                break
            watch.wait(remaining)
        if interrupted or timed_out or group.alive():
            _stop(group, watch, kill_grace)
        watch.drain()
        output.close()
        finished = True
    finally:
        if not finished:
            group.kill()
            proc.wait()
        if supervisor is not None:
            supervisor._detach(group)
        watch.close()
        assert proc.stdout is not None
        proc.stdout.close()
    returncode = None if interrupted or timed_out else proc.returncode
    return ProcessResult(
        returncode, timed_out, interrupted, list(output.tail), time.monotonic() - started, proc.pid
    )


def stop_group(pgid: int, grace: float = DEFAULT_KILL_GRACE) -> bool:
    """SIGTERM a process group, then SIGKILL what is left after ``grace``.
    Returns whether any member was alive to stop."""
    if not group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    return True


def longest_run(timeout: float, kill_grace: float = DEFAULT_KILL_GRACE) -> float:
    """Seconds after its start by which ``run_process`` has stopped a command with this
    ``timeout``, its whole group included (while the runbook process lives to do it)."""
    return timeout + kill_grace + _KILL_SETTLE
