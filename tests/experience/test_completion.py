"""Shell completion through click's protocol (``_RUNBOOK_COMPLETE``), as bash, zsh and fish call it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experience.conftest import Scratch

# The console script pip installs: completion is keyed on its name.
RUNBOOK = Path(sys.executable).parent / "runbook"

STEPS = """\
name: demo
steps:
  - id: migrate
    title: Run the migration
    kind: command
    run: echo migrate
  - id: backfill
    kind: command
    run: echo backfill
  - id: deploy
    title: Deploy v2
    kind: command
    run: echo deploy
"""


def _complete(scratch: Scratch, line: str, shell: str = "bash", env: dict[str, str] | None = None) -> list[tuple[str, ...]]:
    """Ask for completions of ``line`` (a trailing space completes a new word), parsed per shell."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    result = subprocess.run(
        [str(RUNBOOK)],
        cwd=scratch.root,
        env=scratch.env({"_RUNBOOK_COMPLETE": f"{shell}_complete", "COMP_WORDS": line, "COMP_CWORD": str(cword), **(env or {})}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    if shell == "bash":  # "type,value" per line
        return [tuple(item.split(",", 1)) for item in result.stdout.splitlines() if item]
    lines = result.stdout.splitlines()  # zsh: type, value, help per item
    return [tuple(lines[i:i + 3]) for i in range(0, len(lines), 3)]


@pytest.fixture
def project(scratch: Scratch) -> Scratch:
    assert RUNBOOK.exists(), f"{RUNBOOK} missing: install the project with pip install -e ."
    scratch.write("demo.yaml", STEPS)
    scratch.write("billing.yml", STEPS.replace("name: demo", "name: billing"))
    (scratch.root / "runbooks" / "notes.txt").write_text("not a runbook")
    return scratch


def test_runbook_names_from_runbooks_dir_and_runbook_path(project: Scratch, tmp_path: Path) -> None:
    shared = tmp_path / "shared-runbooks"
    shared.mkdir()
    (shared / "db-upgrade.yaml").write_text(STEPS.replace("name: demo", "name: db-upgrade"))
    env = {"RUNBOOK_PATH": str(shared)}
    assert _complete(project, "runbook run ", env=env) == [("plain", "billing.yml"), ("plain", "db-upgrade.yaml"), ("plain", "demo.yaml")]
    assert _complete(project, "runbook plan de", env=env) == [("plain", "demo.yaml")]
    assert _complete(project, "runbook validate ./run") == [("file", "./run")]
    assert _complete(project, "runbook run nothing-like-it") == [("file", "nothing-like-it")]


def test_step_ids_of_the_runbook_on_the_line(project: Scratch) -> None:
    assert _complete(project, "runbook run demo.yaml --from ") == [("plain", "migrate"), ("plain", "backfill"), ("plain", "deploy")]
    assert _complete(project, "runbook run --var x=1 demo.yaml --only b") == [("plain", "backfill")]
    assert _complete(project, "runbook run demo.yaml --approve d", shell="zsh") == [("plain", "deploy", "Deploy v2")]
    # No runbook yet on the line, or one that does not load: nothing, and no traceback.
    assert _complete(project, "runbook run --from ") == []
    project.write("broken.yaml", "name: broken\nsteps: [{id: x, kind: nosuchkind}]\n")
    assert _complete(project, "runbook run broken.yaml --from ") == []


@pytest.mark.slow
def test_run_ids_from_the_state_store_without_creating_one(project: Scratch) -> None:
    assert _complete(project, "runbook show ") == []
    assert not (project.root / ".runbook").exists(), "completion must not create a state store"
    assert project.runbook("run", "demo.yaml").returncode == 0
    assert project.runbook("run", "billing.yml").returncode == 0
    newest, older = (line.split()[0] for line in project.runbook("history").stdout.splitlines()[1:3])
    for command in ("show", "report", "rollback", "approve", "status"):
        assert _complete(project, f"runbook {command} ") == [("plain", newest), ("plain", older)], command
    assert _complete(project, f"runbook show {older}") == [("plain", older)]
    assert _complete(project, "runbook report ", shell="zsh")[0] == ("plain", newest, "billing (default) passed")
    assert _complete(project, "runbook run demo.yaml --resume ") == [("plain", newest), ("plain", older)]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_source_script_completes_in_bash(project: Scratch) -> None:
    """The one-line activation from docs/tutorial.md, then the function bash calls on Tab."""
    script = f"""
        eval "$(_RUNBOOK_COMPLETE=bash_source {RUNBOOK})"
        COMP_WORDS=(runbook run demo.yaml --from ""); COMP_CWORD=4
        _runbook_completion runbook
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    result = subprocess.run(["bash", "-c", script], cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["migrate", "backfill", "deploy"]
