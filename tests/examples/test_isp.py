"""The ISP demo application (examples/isp), driven through its real CLI.

Every command runs as a subprocess of ``ispctl.py`` or ``alembic`` against a
real SQLite file or PostgreSQL database; the database URL travels in the
environment, as an operator would pass it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from tests.conftest import stop_demo_server

if TYPE_CHECKING:
    from tests.conftest import SeededDemoDatabases

ISP_DIR = Path(__file__).resolve().parents[2] / "examples" / "isp"
ISPCTL = ISP_DIR / "ispctl.py"
ALEMBIC_INI = ISP_DIR / "alembic.ini"
RESOLVE_SQL = (ISP_DIR / "sql" / "resolve_subscriber.sql").read_text()
# Bounds around every id: plan_subscriptions ids are UUID strings.
ALL_IDS = {"lo": "00000000-0000-0000-0000-000000000000", "hi": "ffffffff-ffff-ffff-ffff-ffffffffffff"}
SUBSCRIPTIONS_PATH = "/api/v1/services/internet-plans/subscriptions"
SEED_UPGRADE_LINES = [
    "INFO  [alembic.runtime.migration] Running upgrade c64d9a16fa9d -> ee4f9c4fb5b3, "
    "add_subscriber_id_to_plan_subscriptions",
    "INFO  [alembic.runtime.migration] Running upgrade ee4f9c4fb5b3, c6b208ba7659 -> fdf1b7f6bbe1, "
    "merge_subscriber_id_and_audit_columns",
]
SEED_ERROR = 'ProgrammingError: column "subscriber_id" does not exist'
CASES = {
    "single_active",
    "active_plus_inactive",
    "deleted_plus_active",
    "multi_active",
    "no_subscribers",
    "inactive_only",
    "deleted_only",
}


@dataclass
class Isp:
    """One demo installation: a database and a home directory, driven by subprocesses."""

    db_url: str
    home: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "ISP_DATABASE_URL": self.db_url, "ISP_HOME": str(self.home)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, str(ISPCTL), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.home.parent,  # not the repository root: ispctl must work from anywhere
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ispctl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.run(*args).stdout)

    def alembic(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.home.parent,
        )
        assert result.returncode == 0, result.stderr
        return result

    def log(self, name: str) -> str:
        return (self.home / "logs" / name).read_text()

    def query(self, sql: str, **params: Any) -> list[sa.Row[Any]]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))
        finally:
            engine.dispose()

    def execute(self, sql: str, params: dict[str, Any] | list[dict[str, Any]]) -> None:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql), params)
        finally:
            engine.dispose()


@pytest.fixture
def isp(db_url: str, tmp_path: Path) -> Iterator[Isp]:
    """A fresh installation on SQLite and on PostgreSQL; its API server is stopped afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    yield Isp(db_url, home)
    stop_demo_server(home)


@pytest.fixture
def sqlite_isp(sqlite_url: str, tmp_path: Path) -> Iterator[Isp]:
    """A fresh installation on SQLite only, for behaviour that does not depend on the database."""
    home = tmp_path / "home"
    home.mkdir()
    yield Isp(sqlite_url, home)
    stop_demo_server(home)


SEEDED_ROWS, SEEDED_SEED = 200, 11


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded_isp(request: pytest.FixtureRequest, tmp_path: Path, seeded_demo_databases: SeededDemoDatabases) -> Iterator[Isp]:
    """An installation after ``ispctl init`` and ``ispctl generate --rows 200 --seed 11``, on SQLite
    and on PostgreSQL: a fresh copy of a database seeded once per session (the tests of init and
    generate themselves use ``isp``)."""
    home = tmp_path / "home"
    home.mkdir()
    with seeded_demo_databases.copy(request.param, tmp_path / "isp.db", rows=SEEDED_ROWS, seed=SEEDED_SEED) as url:
        yield Isp(url, home)
        stop_demo_server(home)


