"""The alembic step kind on a small branched-and-merged project, against real SQLite, PostgreSQL
and MariaDB (or MySQL). What MariaDB's non-transactional DDL leaves when a migration fails
half-way, and the next attempt, is in test_alembic_mariadb.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from runbook.checks.alembic_revision import KIND as CHECK
from runbook.checks.alembic_revision import AlembicRevisionParams
from runbook.checks.base import CheckContext, CheckResult
from runbook.steps import get_step_kind
from runbook.steps.alembic import KIND, AlembicParams
from tests.alembic_project import write_project, write_revision
from tests.steps.harness import AlembicHarness, closed_port, disposed_after

# The seed's shape: two heads before the change (A and B), the change (C, on A),
# then the merge of C and B.
BASE, A, B, C, MERGE = "1f8a3c2b9d40", "c64d9a16fa9d", "c6b208ba7659", "ee4f9c4fb5b3", "fdf1b7f6bbe1"
PRE_CHANGE = f"{A},{B}"


def make_project(
    root: Path, *, url: str = "", failing: bool = False, env_extra: str = "", script_location: str = "%(here)s/migrations"
) -> Path:
    """An alembic project like the seed's; ``failing`` adds a head after the merge whose upgrade fails."""
    versions = write_project(root, url=url, env_extra=env_extra, script_location=script_location)

    def table(name: str) -> tuple[str, str]:
        return (
            f"    op.create_table({name!r}, sa.Column('id', sa.Integer, primary_key=True))",
            f"    op.drop_table({name!r})",
        )

    revisions: list[tuple[str, Any, str, tuple[str, str]]] = [
        (BASE, None, "create_customers", table("customers")),
        (A, BASE, "add_soft_delete", table("soft_delete")),
        (B, BASE, "add_audit_columns", table("audit")),
        (C, A, "add_subscriber_id_to_plan_subscriptions", table("subscriber_ids")),
        (MERGE, (C, B), "merge_subscriber_id_and_audit_columns", ("    pass", "    pass")),
    ]
    if failing:
        revisions.append(("0bad0bad0bad", MERGE, "broken", ("    op.execute('UPDATE no_such_table SET x = 1')", "    pass")))
    for rev, down, message, (up, back) in revisions:
        write_revision(versions, rev, down, message, up, back)
    return root / "alembic.ini"


@pytest.fixture
def db(any_db_url: str, tmp_path: Path) -> Iterator[AlembicHarness]:
    make_project(tmp_path / "proj")
    yield from disposed_after(AlembicHarness(any_db_url, tmp_path))


@pytest.fixture
def pre_change(db: AlembicHarness) -> AlembicHarness:
    """The database at the seed's state before the change: heads A and B."""
    outcome = db.run("upgrade", PRE_CHANGE)
    assert outcome.ok, outcome.error
    assert outcome.outputs["to_revisions"] == [A, B]
    return db


def test_params_and_describe() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs a target"):
        AlembicParams(config="alembic.ini", command="upgrade")
    with pytest.raises(pydantic.ValidationError, match="takes no target"):
        AlembicParams(config="alembic.ini", command="current", target="head")
    params = AlembicParams(config="alembic.ini", connection="app", command="downgrade", target=PRE_CHANGE)
    assert params.targets == [A, B]
    assert KIND.describe(params) == f"[app] alembic downgrade {A},{B} (alembic.ini)"
    assert get_step_kind("alembic") is KIND


def test_upgrade_from_two_heads_through_the_merge(pre_change: AlembicHarness) -> None:
    db = pre_change
    outcome = db.run("upgrade", "head")
    assert outcome.ok, outcome.error
    assert outcome.outputs == {"from_revisions": [A, B], "from": PRE_CHANGE, "to_revisions": [MERGE], "to": MERGE}
    assert f"Running upgrade {A} -> {C}, add_subscriber_id_to_plan_subscriptions" in db.lines
    assert f"Running upgrade {C}, {B} -> {MERGE}, merge_subscriber_id_and_audit_columns" in db.lines
    assert db.lines[0] == f"current: {PRE_CHANGE}" and db.lines[-1] == f"now: {MERGE}"
    assert "subscriber_ids" in db.tables()


