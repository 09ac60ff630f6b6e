"""The seed checklist imports to a runbook that keeps its order and refuses a deploy out of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.importer.conftest import ROOT, SEED, Workspace, explain_block, explained_lines, load

GOLDEN = ROOT / "examples" / "checklists" / "subscriber-fk-imported.yaml"


def test_the_seed_imports_to_a_valid_runbook_that_keeps_the_order(workspace: Workspace) -> None:
    path, result = workspace.imported(SEED)
    assert "14 steps, 3 rollback options" in result.output
    validated = workspace.runbook("validate", str(path))
    assert validated.exit_code == 0, validated.output
    plan = workspace.plan_json(path)
    ids = [s["id"] for s in plan["steps"]]
    needs = {s["id"]: set(s["needs"]) for s in plan["steps"]}
    assert ids.index("migrate") < ids.index("backfill") < ids.index("deploy")
    assert {"migrate", "backfill"} <= needs["deploy"]
    assert "migrate" in needs["backfill"] and "migrate" in needs["backfill_dry_run"]
    assert "backfill_dry_run" in needs["backfill"]
    kinds = {s["id"]: s["kind"] for s in plan["steps"]}
    assert kinds["migrate"] == "alembic" and kinds["backup"] == "manual"
    assert [o["id"] for o in plan["rollback_options"]] == ["revert_migration", "revert_code_only", "fix_data_issues"]
    assert plan["estimate_total_min_s"] > 0


def test_the_seed_becomes_the_checks_the_checklist_describes(workspace: Workspace) -> None:
    path, _ = workspace.imported(SEED)
    steps = {s["id"]: s for s in load(path)["steps"]}
    migrate = steps["migrate"]
    assert migrate["command"] == "upgrade" and migrate["target"] == "head"
    gates = {g["check"]: g for g in migrate["gates"]}
    assert gates["column_exists"] | {"name": None} == {
        "check": "column_exists", "name": None, "connection": "db", "table": "plan_subscriptions",
        "column": "subscriber_id", "type": "character varying", "nullable": True,
    }
    assert gates["foreign_key_exists"]["constraint"] == "fk_plan_subscriptions_subscriber_id"
    assert gates["alembic_revision"]["current"] == "fdf1b7f6bbe1"
    assert migrate["preconditions"][0]["check"] == "no_long_transactions"
    assert migrate["preconditions"][0]["tables"] == ["plan_subscriptions"]
    assert migrate["rollback"]["target"] == "{{ steps.migrate.outputs.from }}"
    assert [g["expect"] for g in steps["backfill"]["gates"]] == ["== 0", "== 0"]
    assert steps["backfill"]["confirm"] and steps["backfill_dry_run"]["dry_run"] == "safe"
    assert steps["deploy"]["estimate"] == "3m-5m" and migrate["estimate"] == "5s"
    assert any("ProgrammingError" in pattern for pattern in steps["deploy"]["hints"])
    assert {g["output_excludes"] for g in steps["check_logs_errors"]["gates"]} == {"subscriber_id_not_set", "ProgrammingError.*subscriber_id"}
    runbook = load(path)
    assert runbook["metadata"]["priority"].startswith("BLOCKER")
    assert runbook["metadata"]["estimate"] == "15m-20m"
    assert [c["role"] for c in runbook["metadata"]["escalation"]] == ["DBA Lead", "Backend Lead", "On-Call Engineer", "Escalation"]
    assert set(runbook["notifications"]["messages"]) == {"start", "success"}
    assert runbook["success_criteria"][0]["check"] == {"check": "alembic_revision", "connection": "db", "current": "fdf1b7f6bbe1"}


def test_every_line_of_the_seed_is_explained(workspace: Workspace) -> None:
    _, result = workspace.imported(SEED, "--explain")
    lines = SEED.read_text().splitlines()
    assert explained_lines(explain_block(result.output)) == set(range(1, len(lines) + 1))


def test_strict_validation_lists_every_todo_left(workspace: Workspace) -> None:
    path, _ = workspace.imported(SEED)
    todo_lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if "TODO(import)" in line]
    assert todo_lines
    plain = workspace.runbook("validate", str(path))
    assert plain.exit_code == 0, plain.output
    strict = workspace.runbook("validate", "--strict", str(path))
    assert strict.exit_code == 2
    reported = [line for line in strict.output.splitlines() if "TODO(import)" in line]
    assert [int(line.split(":")[1]) for line in reported] == todo_lines
    # Once a reviewer removes the markers (and settles the other warnings), --strict has nothing to say about them.
    path.write_text(path.read_text().replace("TODO(import)", "reviewed"))
    assert "TODO(import)" not in workspace.runbook("validate", "--strict", str(path)).output


def test_the_committed_import_is_what_the_importer_writes_today(workspace: Workspace) -> None:
    """docs/import.md shows examples/checklists/subscriber-fk-imported.yaml side by side with the hand-written runbook."""
    out = workspace.root / "subscriber-fk-imported.yaml"
    result = workspace.runbook("import", str(SEED), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text() == GOLDEN.read_text(), "regenerate: runbook import examples/checklists/deployment-checklist-subscriber-fk.md -o examples/checklists/subscriber-fk-imported.yaml --force"


def test_deploy_alone_on_a_fresh_demo_database_is_refused(workspace: Workspace) -> None:
    """The imported runbook's `--only deploy` before the migration: exit 3, the database untouched."""
    home = workspace.root / "isp-home"
    db = workspace.root / "isp.db"
    url = f"sqlite:///{db}"
    ispctl = [sys.executable, str(ROOT / "examples" / "isp" / "ispctl.py"), "--db", url, "--home", str(home)]
    for args in (["init"], ["generate", "--rows", "40", "--seed", "7"]):
        done = subprocess.run([*ispctl, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    path, _ = workspace.imported(SEED)
    result = subprocess.run(
        [sys.executable, "-m", "runbook", "run", str(path), "--only", "deploy", "--yes", "--var", f"db_url={url}"],
        cwd=workspace.root, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "needs 'backfill'" in result.stdout or "needs 'migrate'" in result.stdout
    engine = sa.create_engine(url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("plan_subscriptions")}
    finally:
        engine.dispose()
    assert "subscriber_id" not in columns


def test_plan_does_not_load_the_importer(tmp_path: Path) -> None:
    """`runbook plan` start-up is measured: neither the importer nor the Markdown parser is imported by it."""
    code = (
        "import sys\n"
        "from runbook.cli import main\n"
        "try:\n"
        f"    main(['plan', {str(ROOT / 'runbooks' / 'subscriber-fk.yaml')!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('runbook.importer', 'markdown_it'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
