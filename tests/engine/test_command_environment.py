"""The newcomer's second command (issue 15): `.venv/bin/runbook run ...` without an
activated virtualenv. Steps that run `python3` get the interpreter running runbook,
with runbook's dependencies, as an activated virtualenv would give them."""

from __future__ import annotations

import sys

import pytest

from tests.engine.conftest import Project

IMPORTS = """
name: imports
steps:
  - id: deps
    kind: command
    run: python3 -c "import alembic, sqlalchemy, runbook; print('deps ok')"
    irreversible: true
    gates:
      - check: command
        run: python3 -c "import sqlalchemy"
"""


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="runbook is not running from a virtualenv here")
def test_python3_in_a_step_is_the_interpreter_running_runbook(project: Project) -> None:
    project.write("imports.yaml", IMPORTS)
    # PATH as a new shell has it: the virtualenv is not activated.
    result = project.runbook("run", "imports.yaml", env={"PATH": "/usr/local/bin:/usr/bin:/bin", "VIRTUAL_ENV": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deps ok" in result.stdout