def test_rollback_to_the_comma_joined_from(pre_change: AlembicHarness) -> None:
    db = pre_change
    migrate = db.run("upgrade", "heads")
    assert migrate.ok, migrate.error
    # What the engine renders from `target: "{{ steps.migrate.outputs.from }}"`.
    rollback = db.run("downgrade", migrate.outputs["from"])
    assert rollback.ok, rollback.error
    assert rollback.outputs["to_revisions"] == [A, B]
    assert f"Running downgrade {C} -> {A}, add_subscriber_id_to_plan_subscriptions" in db.lines
    assert db.tables() == {"customers", "soft_delete", "audit"}


def test_downgrade_to_one_side_of_the_merge_keeps_the_other_branch(pre_change: AlembicHarness) -> None:
    db = pre_change
    assert db.run("upgrade", "head").ok
    outcome = db.run("downgrade", B)
    assert outcome.ok, outcome.error
    # Only the merge is undone: C is not a descendant of B, so it stays applied.
    assert outcome.outputs["to_revisions"] == [B, C]
    assert "subscriber_ids" in db.tables()
    assert db.run("downgrade", A).outputs["to_revisions"] == [A, B]
    assert "subscriber_ids" not in db.tables()


def test_current_and_stamp(pre_change: AlembicHarness) -> None:
    db = pre_change
    current = db.run("current")
    assert current.ok and current.outputs["from"] == current.outputs["to"] == PRE_CHANGE
    stamped = db.run("stamp", MERGE)
    assert stamped.ok, stamped.error
    assert stamped.outputs["to_revisions"] == [MERGE]
    assert "subscriber_ids" not in db.tables()


def test_current_on_an_empty_database_is_base(db: AlembicHarness) -> None:
    outcome = db.run("current")
    assert outcome.ok and outcome.outputs == {"from_revisions": [], "from": "base", "to_revisions": [], "to": "base"}


def test_dry_run_upgrade_shows_revisions_and_offline_sql(pre_change: AlembicHarness) -> None:
    db = pre_change
    outcome = db.run("upgrade", "head", dry_run=True)
    assert outcome.ok, outcome.error
    assert outcome.outputs["would_apply"] == [
        f"{C}: add_subscriber_id_to_plan_subscriptions",
        f"{MERGE}: merge_subscriber_id_and_audit_columns",
    ]
    assert outcome.outputs["to_revisions"] == [MERGE]
    sql = outcome.outputs["sql"]
    assert "CREATE TABLE subscriber_ids" in sql
    assert f"UPDATE alembic_version SET version_num='{C}' WHERE alembic_version.version_num = '{A}'" in sql
    assert f"DELETE FROM alembic_version WHERE alembic_version.version_num = '{C}'" in sql
    assert "CREATE TABLE subscriber_ids (" in db.lines
    assert f"would apply {C}: add_subscriber_id_to_plan_subscriptions" in db.lines
    assert db.run("current").outputs["from_revisions"] == [A, B]
    assert "subscriber_ids" not in db.tables()


def test_dry_run_of_a_list_predicts_each_step(db: AlembicHarness) -> None:
    outcome = db.run("upgrade", PRE_CHANGE, dry_run=True)
    assert outcome.ok, outcome.error
    assert [line.split(":")[0] for line in outcome.outputs["would_apply"]] == [BASE, A, B]
    assert outcome.outputs["from"] == "base" and outcome.outputs["to_revisions"] == [A, B]
    sql = outcome.outputs["sql"]
    assert sql.count("CREATE TABLE alembic_version") == 1
    # The second target starts from the heads the first one left.
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{B}')" in sql
    assert db.tables() == set()


def test_dry_run_downgrade_to_the_joined_from(pre_change: AlembicHarness) -> None:
    db = pre_change
    assert db.run("upgrade", "head").ok
    outcome = db.run("downgrade", PRE_CHANGE, dry_run=True)
    assert outcome.ok, outcome.error
    assert [line.split(":")[0] for line in outcome.outputs["would_apply"]] == [MERGE, C]
    assert outcome.outputs["to_revisions"] == [A, B]
    assert "DROP TABLE subscriber_ids" in outcome.outputs["sql"]
    assert "subscriber_ids" in db.tables()


