"""Closed standard streams: every verb run by bash with ``<&-``, ``>&-`` or ``2>&-``.

The oracle is the same command with the stream redirected to /dev/null instead:
a closed stdin or stderr must end exactly as that does (stdin closed is "no
terminal to ask"); a closed stdout is a usage error (exit 2) that touches
nothing. Never "internal error" (it was: ``'NoneType' object has no attribute 'isatty'``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.conftest import _clean_env

RUNBOOK = """\
name: x
steps:
  - id: a
    title: A
    kind: command
    run: echo hi
    irreversible: true
  - id: b
    title: B
    kind: command
    run: echo there
    confirm: Go?
    irreversible: true
"""

VERBS: dict[str, list[str]] = {
    "help": ["--help"],
    "version": ["--version"],
    "validate": ["validate", "x.yaml"],
    "plan": ["plan", "x.yaml"],
    "schema": ["schema"],
    "steps": ["steps"],
    "init": ["init", "other"],
    "import": ["import", "checklist.md"],
    "run": ["run", "x.yaml"],
    "run-resume": ["run", "x.yaml", "--resume"],
    "approve": ["approve", "RUN", "b"],
    "rollback": ["rollback", "RUN"],
    "unlock": ["unlock", "x.yaml", "--force"],
    "status": ["status"],
    "history": ["history"],
    "show": ["show", "RUN", "--events"],
    "report": ["report", "RUN", "--format", "json"],
    "report-file": ["report", "RUN", "-o", "report.md"],
}


def _bash(root: Path, redirect: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python -m runbook ARGS REDIRECT`` as bash runs it (``exec`` keeps the redirection on the process itself)."""
    return subprocess.run(
        ["bash", "-c", f'exec "$@" {redirect}', "bash", sys.executable, "-m", "runbook", *args],
        cwd=root,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A project with a run paused at its confirmation (exit 4); returns (root, run id)."""
    root = tmp_path_factory.mktemp("closed-streams")
    (root / "x.yaml").write_text(RUNBOOK)
    (root / "checklist.md").write_text("# Release\n\n1. Run `ls -l /tmp`\n2. Tell #ops it is done\n")
    paused = _bash(root, "", ["run", "x.yaml"])
    assert paused.returncode == 4, paused.stdout + paused.stderr
    run_id = next(line.split()[2] for line in paused.stdout.splitlines() if line.startswith("▶ run "))
    return root, run_id


@pytest.fixture(scope="module")
def oracles(template: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each verb with stdin from and stderr to /dev/null, each on its own copy of the project (computed once)."""
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for verb in VERBS:
        root, run_id = _copy(template, tmp_path_factory.mktemp("oracle") / verb)
        results[verb] = _bash(root, "</dev/null 2>/dev/null", _args(verb, run_id))
    return results


def _copy(template: tuple[Path, str], dest: Path) -> tuple[Path, str]:
    root, run_id = template
    shutil.copytree(root, dest)
    return dest, run_id


def _args(verb: str, run_id: str) -> list[str]:
    return [run_id if a == "RUN" else a for a in VERBS[verb]]


def _no_crash(result: subprocess.CompletedProcess[str]) -> None:
    text = result.stdout + result.stderr
    assert "internal error" not in text and "Traceback" not in text, text


@pytest.mark.slow
@pytest.mark.parametrize("verb", VERBS)
def test_closed_stdin_is_no_terminal(verb: str, template: tuple[Path, str], oracles: dict[str, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """With stdin closed, each verb ends as it does with stdin from /dev/null."""
    case_root, run_id = _copy(template, tmp_path / "case")
    oracle = oracles[verb]
    closed = _bash(case_root, "<&-", _args(verb, run_id))
    _no_crash(closed)
    assert closed.returncode == oracle.returncode, (closed.stdout + closed.stderr, oracle.stdout)
    assert bool(closed.stdout) == bool(oracle.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("verb", VERBS)
def test_closed_stderr_runs_as_with_stderr_discarded(
    verb: str, template: tuple[Path, str], oracles: dict[str, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """With stderr closed, each verb ends as with ``2>/dev/null``: same exit code, same kind of stdout."""
    case_root, run_id = _copy(template, tmp_path / "case")
    oracle = oracles[verb]
    closed = _bash(case_root, "2>&-", _args(verb, run_id))
    _no_crash(closed)
    assert closed.returncode == oracle.returncode, (closed.stdout, oracle.stdout)
    assert len(closed.stdout.splitlines()) == len(oracle.stdout.splitlines()), (closed.stdout, oracle.stdout)


@pytest.mark.parametrize("verb", VERBS)
def test_closed_stdout_is_a_usage_error_that_touches_nothing(verb: str, template: tuple[Path, str], tmp_path: Path) -> None:
    """With stdout closed, each verb exits 2 with one message on stderr, before it opens anything."""
    root, run_id = _copy(template, tmp_path / "case")
    before = {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")}
    closed = _bash(root, ">&-", _args(verb, run_id))
    assert closed.returncode == 2
    assert closed.stderr.startswith("error: standard output is closed (>&-)"), closed.stderr
    assert "/dev/null" in closed.stderr
    assert {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_closed_stdout_and_stderr_exit_2_silently(template: tuple[Path, str], tmp_path: Path) -> None:
    """Nothing to write to at all: still exit 2, nothing run."""
    root, _ = _copy(template, tmp_path / "case")
    closed = _bash(root, ">&- 2>&-", ["run", "x.yaml"])
    assert (closed.returncode, closed.stdout, closed.stderr) == (2, "", "")


def test_closed_stdin_pauses_a_run_that_needs_a_confirmation(tmp_path: Path) -> None:
    """A closed stdin is no terminal to ask: the step that needs a confirmation pauses (exit 4), the earlier one passed."""
    (tmp_path / "x.yaml").write_text(RUNBOOK)
    closed = _bash(tmp_path, "<&-", ["run", "x.yaml"])
    _no_crash(closed)
    assert closed.returncode == 4, closed.stdout + closed.stderr
    assert "✔ [a] passed" in closed.stdout
    assert "no terminal to ask" in closed.stdout


# ------------------------------------------------------------ a reader that stops reading (EPIPE)

STOPPED_READER_RUNBOOK = """\
name: piped
steps:
  - id: first
    kind: command
    run: echo one; echo two
    irreversible: true
  - id: wait
    kind: command
    run: while [ ! -e go ]; do sleep 0.05; done; echo waited
    irreversible: true
  - id: last
    kind: command
    run: echo done > last.out
    irreversible: true
"""


@pytest.mark.parametrize("extra", [[], ["--log-format", "json"]], ids=["console", "json"])
@pytest.mark.parametrize("stderr_too", [False, True], ids=["stdout", "stdout-and-stderr"])
def test_run_goes_on_when_the_reader_of_its_output_stops(tmp_path: Path, extra: list[str], stderr_too: bool) -> None:
    """``runbook run x.yaml | head -1``: the reader leaves after the first line; the run neither
    tracebacks nor stops half way: every step runs, the run passes with exit 0, and stderr
    says once that output stopped and the run goes on (with ``2>&1 | head -1`` nobody reads
    that either: no message, same end)."""
    (tmp_path / "x.yaml").write_text(STOPPED_READER_RUNBOOK)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", "x.yaml", *extra],
        cwd=tmp_path,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline()  # like head -1: one line, then the pipe is closed
    proc.stdout.close()
    (tmp_path / "go").touch()  # only now does the run get past its second step and print again
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.wait(timeout=60) == 0, stderr
    assert (tmp_path / "last.out").read_text() == "done\n"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    if not stderr_too:
        assert stderr.count("standard output was closed by its reader") == 1, stderr
        assert "the run goes on" in stderr
    status = subprocess.run([sys.executable, "-m", "runbook", "status", "--format", "json"], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert '"passed"' in status.stdout and '"running"' not in status.stdout, status.stdout


@pytest.mark.parametrize("verb", [v for v in VERBS if v not in ("help", "version", "run", "run-resume", "rollback", "approve")])
def test_other_verbs_end_quietly_when_the_reader_stops(verb: str, template: tuple[Path, str], oracles: dict[str, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """``runbook history | head -0`` (a reader that closes the pipe before reading anything):
    no traceback, no "internal error", the exit code of the same command with its output
    thrown away (>/dev/null), when that was 0."""
    root, run_id = _copy(template, tmp_path / "case")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", *_args(verb, run_id)], cwd=root, env=_clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    code = proc.wait(timeout=60)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert code == oracles[verb].returncode, stderr