def schema_snapshot(url: str) -> dict[str, Any]:
    """Everything the inspector reports about every table, in a comparable form."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        by_name = lambda items: sorted(items, key=lambda item: str(item.get("name")))  # noqa: E731
        snapshot = {
            table: {
                "columns": inspector.get_columns(table),
                "pk": inspector.get_pk_constraint(table),
                "fks": by_name(inspector.get_foreign_keys(table)),
                "indexes": by_name(inspector.get_indexes(table)),
                "unique": by_name(inspector.get_unique_constraints(table)),
            }
            for table in sorted(inspector.get_table_names())
        }
    finally:
        engine.dispose()
    return json.loads(json.dumps(snapshot, default=repr, sort_keys=True))


def running_lines(alembic_output: str) -> list[str]:
    return [line for line in alembic_output.splitlines() if "Running " in line]


def post(port: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{SUBSCRIPTIONS_PATH}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        return json.load(response)


def customer_with_one_active_subscriber(isp: Isp) -> tuple[str, str, str]:
    """(customer id, its only active live subscriber, a plan id) from the generated data."""
    row = isp.query(
        "SELECT s.customer_id, MIN(s.id) AS subscriber_id, (SELECT MIN(id) FROM internet_plans) AS plan_id"
        " FROM subscribers s WHERE s.deleted_at IS NULL AND s.status = 'active'"
        " GROUP BY s.customer_id HAVING COUNT(*) = 1 ORDER BY s.customer_id LIMIT 1"
    )[0]
    return row.customer_id, row.subscriber_id, row.plan_id


def backfill(isp: Isp) -> None:
    """What the runbook's backfill does with resolve_subscriber.sql: set every resolvable row."""
    rows = isp.query(RESOLVE_SQL, **ALL_IDS)
    updates = [{"k": row.key, "v": row.value} for row in rows if row.value is not None]
    isp.execute("UPDATE plan_subscriptions SET subscriber_id = :v WHERE id = :k", updates)


class TestMigrations:
    def test_upgrade_heads_runs_the_seed_migrations(self, isp: Isp) -> None:
        """From the pre-change state, `alembic upgrade heads` prints the seed's lines and adds column, FK, index."""
        assert isp.json("init") == {"alembic_current": ["c64d9a16fa9d", "c6b208ba7659"]}
        upgrade = isp.alembic("upgrade", "heads")
        assert running_lines(upgrade.stderr) == SEED_UPGRADE_LINES
        assert isp.alembic("current").stdout.split()[0] == "fdf1b7f6bbe1"
        snapshot = schema_snapshot(isp.db_url)["plan_subscriptions"]
        column = next(c for c in snapshot["columns"] if c["name"] == "subscriber_id")
        assert column["nullable"] is True and "VARCHAR" in column["type"]
        assert {"name": "fk_plan_subscriptions_subscriber_id", "referred_table": "subscribers"}.items() <= next(
            fk for fk in snapshot["fks"] if fk["constrained_columns"] == ["subscriber_id"]
        ).items()
        assert "ix_plan_subscriptions_subscriber_id" in {ix["name"] for ix in snapshot["indexes"]}
        if isp.db_url.startswith("postgresql"):
            # The seed's own verification queries, and the NOT VALID constraint was validated.
            assert isp.query(
                "SELECT is_nullable, data_type FROM information_schema.columns"
                " WHERE table_name = 'plan_subscriptions' AND column_name = 'subscriber_id'"
            ) == [("YES", "character varying")]
            assert isp.query(
                "SELECT constraint_type FROM information_schema.table_constraints"
                " WHERE constraint_name = 'fk_plan_subscriptions_subscriber_id'"
            ) == [("FOREIGN KEY",)]
            assert isp.query(
                "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_plan_subscriptions_subscriber_id'"
            ) == [(True,)]

    def test_downgrade_to_c64d9a16fa9d_restores_the_schema_exactly(self, isp: Isp) -> None:
        """The seed's target c6b208ba7659 only undoes the merge; c64d9a16fa9d restores the schema exactly."""
        isp.run("init")
        before = schema_snapshot(isp.db_url)
        isp.alembic("upgrade", "heads")
        seed_target = isp.alembic("downgrade", "c6b208ba7659")
        assert [line.split("] ")[1] for line in running_lines(seed_target.stderr)] == [
            "Running downgrade fdf1b7f6bbe1 -> ee4f9c4fb5b3, c6b208ba7659, merge_subscriber_id_and_audit_columns",
        ]
        columns = schema_snapshot(isp.db_url)["plan_subscriptions"]["columns"]
        assert "subscriber_id" in {c["name"] for c in columns}

        downgrade = isp.alembic("downgrade", "c64d9a16fa9d")
        assert [line.split("] ")[1] for line in running_lines(downgrade.stderr)] == [
            "Running downgrade ee4f9c4fb5b3 -> c64d9a16fa9d, add_subscriber_id_to_plan_subscriptions",
        ]
        assert schema_snapshot(isp.db_url) == before
        assert sorted(isp.alembic("current").stdout.split()) == ["c64d9a16fa9d", "c6b208ba7659"]


