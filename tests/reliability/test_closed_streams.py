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
