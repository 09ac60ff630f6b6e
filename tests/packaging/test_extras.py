"""Optional extras: a runbook or a --state URL that needs a missing one is refused, naming the extra.

"Missing" is made real for one subprocess: ``sys.modules[name] = None`` makes every
import of that module fail as it does when the package is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runbook.errors import DISTRIBUTION, EXTRA_OF_MODULE, ExitCode, MissingExtra

ALEMBIC_RUNBOOK = """\
name: needs-alembic
connections:
  db: "sqlite:///app.db"
  pg: "postgresql://u@127.0.0.1:1/x"
steps:
  - id: echo
    kind: command
    run: echo hello
    irreversible: true
  - id: migrate
    kind: alembic
    config: alembic.ini
    connection: db
    command: upgrade
    target: head
    needs: [echo]
    irreversible: true
"""


def _runbook(blocked: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``runbook ARGS`` in a process where the ``blocked`` modules are not importable."""
    code = f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\nfrom runbook.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_every_extra_module_maps_to_an_extra_of_pyproject() -> None:
    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)
    # The test extra pulls every extra, so that the suite runs everything.
    assert f"{DISTRIBUTION}[all]" in extras["test"]
    assert set(extras["all"][0].partition("[")[2].rstrip("]").split(",")) == set(EXTRA_OF_MODULE.values())


def test_missing_extra_names_the_install_command() -> None:
    err = MissingExtra.of_import_error(ModuleNotFoundError("No module named 'psycopg'", name="psycopg"), "connection 'db'")
    assert err is not None and err.exit_code == ExitCode.INVALID
    assert "connection 'db' needs the 'postgresql' extra" in str(err)
    assert f"pip install '{DISTRIBUTION}[postgresql]'" in str(err)
    assert MissingExtra.of_import_error(ModuleNotFoundError("x", name="nosuchmodule"), "x") is None


def test_run_refused_before_any_step_naming_every_missing_extra(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text(ALEMBIC_RUNBOOK)
    result = _runbook(["alembic", "psycopg"], "run", "rb.yaml", "--yes", cwd=tmp_path)
    assert result.returncode == ExitCode.INVALID, result.stderr
    assert "a step of kind 'alembic' needs the 'alembic' extra" in result.stderr
    assert "connection 'pg' needs the 'postgresql' extra" in result.stderr
    assert f"pip install '{DISTRIBUTION}[alembic,postgresql]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hello" not in result.stdout  # nothing ran


def test_runbook_without_optional_needs_runs_on_the_base_install(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text("name: base\nsteps:\n  - id: echo\n    kind: command\n    run: echo hello\n")
    result = _runbook(["alembic", "psycopg", "pymysql"], "run", "rb.yaml", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout


def test_postgresql_state_url_without_the_driver_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text("name: base\nsteps:\n  - id: echo\n    kind: command\n    run: echo hello\n")
    result = _runbook(["psycopg"], "history", "--state", "postgresql://u:sekret@127.0.0.1:1/x", cwd=tmp_path)
    assert result.returncode == ExitCode.INVALID, result.stderr
    assert f"pip install '{DISTRIBUTION}[postgresql]'" in result.stderr
    assert "sekret" not in result.stderr and "Traceback" not in result.stderr
