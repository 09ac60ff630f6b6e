"""run_process and ProcessSupervisor against real subprocesses (POSIX only)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runbook.masking import Masker
from runbook.process import ProcessSupervisor, run_process


def _alive(pid: int) -> bool:
    """Whether pid is a running process; a zombie waiting for init to reap it is dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in (b"Z", b"X")


def _wait_for_file(path: Path, timeout: float = 5.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.01)
    raise AssertionError(f"{path} was never written")


def test_shell_string_runs_through_sh() -> None:
    """A str command is a shell script: pipes, redirections and && work."""
    result = run_process("echo one && echo two | tr a-z A-Z; echo err >&2")
    assert result.returncode == 0
    assert result.tail == ["one", "TWO", "err"]
    assert result.pid > 0
    assert not result.timed_out and not result.interrupted


def test_argv_runs_without_shell() -> None:
    """A list command is argv: spaces in an argument stay in that argument."""
    result = run_process(["printf", "<%s>\\n", "hello world", "x"])
    assert result.tail == ["<hello world>", "<x>"]


def test_argv_shell_metacharacters_are_literal(tmp_path: Path) -> None:
    """Substitutions, separators and backticks in argv reach the program unchanged."""
    hostile = ["$(touch sub)", "; touch semi", "`touch tick`", "&& touch and", "| touch pipe", "$HOME"]
    result = run_process(["printf", "%s\\n", *hostile], cwd=tmp_path)
    assert result.tail == hostile
    assert list(tmp_path.iterdir()) == []


def test_exit_codes_are_propagated() -> None:
    """The command's own exit status is returned, negative when a signal killed it."""
    assert run_process("exit 3").returncode == 3
    assert run_process(["false"]).returncode == 1
    assert run_process("kill -9 $$").returncode == -9


def test_output_streams_while_the_command_runs(tmp_path: Path) -> None:
    """on_line gets each line as it is printed, in order, not when the command ends: the command
    prints "first", then waits for a file that only the on_line callback for "first" creates."""
    go = tmp_path / "go"
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "first":
            go.touch()

    # Without streaming the command would wait for ever; its own 30 s limit makes that a failure.
    result = run_process(f"echo first; i=0; while [ ! -e {go} ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; test -e {go} && echo second", on_line=on_line)
    assert seen == ["first", "second"]
    assert result.returncode == 0


def test_partial_last_line_and_crlf() -> None:
    """A last line without newline is kept; CRLF endings lose their CR."""
    assert run_process("printf 'a\\r\\nb\\nlast'").tail == ["a", "b", "last"]


def test_non_utf8_output_is_replaced_and_split_characters_survive() -> None:
    """Invalid bytes become U+FFFD; a character split across two writes is decoded whole."""
    result = run_process("printf '\\377ok\\n\\303'; sleep 0.1; printf '\\251t\\351\\n'")
    assert result.tail == ["\ufffdok", "\u00e9t\ufffd"]


def test_tail_keeps_the_last_lines() -> None:
    """Only the last tail_lines lines are kept in the result."""
    assert run_process(["seq", "100"], tail_lines=3).tail == ["98", "99", "100"]


def test_stdin_is_dev_null() -> None:
    """A command reading stdin sees end of file instead of waiting for a terminal."""
    result = run_process(["cat"], timeout=5)
    assert result.returncode == 0 and result.tail == []


def test_env_is_the_whole_environment() -> None:
    """When env is given the child sees exactly that environment."""
    result = run_process(["/usr/bin/env"], env={"ONLY": "this"})
    assert result.tail == ["ONLY=this"]


def test_masking_reaches_on_line_and_tail(tmp_path: Path) -> None:
    """Secrets are masked before on_line (the engine's log and reporters) and the tail see a line."""
    masker = Masker(["hunter2-secret"])
    seen: list[str] = []
    result = run_process(
        ["printf", "%s\\n", "token=hunter2-secret", "url=postgresql://u:pw12@db/x"],
        mask=masker,
        on_line=seen.append,
    )
    expected = ["token=***", "url=postgresql://u:***@db/x"]
    assert seen == expected
    assert result.tail == expected


def test_command_not_found_returns_127_with_masked_reason(tmp_path: Path) -> None:
    """A missing program gives 127 and one masked line, also sent to on_line."""
    seen: list[str] = []
    result = run_process(
        ["no-such-program-topsecret"],
        mask=Masker(["topsecret"]),
        on_line=seen.append,
    )
    assert result.returncode == 127 and result.pid == 0
    assert len(result.tail) == 1 and "no-such-program-***" in result.tail[0]
    assert seen == result.tail


def test_missing_cwd_returns_127(tmp_path: Path) -> None:
    """A missing working directory gives 127 and names the directory."""
    result = run_process("true", cwd=tmp_path / "gone")
    assert result.returncode == 127
    assert result.tail == [
        f"runbook: cannot start the working directory {tmp_path / 'gone'}: No such file or directory"
    ]