class TestGenerate:
    def test_generates_every_hard_case_deterministically(self, isp: Isp, tmp_path: Path) -> None:
        """Same rows and seed give the same data on both databases, every case, and the resolve SQL agrees."""
        isp.run("init")
        summary = isp.json("generate", "--rows", "300", "--seed", "7")
        assert set(summary["cases"]) == CASES
        assert all(counts["customers"] > 0 for counts in summary["cases"].values())
        assert sum(summary["resolution"].values()) == 300

        twin = Isp(f"sqlite:///{tmp_path / 'twin.db'}", tmp_path / "twin-home")
        twin.run("init")
        assert twin.json("generate", "--rows", "300", "--seed", "7") == summary
        for installation in (isp, twin):
            installation.alembic("upgrade", "heads")  # the resolve SQL reads subscriber_id
        resolved = isp.query(RESOLVE_SQL, **ALL_IDS)
        assert resolved == twin.query(RESOLVE_SQL, **ALL_IDS)
        subscribers = (
            "SELECT id, customer_id, status, CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END AS deleted"
            " FROM subscribers ORDER BY id"
        )
        assert isp.query(subscribers) == twin.query(subscribers)

        assert len(resolved) == 300
        assert sum(1 for r in resolved if r.candidates == 1) == summary["resolution"]["resolved"]
        assert sum(1 for r in resolved if r.candidates > 1) == summary["resolution"]["ambiguous"]
        assert sum(1 for r in resolved if r.value is None) == summary["resolution"]["unresolved"]
        chosen = isp.query(
            "SELECT s.status, s.deleted_at FROM subscribers s WHERE s.id IN ("
            + ", ".join(f"'{r.value}'" for r in resolved if r.value is not None)
            + ")"
        )
        assert {(status, deleted_at) for status, deleted_at in chosen} == {("active", None)}

    def test_refuses_to_generate_twice(self, sqlite_isp: Isp) -> None:
        """A second generate would collide with the deterministic ids: it is refused."""
        sqlite_isp.run("init")
        sqlite_isp.run("generate", "--rows", "20")
        again = sqlite_isp.run("generate", "--rows", "20", check=False)
        assert again.returncode == 1
        assert "plan_subscriptions is not empty" in again.stderr


