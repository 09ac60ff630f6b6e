"""What makes a step the same step (issue 18.2): its definition, the values its
templates read, and the databases it uses; not unrelated values, not secrets."""

from __future__ import annotations

from pathlib import Path

from runbook.fingerprint import connection_identity
from runbook.loader import load_runbook
from runbook.planner import build_plan
from tests.engine.conftest import Project

TWO_DATABASES = """
name: twodb
vars:
  db: {default: a.db}
  label: {default: one}
  unrelated: {default: x}
  password: {default: s3cret, secret: true}
connections:
  app: "sqlite:///{{ vars.db }}"
steps:
  - id: migrate
    kind: sql
    connection: app
    sql: CREATE TABLE IF NOT EXISTS t (id INTEGER)
    irreversible: true
    gates: [{check: table_exists, connection: app, table: t}]
  - id: announce
    kind: command
    run: "echo {{ vars.label }} {{ vars.password }} >> counters/announce"
    needs: [migrate]
    irreversible: true
"""


def _fingerprints(path: Path, **overrides: str) -> dict[str, str]:
    plan = build_plan(load_runbook(path), None, overrides)
    return {planned.id: planned.fingerprint for planned in plan.steps}


def test_a_step_is_another_step_on_another_database(project: Project) -> None:
    """--var db=... in the same environment: the migration that passed on a.db does not count for b.db."""
    project.write("twodb.yaml", TWO_DATABASES)
    assert project.runbook("run", "twodb.yaml").returncode == 0
    elsewhere = project.runbook("run", "twodb.yaml", "--only", "announce", "--var", "db=b.db")
    assert elsewhere.returncode == 3, elsewhere.stdout + elsewhere.stderr
    assert "run 'migrate' first" in elsewhere.stdout
    same = project.runbook("run", "twodb.yaml", "--only", "announce")
    assert same.returncode == 0, same.stdout + same.stderr
    assert project.count("announce") == 2


def test_fingerprints_follow_what_a_step_reads(tmp_path: Path) -> None:
    path = tmp_path / "twodb.yaml"
    path.write_text(TWO_DATABASES)
    base = _fingerprints(path)
    assert _fingerprints(path, unrelated="y") == base  # read by no step
    assert _fingerprints(path, password="rotated") == base  # secrets are masked
    relabelled = _fingerprints(path, label="two")
    assert relabelled["announce"] != base["announce"] and relabelled["migrate"] == base["migrate"]
    moved = _fingerprints(path, db="b.db")
    assert moved["migrate"] != base["migrate"] and moved["announce"] == base["announce"]


def test_connection_identity_ignores_the_password_and_the_spelling() -> None:
    def identity(url: str) -> str:
        return connection_identity("db", {"db": url}, {})

    base = identity("postgresql://deploy:one@db.internal:5432/app")
    assert identity("postgresql+psycopg://deploy:two@db.internal:5432/app") == base
    assert identity("postgres://deploy@db.internal:5432/app") == base
    assert identity("postgresql://deploy:one@db.internal:5432/app?password=x") == base
    assert identity("postgresql://deploy:one@dev-db.internal:5432/app") != base
    assert identity("postgresql://deploy:one@db.internal:5433/app") != base
    assert identity("postgresql://deploy:one@db.internal:5432/other") != base
    assert identity("postgresql://admin:one@db.internal:5432/app") != base
    assert identity("postgresql://deploy:one@db.internal:5432/app?sslmode=disable") != base


def test_a_template_reading_a_whole_namespace_is_fingerprinted_rendered(tmp_path: Path) -> None:
    """vars[name] reads a value analysis cannot name: the rendered step is hashed instead."""
    path = tmp_path / "dynamic.yaml"
    path.write_text(
        "name: dynamic\nvars:\n  which: {default: a}\n  a: {default: one}\n  b: {default: two}\n"
        "steps:\n  - id: s\n    kind: command\n    run: \"echo {{ vars[vars.which] }}\"\n    irreversible: true\n"
    )
    base = _fingerprints(path)
    assert _fingerprints(path, a="changed") != base
    loop = tmp_path / "loop.yaml"
    loop.write_text(path.read_text().replace("{{ vars[vars.which] }}", "{{ vars.which }}{% for k in vars %}{{ vars[k] }}{% endfor %}"))
    assert _fingerprints(loop, a="changed") != _fingerprints(loop)
    assert _fingerprints(path, b="changed") == _fingerprints(path, b="other")