def test_not_executable_returns_126(tmp_path: Path) -> None:
    """A program that exists but cannot be executed gives 126."""
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    assert run_process([str(script)]).returncode == 126


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """On timeout the shell and its background grandchild are both stopped."""
    pidfile = tmp_path / "grandchild.pid"
    result = run_process(f"sleep 100 & echo $! > {pidfile}; sleep 100", timeout=0.3, kill_grace=2)
    assert result.timed_out and result.returncode is None and not result.interrupted
    # Not before the timeout; and far short of the command's own 100 s (a hang guard, not a timing).
    assert 0.3 <= result.duration < 50
    assert not _alive(int(pidfile.read_text()))
    assert not _alive(result.pid)


def test_timeout_escalates_to_sigkill(tmp_path: Path) -> None:
    """A group ignoring SIGTERM is killed with SIGKILL after kill_grace."""
    pidfile = tmp_path / "grandchild.pid"
    result = run_process(
        f"trap '' TERM; sleep 100 & echo $! > {pidfile}; echo started; wait",
        timeout=0.3,
        kill_grace=0.4,
    )
    assert result.timed_out and result.tail == ["started"]
    # Not before timeout + grace; and far short of the command's own 100 s (a hang guard, not a timing).
    assert 0.7 <= result.duration < 50
    assert not _alive(int(pidfile.read_text()))


def test_background_leftovers_are_stopped_when_the_command_exits(tmp_path: Path) -> None:
    """The command's exit ends the step: leftovers in its group are stopped, not waited for."""
    pidfile = tmp_path / "grandchild.pid"
    result = run_process(f"sleep 100 & echo $! > {pidfile}; echo done", kill_grace=2)
    assert result.returncode == 0 and result.tail == ["done"]
    # The leftover's `sleep 100` was not waited for (a hang guard, not a timing).
    assert result.duration < 50
    assert not _alive(int(pidfile.read_text()))


SUPERVISED_SCRIPT = textwrap.dedent(
    """
    import sys
    from runbook.process import ProcessSupervisor, run_process

    command, grace = sys.argv[1], float(sys.argv[2])
    supervisor = ProcessSupervisor()
    supervisor.install()
    for _ in range(3):
        if supervisor.stop_requested:
            break
        result = run_process(command, supervisor=supervisor, kill_grace=grace)
        print(f"interrupted={result.interrupted} returncode={result.returncode}", flush=True)
    supervisor.uninstall()
    sys.exit(130 if supervisor.stop_requested else 0)
    """
)


def _start_supervised(tmp_path: Path, command: str, grace: float) -> subprocess.Popen[str]:
    script = tmp_path / "engine.py"
    script.write_text(SUPERVISED_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), command, str(grace)],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_supervisor_stops_the_step_and_the_run(tmp_path: Path, signum: int) -> None:
    """A signal to the engine stops the step's whole group; the engine exits 130 without running more steps."""
    pidfile = tmp_path / "grandchild.pid"
    engine = _start_supervised(tmp_path, f"sleep 100 & echo $! > {pidfile}; wait", grace=5)
    grandchild = int(_wait_for_file(pidfile))
    engine.send_signal(signum)
    out, _ = engine.communicate(timeout=5)
    assert engine.returncode == 130
    assert out.splitlines() == ["interrupted=True returncode=None"]
    assert not _alive(grandchild)


def test_second_signal_kills_without_waiting_for_grace(tmp_path: Path) -> None:
    """A step ignoring SIGTERM is killed by a second signal instead of after kill_grace."""
    pidfile = tmp_path / "grandchild.pid"
    engine = _start_supervised(tmp_path, f"trap '' TERM; sleep 100 & echo $! > {pidfile}; wait", grace=60)
    grandchild = int(_wait_for_file(pidfile))
    engine.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert _alive(grandchild)
    engine.send_signal(signal.SIGINT)
    out, _ = engine.communicate(timeout=5)
    assert engine.returncode == 130
    assert out.splitlines() == ["interrupted=True returncode=None"]
    assert not _alive(grandchild)


def test_repeated_sighup_does_not_escalate_to_sigkill(tmp_path: Path) -> None:
    """A hang-up often comes twice (kernel, then the login shell): the graceful stop goes on; another signal still kills."""
    pidfile = tmp_path / "grandchild.pid"
    engine = _start_supervised(tmp_path, f"trap '' TERM; sleep 100 & echo $! > {pidfile}; wait", grace=60)
    grandchild = int(_wait_for_file(pidfile))
    engine.send_signal(signal.SIGHUP)
    engine.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert _alive(grandchild)
    engine.send_signal(signal.SIGTERM)
    out, _ = engine.communicate(timeout=5)
    assert out.splitlines() == ["interrupted=True returncode=None"]
    assert not _alive(grandchild)


def test_signal_before_start_runs_nothing(tmp_path: Path) -> None:
    """Once a stop was requested run_process starts nothing and reports interrupted."""
    supervisor = ProcessSupervisor()
    previous = signal.getsignal(signal.SIGTERM)
    supervisor.install()
    try:
        signal.raise_signal(signal.SIGTERM)
        assert supervisor.stop_requested and supervisor.signal_received == signal.SIGTERM
        result = run_process(["touch", str(tmp_path / "ran")], supervisor=supervisor)
    finally:
        supervisor.uninstall()
    assert result.interrupted and result.pid == 0 and result.returncode is None
    assert not (tmp_path / "ran").exists()
    assert signal.getsignal(signal.SIGTERM) is previous
