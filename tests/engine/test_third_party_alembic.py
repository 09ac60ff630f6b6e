"""A real third-party alembic history through a runbook: MLflow's tracking store on PostgreSQL.

The history is the one the ``mlflow-skinny`` wheel installs (a test-only
dependency); nothing of it is copied here. The runbook lives in ``runbooks/``
with its own ``alembic.ini`` (``script_location = mlflow.store:db_migrations``)
and a SQL file beside it, and runs from the project root, so both are found
relative to the runbook's directory. MLflow creates its initial tables before
its first revision, so a bootstrap step comes before the migrate.

A table created by hand makes one revision in the middle fail; the run stops
with that revision named first, ``show`` and the report say the same, and a
``--resume`` after the table is dropped finishes the upgrade. The schema is
then compared with plain alembic's upgrade of another fresh database.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.engine.conftest import Project

pytest.importorskip("mlflow.store.db_migrations", reason="mlflow-skinny (the test extra) is not installed")

pytestmark = pytest.mark.slow

# In MLflow's history: the revision that creates the model registry tables, and the one before it.
BEFORE_REGISTRY, REGISTRY = "89d4b8295536", "2b4d017a5e9b"
# A revision that reads data through op.get_bind(), so it cannot render as offline SQL, and the one before it.
BEFORE_READS_DATA, READS_DATA = "451aebb31d03", "90e64c465722"

BOOTSTRAP = (
    "import sys, sqlalchemy as sa\n"
    "from mlflow.store.tracking.dbmodels.initial_models import Base\n"
    "engine = sa.create_engine(sys.argv[1])\n"
    "Base.metadata.create_all(engine)\n"
    "engine.dispose()\n"
)

RUNBOOK = """
name: mlflow-store
vars:
  db: {required: true}
connections:
  store: "{{ vars.db }}"
steps:
  - id: bootstrap
    title: create MLflow's initial tables (its history starts after them)
    kind: command
    run: [python, -c, %s, "{{ vars.db }}"]
    irreversible: true
    preconditions:
      - check: table_exists
        connection: store
        table: alembic_version
        exists: false
        on_fail: skip
  - id: migrate
    kind: alembic
    config: alembic.ini
    connection: store
    command: upgrade
    target: head
    irreversible: true
    dry_run: safe
    gates:
      - check: alembic_revision
        connection: store
        at_head: true
        config: alembic.ini
      - check: table_exists
        connection: store
        table: registered_models
  - id: smoke
    kind: sql
    connection: store
    file: sql/smoke.sql
    irreversible: true
    dry_run: safe
    gates:
      - check: value
        value: "{{ steps.smoke.outputs.value }}"
        expect: "== 0"
""" % json.dumps(BOOTSTRAP)

INI = "[alembic]\nscript_location = mlflow.store:db_migrations\n"


def schema(url: str) -> dict[str, Any]:
    """Tables, columns, constraints, indexes and the version rows of ``public``, in a comparable form."""
    queries = {
        "columns": """SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length,
                             numeric_precision, is_nullable, column_default
                        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3""",
        "constraints": """SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
                            FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
        "version": "SELECT version_num FROM alembic_version",
    }
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {name: [tuple(row) for row in conn.execute(sa.text(sql))] for name, sql in queries.items()}
    finally:
        engine.dispose()


def execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


def plain_alembic_upgrade(url: str, workdir: Path) -> None:
    """What a user would do by hand: the bootstrap, then ``alembic upgrade head``."""
    ini = workdir / "plain-alembic.ini"
    ini.write_text(INI + f"sqlalchemy.url = {url.replace('%', '%%')}\n")
    subprocess.run([sys.executable, "-c", BOOTSTRAP, url], check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"], check=True, timeout=300, capture_output=True)


def run_id(stdout: str) -> str:
    found = re.search(r"^▶ run (\S+):", stdout, re.MULTILINE)
    assert found, stdout
    return found.group(1)


def test_mlflow_history_fails_midway_resumes_and_matches_plain_alembic(
    sqlite_project: Project, pg_url: str, other_pg_url: str, tmp_path: Path
) -> None:
    project = sqlite_project
    runbook = project.write("mlflow-store.yaml", RUNBOOK)
    (runbook.parent / "alembic.ini").write_text(INI)
    (runbook.parent / "sql").mkdir()
    (runbook.parent / "sql" / "smoke.sql").write_text("SELECT COUNT(*) FROM registered_models;\n")
    db = ["--var", f"db={pg_url}"]

    # A dry run renders offline SQL until the revision that reads data, and names it.
    dry = project.runbook("run", "runbooks/mlflow-store.yaml", "--dry-run", *db, timeout=300)
    # The smoke step reads tables only the real upgrade creates: the dry run says it is incomplete (exit 5).
    assert dry.returncode == 5, dry.stdout + dry.stderr
    assert dry.stdout.rstrip().splitlines()[-1].startswith("  dry run incomplete: 1 step(s) could not be previewed: smoke")
    assert f"offline SQL not available: upgrade {BEFORE_READS_DATA} -> {READS_DATA} (migrate user column to tags) cannot render offline" in dry.stdout
    assert "Running upgrade" not in dry.stdout + dry.stderr  # nothing ran, and nothing says it did

    # A table made by hand collides with a revision in the middle of the history.
    execute(pg_url, "CREATE TABLE registered_models (name VARCHAR(256) PRIMARY KEY)")
    failed = project.runbook("run", "runbooks/mlflow-store.yaml", "--yes", *db, timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    where = f"failed in upgrade {BEFORE_REGISTRY} -> {REGISTRY} (add model registry tables to db) (last applied: base, "
    failed_line = next(line for line in failed.stdout.splitlines() if line.startswith("✘ [migrate] failed"))
    assert failed_line.split(": ", 1)[1].startswith(where), failed_line
    assert "DuplicateTable" in failed_line
    assert "Running upgrade" not in failed.stderr
    run = run_id(failed.stdout)
    shown = project.runbook("show", run)
    assert where in shown.stdout, shown.stdout
    report = project.runbook("report", run, "--format", "md")
    assert f"- `migrate` (failed): {where}" in report.stdout, report.stdout

    execute(pg_url, "DROP TABLE registered_models")
    resumed = project.runbook("run", "runbooks/mlflow-store.yaml", "--resume", "--yes", "--log-format", "json", *db, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]  # every line is JSON
    lines = [e["line"] for e in events if e["event"] == "output" and e.get("step") == "migrate"]
    assert f"Running upgrade {BEFORE_REGISTRY} -> {REGISTRY}, add model registry tables to db" in lines
    assert "Running upgrade" not in resumed.stderr
    gates = [e for e in events if e["event"] == "check" and e.get("step") == "migrate"]
    assert [g["ok"] for g in gates] == [True, True], gates
    # The bootstrap passed before the failure and is not run again.
    assert [e["step"] for e in events if e["event"] == "step_started"] == ["migrate", "smoke"]
    assert {e["step"]: e["status"] for e in events if e["event"] == "step_finished"} == dict.fromkeys(["bootstrap", "migrate", "smoke"], "passed")

    plain_alembic_upgrade(other_pg_url, tmp_path)
    through_runbook, by_hand = schema(pg_url), schema(other_pg_url)
    assert len(through_runbook["columns"]) > 300 and through_runbook["version"]
    assert through_runbook == by_hand
