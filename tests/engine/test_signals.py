"""Signals that end the runbook process, delivered as an operator's terminal delivers them.

The runbook runs on a real pseudo-terminal that is its controlling terminal (as
in an SSH session): Ctrl-C and Ctrl-\\ are typed into it, SIGHUP comes from
closing it (the disconnect), SIGTERM from kill. Whatever the signal and wherever
it arrives (a confirmation prompt, a step's command, a `check: command` gate),
the process exits 128+N, nothing of the step outlives it, the state store says
`interrupted`, and `--resume` finishes the run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from runbook.process import group_alive
from tests.engine.conftest import Project
from tests.experience.conftest import Terminal, plain

# Each test starts two or three `runbook` processes: 2-6 s on a loaded machine.
pytestmark = pytest.mark.slow

# Generous: the requirement is well under a second; this only keeps a hang from hanging the suite.
EXIT_TIMEOUT = 10

CONFIRM = """
name: sig
steps:
  - id: first
    kind: command
    run: echo ran >> counters/first
    irreversible: true
  - id: deploy
    kind: command
    run: echo ran >> counters/deploy
    irreversible: true
    confirm: Deploy version 2?
"""

# `$$` of the step's shell is its process group (the command leads its own session).
# Once the file `fast` exists the command no longer waits, so the resume is quick.
SLOW_STEP = """
name: sig
steps:
  - id: first
    kind: command
    run: echo ran >> counters/first
    irreversible: true
  - id: slow
    kind: command
    run: "echo $$ > slow.pgid; test -e fast || { touch slow.running; sleep 30; }; echo ran >> counters/slow"
    irreversible: true
"""

SLOW_GATE = """
name: sig
steps:
  - id: first
    kind: command
    run: echo ran >> counters/first
    irreversible: true
  - id: gated
    kind: command
    run: echo ran >> counters/gated
    irreversible: true
    gates:
      - check: command
        run: "echo $$ > gate.pgid; test -e fast || { touch gate.running; sleep 30; }"
"""


class SignalTerminal(Terminal):
    """A `runbook` whose controlling terminal is a pty we hold the master side of."""

    closed = False

    @classmethod
    def start(cls, project: Project, *args: str) -> SignalTerminal:
        term = cls.spawn([sys.executable, "-m", "runbook", *args], cwd=project.root, env=project.env(), controlling=True)
        assert isinstance(term, SignalTerminal)
        return term

    def wait_for_file(self, path: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{path} never appeared; output:\n{plain(self.text)[-3000:]}")
            self._read(0.02)

    def deliver(self, signum: int) -> None:
        """As the operator's side does: keys typed, the connection dropped, or kill."""
        if signum == signal.SIGINT:
            self.send("\x03")
        elif signum == signal.SIGQUIT:
            self.send("\x1c")
        elif signum == signal.SIGHUP:
            os.close(self.master)
            self.closed = True
        else:
            self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """The exit status, reading the terminal meanwhile so that the process never blocks writing to it."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"still running after {timeout}s; output:\n{plain(self.text)[-3000:]}")
            if self.closed or not self._read(0.02):
                time.sleep(0.02)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.closed:
            os.close(self.master)
            self.closed = True


def _run_statuses(project: Project) -> list[str]:
    with sqlite3.connect(project.root / ".runbook" / "state.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM runs ORDER BY started_at")]


def _attempts(project: Project, step_id: str) -> list[str]:
    with sqlite3.connect(project.root / ".runbook" / "state.db") as db:
        return [row[0] for row in db.execute("SELECT status FROM step_attempts WHERE step_id = ? ORDER BY attempt", (step_id,))]


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
SIGNAL_IDS = [signal.Signals(s).name for s in SIGNALS]


def _signal_while_running_then_resume(project: Project, runbook: str, marker: str, signum: int, *, step: str | None = None) -> None:
    """Run ``runbook`` on a terminal, deliver ``signum`` once ``MARKER.running`` shows the
    command is up: the run exits 128+N with the command's group stopped and the step
    interrupted; ``--resume`` (with ``fast`` in place) then passes."""
    project.write("sig.yaml", runbook)
    terminal = SignalTerminal.start(project, "run", "sig.yaml")
    try:
        terminal.wait_for_file(project.root / f"{marker}.running")
        pgid = int((project.root / f"{marker}.pgid").read_text())
        terminal.deliver(signum)
        assert terminal.wait_exit() == 128 + signum, plain(terminal.text)
    finally:
        terminal.close()
    assert not group_alive(pgid)
    assert _run_statuses(project) == ["interrupted"]
    assert _attempts(project, step or marker) == ["interrupted"]
    (project.root / "fast").touch()
    resumed = project.runbook("run", "sig.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _run_statuses(project) == ["passed"]


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_signal_at_a_confirmation_prompt_interrupts_the_run(sqlite_project: Project, signum: int) -> None:
    """At the prompt, one signal ends the process (128+N), the run is recorded interrupted, --resume finishes it."""
    sqlite_project.write("sig.yaml", CONFIRM)
    terminal = SignalTerminal.start(sqlite_project, "run", "sig.yaml")
    try:
        terminal.expect("Proceed? [y/N]")
        terminal.deliver(signum)
        assert terminal.wait_exit() == 128 + signum, plain(terminal.text)
    finally:
        terminal.close()
    assert _run_statuses(sqlite_project) == ["interrupted"]
    assert sqlite_project.count("deploy") == 0
    resumed = sqlite_project.runbook("run", "sig.yaml", "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [sqlite_project.count("first"), sqlite_project.count("deploy")] == [1, 1]
    assert _run_statuses(sqlite_project) == ["passed"]


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_signal_during_a_step_stops_its_process_group(sqlite_project: Project, signum: int) -> None:
    """During a step's command: the group is stopped, the attempt and the run are interrupted, --resume re-runs it."""
    _signal_while_running_then_resume(sqlite_project, SLOW_STEP, "slow", signum)
    assert [sqlite_project.count("first"), sqlite_project.count("slow")] == [1, 1]


