"""Checklists in the styles teams write them: each imports to a valid runbook, every line explained,
and its Markdown plan reads back as a checklist with the same steps in the same order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.importer.conftest import CHECKLISTS, PLAN_ENV, SEED, Workspace, explain_block, explained_lines, load

STYLES = sorted(CHECKLISTS.glob("*.md"))


def test_there_are_six_styles() -> None:
    assert {p.stem for p in STYLES} == {"numbered-no-headings", "gitlab-change", "table-plan", "rails-django", "prose-checkboxes", "front-matter"}


@pytest.mark.parametrize("checklist", [*STYLES, SEED], ids=lambda p: p.stem)
def test_imports_to_a_valid_runbook_with_every_line_explained(checklist: Path, workspace: Workspace) -> None:
    path, result = workspace.imported(checklist, "--explain")
    validated = workspace.runbook("validate", str(path))
    assert validated.exit_code == 0, validated.output
    lines = checklist.read_text().splitlines()
    assert explained_lines(explain_block(result.output)) == set(range(1, len(lines) + 1))


@pytest.mark.parametrize("checklist", [*STYLES, SEED], ids=lambda p: p.stem)
def test_the_markdown_plan_is_the_same_checklist(checklist: Path, workspace: Workspace) -> None:
    path, _ = workspace.imported(checklist)
    steps = load(path)["steps"]
    result = workspace.runbook("plan", str(path), "--format", "markdown", env=PLAN_ENV)
    assert result.exit_code == 0, result.output
    headings = re.findall(r"^### Step (\d+): (.*) \(`([^`]+)`, (\w+)", result.output, re.M)
    assert [(int(n), id_) for n, _, id_, _ in headings] == [(i + 1, s["id"]) for i, s in enumerate(steps)]
    assert [title for _, title, _, _ in headings] == [s["title"] for s in steps]
    # Each step says what to do: a confirmation to tick, or the command in a code block.
    for chunk in re.split(r"^### Step \d+: ", result.output, flags=re.M)[1:]:
        assert "- [ ] Confirm:" in chunk or "```" in chunk


def _steps(workspace: Workspace, name: str) -> tuple[dict, dict[str, dict]]:
    path, _ = workspace.imported(CHECKLISTS / f"{name}.md")
    runbook = load(path)
    return runbook, {s["id"]: s for s in runbook["steps"]}


def test_a_numbered_list_with_no_headings(workspace: Workspace) -> None:
    runbook, steps = _steps(workspace, "numbered-no-headings")
    assert runbook["metadata"] == {"owner": "payments-oncall", "risk": "medium (brief checkout errors if step 4 fails)"}
    assert len(steps) == 8
    assert steps["put_storefront_maintenance_mode"]["run"] == "./bin/ops maint on"
    assert steps["take_database_snapshot"]["run"].startswith("pg_dump") and steps["take_database_snapshot"]["estimate"] == "3m"
    migrate = steps["migrate"]
    assert migrate["kind"] == "alembic" and migrate["config"] == "/srv/billing/deploy/alembic.ini"
    assert steps["start_workers_again_check"]["needs"] == ["migrate"]  # "Do not start the workers before the migration"
    assert steps["watch_error_rate_billing"]["kind"] == "manual"


def test_a_gitlab_change_issue(workspace: Workspace) -> None:
    runbook, steps = _steps(workspace, "gitlab-change")
    assert runbook["metadata"]["owner"] == "@dbre-oncall" and runbook["metadata"]["estimate"] == "90m"
    disk = steps["confirm_there_enough_disk"]
    assert disk["run"] == "df -h /var/opt/gitlab" and disk["dry_run"] == "safe"
    text = (workspace.root / "runbooks" / "gitlab-change.yaml").read_text()
    assert "TODO(import): the checklist ran this on patroni-main-2004-01-db-gprd" in text
    assert steps["more_than_gb_free"]["kind"] == "manual"  # the nested checkbox under it
    assert steps["watch_progress"]["run"].startswith("sudo gitlab-psql")
    assert steps["check_no_invalid_index"]["gates"][0]["check"] == "row_count"
    assert [s["id"] for s in runbook["rollback"][0]["steps"]] == ["cancel_reindex", "drop_invalid_index_left", "set_label_change_aborted"]
    assert steps["set_label_change_progress"]["estimate"]  # "*Estimated Time to Complete (mins)* - 60" over the group


def test_a_table_driven_plan(workspace: Workspace) -> None:
    runbook, steps = _steps(workspace, "table-plan")
    assert runbook["metadata"] == {"owner": "@infra-team", "risk": "low"}
    table = list(steps.values())[:5]
    assert [s["run"] for s in table] == [
        "ops drain cache-3", "ops resize cache-3 --size r6g.xlarge", "ops warm cache-3 --keys top10k", "ops undrain cache-3",
        "ops stats cache-3 | grep hit_rate",
    ]
    assert [s.get("estimate") for s in table] == ["2m", "10m-15m", "5m", "1m", "1m"]
    assert table[0]["rollback"] == {"kind": "command", "run": "ops undrain cache-3"}
    assert table[2]["irreversible"] is True  # rollback "n/a"


def test_rails_and_django(workspace: Workspace) -> None:
    runbook, steps = _steps(workspace, "rails-django")
    rails, django = steps["migrate"], steps["migrate_2"]
    assert rails["run"] == "RAILS_ENV=production bundle exec rails db:migrate" and rails["cwd"] == "/srv/orders/current"
    assert rails["dry_run"]["run"].endswith("db:migrate:status") and rails["rollback"]["run"].endswith("db:rollback")
    assert django["dry_run"]["run"] == "python manage.py migrate reporting 0042 --plan"
    assert django["env"]["VIRTUAL_ENV"] == "/srv/reporting/venv"
    assert django["gates"][0]["expect"] == "== 1"
    assert [p["check"] for p in rails["preconditions"]] == ["no_long_transactions", "time_window"]
    assert set(steps["restart"]["needs"]) == {"migrate", "migrate_2"}  # "before both migrations"
    assert steps["smoke_test"]["dry_run"] == "safe" and '{"status":"ok"}' in steps["smoke_test"]["description"]
    assert any("LockNotAvailable" in p for p in rails["hints"])
    assert [s["kind"] for s in runbook["rollback"][0]["steps"]] == ["command", "command"]


def test_prose_and_checkboxes(workspace: Workspace) -> None:
    runbook, steps = _steps(workspace, "prose-checkboxes")
    assert [s["kind"] for s in steps.values()] == ["manual"] * 6
    assert "rotate the public certificates" in runbook["description"]
    assert "point the listener back" in runbook["description"]


def test_front_matter(workspace: Workspace) -> None:
    runbook, steps = _steps(workspace, "front-matter")
    assert runbook["name"] == "front-matter"  # -o names the runbook
    assert runbook["metadata"] == {"owner": "payments-sre", "risk": "high", "estimate": "20m", "tags": ["postgres", "secrets"], "links": {"ticket": "OPS-1234"}}
    text = (workspace.root / "runbooks" / "front-matter.yaml").read_text()
    assert "TODO(import): front matter reviewers" in text
    assert [s["kind"] for s in steps.values()] == ["command", "sql", "command", "sql"]
    assert list(steps.values())[3]["gates"][0]["expect"] == "> 0"


def test_without_output_the_title_names_the_runbook(workspace: Workspace) -> None:
    result = workspace.runbook("import", str(CHECKLISTS / "front-matter.md"))
    assert result.exit_code == 0, result.output
    assert (workspace.root / "runbooks" / "rotate-payments-database-password.yaml").is_file()
    assert "wrote runbooks/rotate-payments-database-password.yaml" in result.output
