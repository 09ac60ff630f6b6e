"""The subscriber-fk runbook end to end on the demo application, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from tests.conftest import stop_demo_server

if TYPE_CHECKING:
    from tests.conftest import SeededDemoDatabases

ROOT = Path(__file__).resolve().parents[2]
ROWS = 600


@dataclass
class Demo:
    """A copy of the project's runbook, steps and demo app in a scratch directory."""

    root: Path
    db_url: str

    @property
    def home(self) -> Path:
        return self.root / "examples" / "isp" / "var"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ISP_"))}
        env.update(ISP_DATABASE_URL=self.db_url, ISP_HOME=str(self.home), RUNBOOK_PYTHON=sys.executable)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def ispctl(self, *args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "examples/isp/ispctl.py", *args], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {"out": out.stdout}

    def runbook(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    def scalar(self, query: str) -> object:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(query)).scalar()
        finally:
            engine.dispose()

    def schema(self) -> dict[str, object]:
        engine = sa.create_engine(self.db_url)
        try:
            inspector = sa.inspect(engine)
            return {
                table: (
                    sorted(c["name"] for c in inspector.get_columns(table)),
                    sorted(str(fk.get("name")) for fk in inspector.get_foreign_keys(table)),
                    sorted(str(ix.get("name")) for ix in inspector.get_indexes(table)),
                )
                for table in inspector.get_table_names()
                if table != "alembic_version"
            }
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest, tmp_path: Path, seeded_demo_databases: SeededDemoDatabases) -> Iterator[Demo]:
    """The demo app at v1 on a fresh database with generated data (a copy of one
    ``ispctl init`` + ``ispctl generate`` made once per session), server running."""
    for part in ("runbooks", "steps"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copytree(ROOT / "examples" / "isp", tmp_path / "examples" / "isp", ignore=shutil.ignore_patterns("var", "__pycache__"))
    with seeded_demo_databases.copy(request.param, tmp_path / "test.db", rows=ROWS, seed=42) as db_url:
        demo = Demo(tmp_path, db_url)
        demo.ispctl("up", "--version", "v1")
        try:
            yield demo
        finally:
            stop_demo_server(demo.home)


def _expected_unresolved(demo: Demo) -> object:
    return demo.scalar(
        "SELECT COUNT(*) FROM plan_subscriptions ps WHERE NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.customer_id = ps.customer_id"
        " AND s.deleted_at IS NULL AND s.status = 'active')"
    )


@pytest.mark.slow
def test_full_run_passes(demo: Demo) -> None:
    """runbook run subscriber-fk.yaml --yes carries out the whole change and every check passes."""
    result = demo.runbook("run", "subscriber-fk.yaml", "--yes")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert demo.ispctl("status")["version"] == "v2"
    assert demo.scalar("SELECT COUNT(*) FROM plan_subscriptions WHERE subscriber_id IS NULL") == _expected_unresolved(demo)
    assert "MAINTENANCE COMPLETE" in result.stdout


def test_deploy_alone_on_fresh_target_is_refused(demo: Demo) -> None:
    """--only deploy before the migration: exit 3, and the application stays at v1."""
    result = demo.runbook("run", "subscriber-fk.yaml", "--only", "deploy", "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "needs 'migrate'" in result.stdout
    assert demo.ispctl("status")["version"] == "v1"


@pytest.mark.slow
def test_code_deployed_around_the_runbook_is_caught_with_the_seed_hint(demo: Demo) -> None:
    """Deploying v2 by hand before the migration logs the seed's error; the post-deploy check catches it."""
    demo.ispctl("deploy", "--to", "v2")
    log = (demo.home / "logs" / "api-server.log").read_text()
    assert 'ProgrammingError: column "subscriber_id" does not exist' in log
    result = demo.runbook("run", "subscriber-fk.yaml", "--yes")
    assert result.returncode == 1, result.stdout[-4000:]
    assert "ProgrammingError" in result.stdout
    assert "Code was deployed before the migration" in result.stdout


@pytest.mark.slow
def test_backfill_failure_midway_then_resume_finishes_every_row(demo: Demo) -> None:
    """A batch failing mid-backfill stops the run; --resume continues from the checkpoint and every row is right."""
    paused = demo.runbook("run", "subscriber-fk.yaml", "--approve", "preflight", "--var", "batch_size=100")
    assert paused.returncode == 4, paused.stdout[-3000:]  # migrated, previewed, waiting to commit the backfill
    failing_id = demo.scalar(f"SELECT id FROM plan_subscriptions ORDER BY id LIMIT 1 OFFSET {ROWS // 2}")
    engine = sa.create_engine(demo.db_url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(sa.text(
                f"CREATE TRIGGER inject BEFORE UPDATE OF subscriber_id ON plan_subscriptions WHEN NEW.id = '{failing_id}' "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            ))
        else:
            conn.execute(sa.text(
                "CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
            ))
            conn.execute(sa.text(
                f"CREATE TRIGGER inject BEFORE UPDATE OF subscriber_id ON plan_subscriptions "
                f"FOR EACH ROW WHEN (NEW.id = '{failing_id}') EXECUTE FUNCTION inject()"
            ))
    failed = demo.runbook("run", "subscriber-fk.yaml", "--resume", "--approve", "backfill")
    assert failed.returncode == 1, failed.stdout[-3000:]
    assert "injected failure" in failed.stdout
    done_before = demo.scalar(f"SELECT COUNT(*) FROM plan_subscriptions WHERE subscriber_id IS NOT NULL AND id < '{failing_id}'")
    assert done_before and int(done_before) > 0  # committed batches stay committed
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER inject" + ("" if engine.dialect.name == "sqlite" else " ON plan_subscriptions")))
    engine.dispose()
    resumed = demo.runbook("run", "subscriber-fk.yaml", "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    wrong = demo.scalar(
        "SELECT COUNT(*) FROM plan_subscriptions ps WHERE COALESCE(ps.subscriber_id, '-') <> COALESCE(("
        "SELECT s.id FROM subscribers s WHERE s.customer_id = ps.customer_id AND s.deleted_at IS NULL AND s.status = 'active' "
        "ORDER BY s.created_at, s.id LIMIT 1), '-')"
    )
    assert wrong == 0


@pytest.mark.slow
def test_rollback_option_1_restores_the_schema(demo: Demo) -> None:
    """After the change, rollback option revert_migration leaves the schema exactly as before it."""
    before = demo.schema()
    assert demo.runbook("run", "subscriber-fk.yaml", "--yes").returncode == 0
    assert demo.schema() != before
    run_id = demo.runbook("history", "--limit", "1").stdout.splitlines()[1].split()[0]
    result = demo.runbook("rollback", run_id, "--option", "revert_migration", "--yes")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert demo.schema() == before
    assert demo.ispctl("status")["version"] == "v1"


@pytest.mark.slow
def test_rollback_option_fix_data_takes_string_ids_bound_safely(demo: Demo) -> None:
    """Option 3 re-resolves the subscriptions named by --var fix_subscription_ids (UUID strings);
    a value written to break out of a quoted list matches nothing and changes nothing."""
    assert demo.runbook("run", "subscriber-fk.yaml", "--yes").returncode == 0
    resolved = "SELECT id, subscriber_id FROM plan_subscriptions WHERE subscriber_id IS NOT NULL ORDER BY id"
    engine = sa.create_engine(demo.db_url)
    with engine.begin() as conn:
        first, second, third = conn.execute(sa.text(resolved + " LIMIT 3")).all()
        conn.execute(sa.text("UPDATE plan_subscriptions SET subscriber_id = NULL WHERE id IN (:a, :b, :c)"),
                     {"a": first.id, "b": second.id, "c": third.id})
        before = conn.execute(sa.text("SELECT id, subscriber_id FROM plan_subscriptions ORDER BY id")).all()
    run_id = demo.runbook("history", "--limit", "1").stdout.splitlines()[1].split()[0]

    hostile = f"{first.id}') OR ('1' = '1, x' OR 1=1 --"
    result = demo.runbook("rollback", run_id, "--option", "fix_data", "--var", f"fix_subscription_ids={hostile}", "--yes")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, subscriber_id FROM plan_subscriptions ORDER BY id")).all() == before

    result = demo.runbook("rollback", run_id, "--option", "fix_data", "--var", f"fix_subscription_ids={first.id}, {second.id}", "--yes")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    with engine.connect() as conn:
        fixed = dict(conn.execute(sa.text("SELECT id, subscriber_id FROM plan_subscriptions WHERE id IN (:a, :b, :c)"),
                                  {"a": first.id, "b": second.id, "c": third.id}).all())
        changed = conn.execute(sa.text("SELECT id, subscriber_id FROM plan_subscriptions ORDER BY id")).all()
    engine.dispose()
    assert fixed[first.id] is not None and fixed[second.id] is not None and fixed[third.id] is None
    assert {r.id for r in changed} == {r.id for r in before}
    assert [r for r in changed if r not in before] == [r for r in changed if r.id in (first.id, second.id)]