def test_sighup_without_a_terminal_stops_the_step(sqlite_project: Project) -> None:
    """`kill -HUP` of a runbook whose output goes to pipes (no terminal) is handled like SIGTERM."""
    sqlite_project.write("sig.yaml", SLOW_STEP)
    proc = sqlite_project.spawn("run", "sig.yaml")
    try:
        deadline = time.monotonic() + 30
        while not (sqlite_project.root / "slow.running").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the step never started"
            time.sleep(0.02)
        pgid = int((sqlite_project.root / "slow.pgid").read_text())
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGHUP, out + err
    assert "interrupted" in out
    assert not group_alive(pgid)
    assert _run_statuses(sqlite_project) == ["interrupted"]


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_signal_during_a_command_gate_stops_the_check(sqlite_project: Project, signum: int) -> None:
    """During a long `check: command` gate: the check's group is stopped at once, the run is interrupted (not failed)."""
    _signal_while_running_then_resume(sqlite_project, SLOW_GATE, "gate", signum, step="gated")
    assert [sqlite_project.count("first"), sqlite_project.count("gated")] == [1, 2]


def test_resume_stops_the_gate_check_left_running_by_a_killed_run(sqlite_project: Project) -> None:
    """SIGKILL of the runbook during a gate check: --resume stops the check's leftover group before re-running the step."""
    sqlite_project.write("sig.yaml", SLOW_GATE)
    proc = sqlite_project.spawn("run", "sig.yaml")
    pgid = None
    try:
        deadline = time.monotonic() + 30
        while not (sqlite_project.root / "gate.running").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the gate never started"
            time.sleep(0.02)
        pgid = int((sqlite_project.root / "gate.pgid").read_text())
        proc.kill()
        proc.communicate(timeout=EXIT_TIMEOUT)
        assert group_alive(pgid), "the check should outlive a SIGKILLed runbook"
        (sqlite_project.root / "fast").touch()
        resumed = sqlite_project.runbook("run", "sig.yaml", "--resume")
        leftover_alive = group_alive(pgid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if pgid is not None and group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not leftover_alive
    assert "stopped process group" in resumed.stdout


SLOW_ROLLBACK = """
name: sig
steps:
  - id: deploy
    kind: command
    run: echo ran >> counters/deploy
    rollback:
      kind: command
      run: "echo $$ > undo.pgid; test -e fast || { touch undo.running; sleep 30; }; echo ran >> counters/undo"
"""


def _run_ids(project: Project) -> list[str]:
    with sqlite3.connect(project.root / ".runbook" / "state.db") as db:
        return [row[0] for row in db.execute("SELECT run_id FROM runs ORDER BY started_at")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_signal_during_a_rollback_stops_its_command(sqlite_project: Project, signum: int) -> None:
    """`runbook rollback` runs through the same session and step runner: the same stop, code and record."""
    sqlite_project.write("sig.yaml", SLOW_ROLLBACK)
    ran = sqlite_project.runbook("run", "sig.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [parent] = _run_ids(sqlite_project)
    terminal = SignalTerminal.start(sqlite_project, "rollback", parent, "--yes")
    try:
        terminal.wait_for_file(sqlite_project.root / "undo.running")
        pgid = int((sqlite_project.root / "undo.pgid").read_text())
        terminal.deliver(signum)
        assert terminal.wait_exit() == 128 + signum, plain(terminal.text)
    finally:
        terminal.close()
    assert not group_alive(pgid)
    assert _run_statuses(sqlite_project) == ["passed", "interrupted"]
    (sqlite_project.root / "fast").touch()
    again = sqlite_project.runbook("rollback", parent, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sqlite_project.count("undo") == 1
    assert _run_statuses(sqlite_project)[-1] == "rolled_back"


SLOW_PRECONDITION = """
name: sig
steps:
  - id: guarded
    kind: command
    run: echo ran >> counters/guarded
    irreversible: true
    preconditions:
      - check: command
        run: "echo $$ > pre.pgid; test -e fast || { touch pre.running; sleep 30; }"
"""


def test_signal_during_a_precondition_interrupts_instead_of_refusing(sqlite_project: Project) -> None:
    """A precondition's command stopped by the signal is no failed precondition: the run is interrupted, not refused."""
    sqlite_project.write("sig.yaml", SLOW_PRECONDITION)
    terminal = SignalTerminal.start(sqlite_project, "run", "sig.yaml")
    try:
        terminal.wait_for_file(sqlite_project.root / "pre.running")
        pgid = int((sqlite_project.root / "pre.pgid").read_text())
        terminal.deliver(signal.SIGTERM)
        assert terminal.wait_exit() == 128 + signal.SIGTERM, plain(terminal.text)
    finally:
        terminal.close()
    assert not group_alive(pgid)
    assert _run_statuses(sqlite_project) == ["interrupted"]
    assert _attempts(sqlite_project, "guarded") == []
    (sqlite_project.root / "fast").touch()
    resumed = sqlite_project.runbook("run", "sig.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sqlite_project.count("guarded") == 1
