"""A new project, as `runbook init` makes it, answers every read-only command."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from runbook.cli import main


def test_a_new_project_lists_no_step_definitions_and_plans(tmp_path: Path) -> None:
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert runner.invoke(main, ["init", "demo"]).exit_code == 0
        listed = runner.invoke(main, ["steps"])
        assert listed.exit_code == 0, listed.output
        assert "no step definitions in" in listed.output
        assert runner.invoke(main, ["validate", "runbooks/demo.yaml"]).exit_code == 0
        hint = runner.invoke(main, ["init", "other"]).output.split("next: runbook ")[1].split()
        assert runner.invoke(main, hint).exit_code == 0, hint
        (tmp_path / "steps").unlink(missing_ok=True)
        (tmp_path / "steps").write_text("not a directory")
        refused = runner.invoke(main, ["steps"])
        assert refused.exit_code == 2 and "is not a directory" in refused.output
    finally:
        os.chdir(cwd)