def test_failing_migration_is_a_failed_outcome(any_db_url: str, tmp_path: Path) -> None:
    make_project(tmp_path / "proj", failing=True)
    db = AlembicHarness(any_db_url, tmp_path)
    assert db.run("upgrade", PRE_CHANGE).ok
    outcome = db.run("upgrade", "head")
    assert not outcome.ok and outcome.error
    # The failing migration and where the database stands come first, then the cause.
    on_postgresql = db.connections.dialect("db") == "postgresql"
    last_applied = PRE_CHANGE if on_postgresql else MERGE
    rolled_back = ", the migrations before it were rolled back with it" if on_postgresql else ""
    assert outcome.error.startswith(f"failed in upgrade {MERGE} -> 0bad0bad0bad (broken) (last applied: {last_applied}{rolled_back}): ")
    assert "no_such_table" in outcome.error and "\n" not in outcome.error
    assert f"Running upgrade {MERGE} -> 0bad0bad0bad, broken" in outcome.tail
    assert not any(line.startswith("(Background on this error") for line in outcome.tail)
    assert outcome.outputs["from"] == PRE_CHANGE
    assert outcome.outputs["failed_in"] == f"upgrade {MERGE} -> 0bad0bad0bad"
    assert outcome.outputs["failed_revision"] == "0bad0bad0bad"
    # PostgreSQL: one transaction around the whole upgrade, nothing of it stays;
    # SQLite commits DDL as it goes, MariaDB each migration with its version row, so the merge stays applied.
    assert outcome.outputs["to"] == last_applied
    db.connections.dispose()


def test_unknown_revision_fails_before_running(pre_change: AlembicHarness) -> None:
    outcome = pre_change.run("upgrade", "head,feedbeef0000")
    assert not outcome.ok
    assert outcome.error == (
        "upgrade to head,feedbeef0000 failed: CommandError: Can't locate revision identified by 'feedbeef0000'"
    )
    assert outcome.outputs == {}
    assert pre_change.run("current").outputs["from"] == PRE_CHANGE


def test_url_from_the_ini_when_no_connection(sqlite_url: str, tmp_path: Path) -> None:
    make_project(tmp_path / "proj", url=sqlite_url)
    harness = AlembicHarness("sqlite://", tmp_path)
    outcome = KIND.run(AlembicParams(config="proj/alembic.ini", command="upgrade", target=A), harness.ctx)
    assert outcome.ok, outcome.error
    assert outcome.outputs["to"] == A
    assert AlembicHarness(sqlite_url, tmp_path).tables() == {"customers", "soft_delete"}


def test_missing_config_is_a_failed_outcome(tmp_path: Path, sqlite_url: str) -> None:
    outcome = AlembicHarness(sqlite_url, tmp_path).run("current")
    assert not outcome.ok and outcome.error == (
        f"alembic config proj/alembic.ini not found: no file {tmp_path}/proj/alembic.ini "
        "(a relative config starts at the runbook's directory)"
    )


def test_env_py_that_reconfigures_logging_gets_a_note(sqlite_url: str, tmp_path: Path) -> None:
    # What an unguarded fileConfig does to the capture handler.
    make_project(tmp_path / "proj", env_extra="logging.getLogger('alembic').handlers.clear()")
    harness = AlembicHarness(sqlite_url, tmp_path)
    logger = logging.getLogger("alembic")
    before = (logger.propagate, logger.level, list(logger.handlers))
    outcome = harness.run("upgrade", BASE)
    assert outcome.ok, outcome.error
    assert any(line.startswith("note: env.py reconfigured logging") for line in harness.lines)
    assert (logger.propagate, logger.level, logger.handlers) == before


CHATTY_APP = """
import logging

# What MLflow does on import: its own handler on the alembic logger, replacing any.
handler = logging.FileHandler({log!r})
for name in ("alembic", "alembic.runtime.migration"):
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
"""


