"""What reaches a remote shell: the wrapper and the script, with bash and dash as the oracle.

No ssh here: the wrapper command is given to a local shell exactly as sshd would
give it to the login shell (``$SHELL -c COMMAND``), with the payload on stdin.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.errors import RunbookError
from runbook.fleet.remote import WRAPPER_COMMAND, script, stdin_payload

HOSTILE = ["it's", '"$(touch /tmp/pwned)"', "`id`", "$HOME", "a\nb", "; rm -rf /", "\\", "*", "é ü", "--", "-n"]
SHELLS = [s for s in ("bash", "dash") if shutil.which(s)]


def _remote(shell: str, text: str) -> subprocess.CompletedProcess[bytes]:
    """Run as sshd would; stdin stays open until the command ends (its closing means "stop")."""
    proc = subprocess.Popen([shell, "-c", WRAPPER_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(stdin_payload(text))
    proc.stdin.flush()
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.wait(timeout=20)
    proc.stdin.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_closing_stdin_stops_the_script_and_its_children(tmp_path) -> None:
    marker = tmp_path / "pid"
    proc = subprocess.Popen(["bash", "-c", WRAPPER_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stdin_payload(script(f"sleep 300 & echo $! > {marker}; echo started; wait")))
    proc.stdin.flush()
    assert proc.stdout.readline() == b"started\n"
    sleeper = int(marker.read_text())
    proc.stdin.close()
    assert proc.wait(timeout=20) == 143
    import os
    from runbook.process import group_alive

    assert not os.path.exists(f"/proc/{sleeper}") or not group_alive(sleeper)


@pytest.mark.parametrize("shell", SHELLS)
def test_env_values_and_argv_words_arrive_literally(shell: str) -> None:
    env = {f"V{i}": value for i, value in enumerate(HOSTILE)}
    text = script("printf '%s\\0' " + " ".join(f'"$V{i}"' for i in range(len(HOSTILE))), env=env)
    result = _remote(shell, text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(b"\0")[:-1] == [v.encode() for v in HOSTILE]
    argv = _remote(shell, script(["printf", "%s\\0", *HOSTILE]))
    assert argv.stdout.split(b"\0")[:-1] == [v.encode() for v in HOSTILE]


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40))
def test_any_env_value_arrives_as_itself(value: str) -> None:
    result = _remote("bash", script('printf %s "$X"', env={"X": value}))
    assert result.stdout.decode() == value


def test_exit_status_and_cwd_come_through(tmp_path) -> None:
    result = _remote("bash", script("pwd; exit 7", cwd=str(tmp_path)))
    assert result.returncode == 7
    assert result.stdout.decode().strip() == str(tmp_path)


def test_the_command_line_is_the_same_for_every_script() -> None:
    # Secrets travel on stdin: nothing of a step is on the remote command line.
    assert "hunter2" not in WRAPPER_COMMAND and "\n" not in WRAPPER_COMMAND
    assert stdin_payload(script("echo hunter2")).count(b"\n") == 1


def test_a_variable_name_that_is_not_one_is_refused() -> None:
    with pytest.raises(RunbookError, match="not a variable name"):
        script("true", env={"A;B": "x"})


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=60))
def test_any_script_text_arrives_as_itself(shell: str, value: str) -> None:
    """Newlines, backslashes (``\\n``, ``\\c``, ``\\0``), ``%``, tabs and trailing blanks: the
    one-line encoding and ``printf %b`` give the script back byte for byte."""
    result = _remote(shell, script(f"printf '%s|' {shlex.quote(value)}\nprintf '%s' {shlex.quote(value)}"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"{value}|{value}"


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_s_commands_inherit_neither_the_session_nor_the_pipe(shell: str) -> None:
    result = _remote(shell, script("readlink /proc/self/fd/3 /proc/self/fd/4; echo done"))
    assert result.stdout == b"done\n"


def test_a_nul_character_is_refused() -> None:
    with pytest.raises(RunbookError, match="NUL"):
        stdin_payload(script("echo", env={"X": "a\0b"}))