class TestApi:
    def test_v2_on_migrated_database_creates_subscription_with_subscriber_id(self, seeded_isp: Isp) -> None:
        """v2 after the migration answers 201 with subscriber_id, and 422 for another customer's subscriber."""
        isp = seeded_isp
        isp.alembic("upgrade", "heads")
        port = isp.json("up", "--version", "v2")["port"]
        customer, subscriber, plan = customer_with_one_active_subscriber(isp)
        body = {"plan_id": plan, "customer_id": customer, "start_date": "2025-10-29T00:00:00Z"}

        status, created = post(port, {**body, "subscriber_id": subscriber})
        assert status == 201
        assert created["subscriber_id"] == subscriber and created["customer_id"] == customer
        assert isp.query("SELECT subscriber_id FROM plan_subscriptions WHERE id = :id", id=created["id"]) == [
            (subscriber,)
        ]

        stranger = isp.query("SELECT id FROM subscribers WHERE customer_id <> :c LIMIT 1", c=customer)[0].id
        assert post(port, {**body, "subscriber_id": stranger})[0] == 422
        assert post(port, body) == (422, {"detail": "subscriber_id is required"})
        log = isp.log("api-server.log")
        assert f"ValueError: Subscriber {stranger} not found for customer {customer}" in log
        assert "startup self-check passed" in log and "ProgrammingError" not in log

    def test_v2_before_the_migration_fails_like_the_seed(self, seeded_isp: Isp) -> None:
        """v2 on the old schema logs the seed's ProgrammingError at start and per request, and answers 500."""
        isp = seeded_isp
        port = isp.json("up", "--version", "v2")["port"]
        assert health(port) == {"status": "ok", "version": "v2"}
        assert f"startup self-check failed: {SEED_ERROR}" in isp.log("api-server.log")
        customer, subscriber, plan = customer_with_one_active_subscriber(isp)
        status, answer = post(
            port,
            {"plan_id": plan, "customer_id": customer, "subscriber_id": subscriber, "start_date": "2025-10-29"},
        )
        assert (status, answer) == (500, {"detail": "internal server error"})
        failures = [line for line in isp.log("api-server.log").splitlines() if "POST" in line and SEED_ERROR in line]
        assert len(failures) == 1
        assert re.search(r"ProgrammingError.*subscriber_id", failures[0])  # the seed's grep

        job = isp.run("job", "process_usage_billing", check=False)
        assert job.returncode == 1 and SEED_ERROR in job.stderr
        assert SEED_ERROR in isp.log("celery-worker.log")

    def test_v1_works_before_and_after_the_migration(self, seeded_isp: Isp) -> None:
        """v1 ignores subscriber_id and creates subscriptions on the old and the new schema."""
        isp = seeded_isp
        port = isp.json("up", "--version", "v1")["port"]
        customer, subscriber, plan = customer_with_one_active_subscriber(isp)
        body = {"plan_id": plan, "customer_id": customer, "subscriber_id": subscriber, "start_date": "2025-10-29"}
        status, before = post(port, body)
        assert status == 201 and "subscriber_id" not in before

        isp.alembic("upgrade", "heads")  # migration first, code later: the seed's order
        status, after = post(port, body)
        assert status == 201 and "subscriber_id" not in after
        assert isp.query("SELECT subscriber_id FROM plan_subscriptions WHERE id = :id", id=after["id"]) == [(None,)]
        assert "ProgrammingError" not in isp.log("api-server.log")


class TestJobs:
    @pytest.mark.slow
    def test_jobs_follow_the_deployed_version(self, seeded_isp: Isp) -> None:
        """Jobs print their JSON; under v2 unset rows are skipped as subscriber_id_not_set until backfilled."""
        isp = seeded_isp
        first_ten = "SELECT id FROM plan_subscriptions WHERE status = 'active' ORDER BY id LIMIT 10"
        # v1's arbitrary lookup finds somebody unless the customer has no subscriber at all.
        (without_any,) = isp.query(
            f"SELECT COUNT(*) FROM plan_subscriptions ps WHERE ps.id IN ({first_ten})"
            " AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.customer_id = ps.customer_id)"
        )[0]
        v1 = isp.json("job", "process_usage_billing", "--limit", "10")
        assert v1 == {"task": "process_usage_billing", "processed": 10 - without_any, "skipped": without_any, "failed": 0}

        isp.alembic("upgrade", "heads")
        isp.run("up", "--version", "v2")
        unset = isp.json("job", "process_usage_billing", "--limit", "10")
        assert unset == {"task": "process_usage_billing", "processed": 0, "skipped": 10, "failed": 0}
        worker_log = isp.log("celery-worker.log")
        not_set = [line for line in worker_log.splitlines() if "subscriber_id_not_set" in line]
        assert len(not_set) == 10 and all("WARNING [usage_billing]" in line for line in not_set)
        assert '"processed": 0, "skipped": 10, "failed": 0' in worker_log

        backfill(isp)
        (unresolved,) = isp.query(
            f"SELECT COUNT(*) FROM plan_subscriptions WHERE id IN ({first_ten}) AND subscriber_id IS NULL"
        )[0]
        billed = isp.json("job", "process_usage_billing", "--limit", "10")
        assert (billed["processed"], billed["skipped"], billed["failed"]) == (10 - unresolved, unresolved, 0)
        monitored = isp.json("job", "monitor_data_cap_usage", "--limit", "10")
        assert set(monitored) == {"task", "processed", "skipped", "failed", "alerts_created"}
        assert monitored["processed"] == 10 - unresolved
        assert "[usage_monitoring]" in isp.log("celery-worker.log")

        # A backfill that ignored soft deletes: v2 refuses to bill the deleted subscriber.
        deleted = isp.query("SELECT id FROM subscribers WHERE deleted_at IS NOT NULL ORDER BY id LIMIT 1")[0].id
        first = isp.query(first_ten)[0].id
        isp.execute("UPDATE plan_subscriptions SET subscriber_id = :s WHERE id = :id", {"s": deleted, "id": first})
        assert isp.json("job", "process_usage_billing", "--limit", "10")["failed"] == 1
        assert f"subscriber_deleted subscription_id={first} " in isp.log("celery-worker.log")


