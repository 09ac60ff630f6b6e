"""The confirmation prompt: answers read from a real pty, and interrupted by real signals."""

from __future__ import annotations

import io
import os
import pty
import signal
import threading
from collections.abc import Iterator

import pytest

from runbook.errors import ExitCode, Interrupted
from runbook.process import ProcessSupervisor
from runbook.prompt import make_prompt


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """(master, slave) of a real pseudo-terminal, in canonical mode as a login's is."""
    master, slave = pty.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(("typed", "answer"), [("y\n", True), ("YES\n", True), (" yes \n", True), ("n\n", False), ("\n", False), ("yess\n", False)])
def test_only_yes_is_yes(terminal: tuple[int, int], typed: str, answer: bool) -> None:
    """y or yes (any case, spaces around) is a yes; anything else is a no."""
    master, slave = terminal
    shown = io.StringIO()
    os.write(master, typed.encode())
    assert make_prompt(None, stdin=slave, stdout=shown)("Deploy?") is answer
    assert shown.getvalue() == "Deploy?\nProceed? [y/N] "


def test_reads_one_answer_per_question(terminal: tuple[int, int]) -> None:
    """Two lines typed ahead answer two questions, one each."""
    master, slave = terminal
    os.write(master, b"y\nn\n")
    ask = make_prompt(None, stdin=slave, stdout=io.StringIO())
    assert [ask("first?"), ask("second?")] == [True, False]


def test_end_of_input_is_a_no() -> None:
    """Ctrl-D (end of input) is not a yes."""
    read, write = os.pipe()
    os.close(write)
    try:
        assert make_prompt(None, stdin=read, stdout=io.StringIO())("Deploy?") is False
    finally:
        os.close(read)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT], ids=lambda s: signal.Signals(s).name)
def test_a_signal_while_waiting_raises_interrupted(terminal: tuple[int, int], supervisor: ProcessSupervisor, signum: int) -> None:
    """Nobody answers; a signal arrives: the prompt raises Interrupted (exit 128+N) instead of waiting on."""
    _, slave = terminal
    # From another thread, so that it arrives while the main thread waits in poll().
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signum))
    timer.start()
    try:
        with pytest.raises(Interrupted) as raised:
            make_prompt(supervisor, stdin=slave, stdout=io.StringIO())("Deploy?")
    finally:
        timer.cancel()
    assert raised.value.signum == signum
    assert raised.value.exit_code == ExitCode.for_signal(signum) == 128 + signum


def test_a_stop_requested_before_asking_asks_nothing(terminal: tuple[int, int], supervisor: ProcessSupervisor) -> None:
    """After a signal the question is not even shown."""
    _, slave = terminal
    signal.raise_signal(signal.SIGTERM)
    shown = io.StringIO()
    with pytest.raises(Interrupted):
        make_prompt(supervisor, stdin=slave, stdout=shown)("Deploy?")
    assert shown.getvalue() == ""