def test_handlers_an_application_attaches_to_alembic_never_see_its_log(sqlite_url: str, tmp_path: Path) -> None:
    """env.py imports an application that logs alembic to its own handler: the step keeps every line."""
    app = f"chatty_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / "proj").mkdir()
    app_log = tmp_path / "app.log"
    (tmp_path / "proj" / f"{app}.py").write_text(CHATTY_APP.format(log=str(app_log)))
    make_project(tmp_path / "proj", env_extra=f"import sys; sys.path.insert(0, {str(tmp_path / 'proj')!r}); import {app}")
    loggers = [logging.getLogger(name) for name in ("alembic", "alembic.runtime.migration")]
    before = [(lg.propagate, lg.level, list(lg.handlers)) for lg in loggers]
    harness = AlembicHarness(sqlite_url, tmp_path)

    preview = harness.run("upgrade", A, dry_run=True)
    assert preview.ok, preview.error
    upgrade = harness.run("upgrade", A)
    assert upgrade.ok, upgrade.error
    assert f"Running upgrade {BASE} -> {A}, add_soft_delete" in harness.lines
    assert not any(line.startswith("note:") for line in harness.lines)
    # Also the handlers that were there before the step are back, and nothing reached the application's.
    assert [(lg.propagate, lg.level, lg.handlers) for lg in loggers] == before
    assert app_log.read_text() == ""


def test_password_never_appears_in_the_error(tmp_path: Path) -> None:
    make_project(tmp_path / "proj")
    password = "S3cret-Pa55word"
    harness = AlembicHarness(f"postgresql://runbook:{password}@127.0.0.1:{closed_port()}/app", tmp_path)
    outcome = harness.run("upgrade", "head")
    assert not outcome.ok and outcome.error
    assert outcome.error.startswith("upgrade to head failed: OperationalError: ")
    assert "\n" not in outcome.error
    assert all(password not in text for text in [outcome.error, *outcome.tail, *harness.lines])


def test_offline_sql_names_the_revision_that_cannot_render(sqlite_url: str, tmp_path: Path) -> None:
    """A migration that reads data cannot render as --sql: the dry run says which one, and still predicts."""
    make_project(tmp_path / "proj")
    write_revision(
        tmp_path / "proj" / "migrations" / "versions", "0dada0dada00", MERGE, "reads_data",
        "    op.get_bind().execute(sa.text('SELECT COUNT(*) FROM customers')).scalar()",
    )
    harness = AlembicHarness(sqlite_url, tmp_path)
    assert harness.run("upgrade", MERGE).ok
    outcome = harness.run("upgrade", "head", dry_run=True)
    assert outcome.ok, outcome.error
    assert outcome.outputs["sql"] is None
    assert outcome.outputs["sql_error"].startswith(f"upgrade {MERGE} -> 0dada0dada00 (reads_data) cannot render offline: ")
    assert f"offline SQL not available: {outcome.outputs['sql_error']}" in harness.lines
    assert outcome.outputs["would_apply"] == ["0dada0dada00: reads_data"]


def test_step_and_check_resolve_a_relative_script_location_as_alembic_does(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """script_location without %(here)s is relative to the working directory, for the step, the check and alembic."""
    make_project(tmp_path / "proj", script_location="proj/migrations")
    harness = AlembicHarness(sqlite_url, tmp_path)
    check_ctx = CheckContext(workdir=tmp_path, env={}, masker=harness.masker, connections=harness.connections)
    at_head = AlembicRevisionParams(connection="db", at_head=True, config="proj/alembic.ini")

    monkeypatch.chdir(tmp_path)
    assert harness.run("upgrade", "heads").ok
    assert CHECK.evaluate(at_head, check_ctx) == CheckResult(True, MERGE, f"head {MERGE}")

    # From the ini's own folder, alembic itself would not find proj/migrations: neither do the step and the check.
    monkeypatch.chdir(tmp_path / "proj")
    outcome = harness.run("current")
    assert not outcome.ok and outcome.error
    assert outcome.error.startswith(f"script_location 'proj/migrations' of {tmp_path}/proj/alembic.ini is not a directory under the working directory {tmp_path}/proj")
    result = CHECK.evaluate(at_head, check_ctx)
    assert (result.ok, result.observed, result.error) == (False, None, outcome.error)
    assert result.shortfall == f"error: {outcome.error}"