class TestLifecycle:
    @pytest.mark.slow
    def test_deploy_switches_versions_and_reset_clears_everything(self, sqlite_isp: Isp) -> None:
        """deploy replaces the server on the same port (health shows the new version); reset undoes it all."""
        isp = sqlite_isp
        isp.run("init")
        port = isp.json("up", "--version", "v1")["port"]
        assert health(port)["version"] == "v1"

        deployed = isp.json("deploy", "--to", "v2")
        assert (deployed["version"], deployed["previous"], deployed["port"]) == ("v2", "v1", port)
        assert health(port) == {"status": "ok", "version": "v2"}
        status = isp.json("status")
        assert (status["version"], status["alive"], status["pid"]) == ("v2", True, deployed["pid"])

        assert isp.json("deploy", "--to", "v1")["previous"] == "v2"
        assert health(port)["version"] == "v1"
        assert json.loads((isp.home / "app.json").read_text()) == {"version": "v1", "port": port}

        isp.json("reset")
        status = isp.json("status")
        assert status == {**status, "version": None, "pid": None, "alive": False, "alembic_current": []}
        assert not (isp.home / "logs").exists()

    def test_backup_writes_a_dump(self, seeded_isp: Isp) -> None:
        """backup writes <home>/backups/<dbname>-<UTC timestamp>.<ext> holding the data, and prints its path."""
        isp = seeded_isp
        made = isp.run("backup")
        path = Path(made.stdout.strip())
        assert path.parent == isp.home / "backups" and path.stat().st_size > 0
        database = sa.make_url(isp.db_url).database
        assert re.fullmatch(rf"{re.escape(Path(database).stem)}-\d{{8}}T\d{{6}}Z\.(sqlite3|sql|json)", path.name)
        if path.suffix == ".sqlite3":
            copy = Isp(f"sqlite:///{path}", isp.home)
            assert copy.query("SELECT COUNT(*) FROM plan_subscriptions") == [(SEEDED_ROWS,)]
        elif path.suffix == ".sql":
            assert "CREATE TABLE public.plan_subscriptions" in path.read_text()
        else:
            dump = json.loads(path.read_text())
            assert len(dump["tables"]["plan_subscriptions"]["rows"]) == SEEDED_ROWS
            assert "wrote a logical dump instead" in made.stderr

    def test_errors_never_show_the_password(self, tmp_path: Path) -> None:
        """A failing connection is reported on one line without the URL's password."""
        isp = Isp("postgresql+psycopg://ops:s3cr3t-pw@127.0.0.1:1/isp", tmp_path / "home")
        result = isp.run("status", check=False)
        assert result.returncode == 1
        assert result.stderr.startswith("ispctl: error: ") and len(result.stderr.splitlines()) == 1
        assert "s3cr3t-pw" not in result.stderr + result.stdout
