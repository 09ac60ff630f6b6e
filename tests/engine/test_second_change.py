"""The second change of issue 12, written from the docs and run as a team runs it.

``runbooks/orders-customer-fk.yaml`` on ``examples/orders``: alembic revision B
adds the nullable orders.customer_id with its foreign key, a backfill fills it,
revision C makes it NOT NULL, then application v2 is deployed (after a
confirmation) and verified. The target database is a real PostgreSQL database;
the state store is shared by two working directories (two checkouts of the
project, as two operators have), on PostgreSQL through ``--state`` and, where
cheap, on a SQLite file. The application's own state (current version, deploy
log, backups) lives in one shared directory, the "server". Every ``runbook`` is
a real subprocess, started in one checkout or the other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.state import StateStore
from runbook.state.store import RunRecord
from tests.reliability.conftest import Live

# Each test starts 3-6 `runbook` processes and runs alembic: 5-20 s on a loaded machine.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NAME = "orders-customer-fk"
A, B, C = "3a1f0c2e7b10", "7d4e2b9c1a55", "c90b5e6f2d31"
CUSTOMERS, ORDERS = 200, 3000
BEFORE_DEPLOY = ["backup", "add_column", "backfill", "not_null"]


@dataclass
class Checkout:
    """One operator's working directory: runbooks/, steps/ and examples/orders/."""

    root: Path
    team: Team

    def runbook(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args, "--state", self.team.state_url],
            cwd=self.root,
            env=self.team.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def spawn(self, *args: str) -> Live:
        return Live([sys.executable, "-m", "runbook", *args, "--state", self.team.state_url], self.root, self.team.env())

    def tool(self, *argv: str) -> str:
        out = subprocess.run([sys.executable, *argv], cwd=self.root, env=self.team.env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout


@dataclass
class Team:
    db_url: str
    state_url: str
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "ORDERS_"))}
        env.update(ORDERS_DATABASE_URL=self.db_url, ORDERS_HOME=str(self.home), RUNBOOK_PYTHON=sys.executable)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def store(self) -> StateStore:
        return StateStore.open(self.state_url)

    def run(self) -> RunRecord:
        with self.store() as store:
            runs = store.list_runs(NAME, "default", limit=1)
        assert runs, "no run recorded"
        return runs[0]

    def attempts(self, run_id: str) -> dict[str, list[str]]:
        """Per step, the statuses of its step attempts, oldest first."""
        out: dict[str, list[str]] = {}
        with self.store() as store:
            for attempt in store.attempts(run_id):
                if attempt.kind == "step":
                    out.setdefault(attempt.step_id, []).append(attempt.status)
        return out

    def scalar(self, query: str) -> object:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(query)).scalar()
        finally:
            engine.dispose()

    def execute(self, *statements: str) -> None:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()

    def deploys(self) -> list[str]:
        log = self.home / "deploys.log"
        return log.read_text().splitlines() if log.exists() else []

    def backups(self) -> int:
        return len(list((self.home / "backups").glob("*"))) if (self.home / "backups").exists() else 0


def _checkout(root: Path, team: Team) -> Checkout:
    for part in ("runbooks", "steps"):
        shutil.copytree(ROOT / part, root / part)
    shutil.copytree(ROOT / "examples" / "orders", root / "examples" / "orders", ignore=shutil.ignore_patterns("var", "__pycache__"))
    return Checkout(root, team)


def _team(tmp_path: Path, db_url: str, state_url: str) -> tuple[Team, Checkout, Checkout]:
    team = Team(db_url, state_url, tmp_path / "server")
    one, two = _checkout(tmp_path / "alice", team), _checkout(tmp_path / "bob", team)
    one.tool("examples/orders/ordersctl.py", "init")
    one.tool("examples/orders/ordersctl.py", "seed", "--customers", str(CUSTOMERS), "--orders", str(ORDERS))
    one.tool("examples/orders/ordersctl.py", "deploy", "--to", "v1")
    return team, one, two


@pytest.fixture(params=["postgresql", "sqlite"])
def team(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Iterator[tuple[Team, Checkout, Checkout]]:
    """The orders database at revision A with data, v1 deployed; two checkouts sharing a state store."""
    if request.param == "postgresql":
        state_url = request.getfixturevalue("other_pg_url")
    else:
        (tmp_path / "shared").mkdir()
        state_url = f"sqlite:///{tmp_path / 'shared' / 'state.db'}"
    yield _team(tmp_path, pg_url, state_url)


@pytest.fixture
def pg_team(tmp_path: Path, pg_url: str, other_pg_url: str) -> tuple[Team, Checkout, Checkout]:
    """As ``team``, with the state store on PostgreSQL only."""
    return _team(tmp_path, pg_url, other_pg_url)


def _every_order_has_its_customer(team: Team) -> None:
    wrong = team.scalar(
        "SELECT COUNT(*) FROM orders o LEFT JOIN customers c ON c.email = o.customer_email"
        " WHERE o.customer_id IS DISTINCT FROM c.id"
    )
    assert wrong == 0
    assert team.scalar("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'customer_id'") == "NO"
    assert team.scalar("SELECT version_num FROM alembic_version") == C


# ------------------------------------------------------------------ paused at the deploy


def test_pause_at_the_deploy_approve_and_resume_from_the_other_checkout(team: tuple[Team, Checkout, Checkout]) -> None:
    """Alice's run (no terminal) does B, the backfill and C, then pauses at the deploy's
    confirmation (exit 4). Bob approves and resumes from his checkout: the deploy runs
    once, nothing before it runs again, and B's gate `nullable: true`, which C made
    false on purpose, is not re-checked (the frontier is C), so it cannot dead-end."""
    shared, alice, bob = team
    paused = alice.runbook("run", NAME)
    assert paused.returncode == 4, paused.stdout[-3000:] + paused.stderr
    run = shared.run()
    assert run.status == "awaiting_approval"
    assert f"runbook approve {run.run_id} deploy" in paused.stdout
    assert shared.attempts(run.run_id) == {**{s: ["passed"] for s in BEFORE_DEPLOY}, "deploy": ["awaiting_approval"]}
    assert len(shared.deploys()) == 1  # only the setup's v1

    # Bob's checkout sees the same run: a new run there is refused, naming it.
    second = bob.runbook("run", NAME)
    assert second.returncode == 3 and run.run_id in second.stderr, second.stdout + second.stderr

    approved = bob.runbook("approve", run.run_id, "deploy", "--comment", "release window open")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    resumed = bob.runbook("run", NAME, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr

    out = resumed.stdout
    assert "[not_null] gate (re-check) ✔ orders.customer_id is NOT NULL" in out
    assert "[add_column] gate (re-check)" not in out and "[backfill] gate (re-check)" not in out
    for step in BEFORE_DEPLOY:
        assert f"✔ [{step}] passed: passed earlier" in out
    assert shared.attempts(run.run_id) == {
        **{s: ["passed"] for s in BEFORE_DEPLOY},
        "deploy": ["awaiting_approval", "passed"],
        "verify": ["passed"],
    }
    assert [line.split(" ", 1)[1] for line in shared.deploys()] == ["- -> v1", "v1 -> v2"]
    assert shared.backups() == 1
    assert shared.run().status == "passed"
    _every_order_has_its_customer(shared)


# ------------------------------------------------------------------ kill -9 mid-backfill


def _count_updates_trigger(team: Team) -> None:
    """Every committed UPDATE of an order adds its id to update_audit (migrations update no rows)."""
    team.execute(
        "CREATE TABLE update_audit (id INTEGER NOT NULL)",
        "CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN INSERT INTO update_audit (id) VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER count_updates AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION count_updates()",
    )


def _kill_when_backfill_passes(team: Team, live: Live, key: int) -> int:
    """SIGKILL the run once its backfill checkpoint is past ``key``; returns the checkpointed key."""
    deadline = time.monotonic() + 120
    with team.store() as store:
        run_id = None
        while True:
            assert live.proc.poll() is None, "the run ended before the backfill got that far:\n" + live.stdout[-3000:] + live.stderr
            assert time.monotonic() < deadline, "the backfill never got that far:\n" + live.stdout[-3000:]
            if run_id is None:
                owner = store.owner_run(NAME, "default")
                run_id = owner.run_id if owner else None
            saved = store.load_checkpoint(run_id, "backfill") if run_id else None
            if saved is not None and saved["last_key"] is not None and _last_key(saved) >= key:
                break
            time.sleep(0.005)
        assert live.kill() == -9
        saved = store.load_checkpoint(run_id, "backfill")
    assert saved is not None
    return _last_key(saved)


def _last_key(saved: dict) -> int:
    """The checkpoint's last key (format 2 keeps a key as a JSON list of its columns)."""
    last = saved["last_key"]
    return int(last[0] if isinstance(last, list) else last)


def test_kill_mid_backfill_then_resume_from_the_other_checkout(pg_team: tuple[Team, Checkout, Checkout]) -> None:
    """Alice's run is SIGKILLed while the backfill runs (100-row batches, 20 ms apart),
    once its checkpoint is past 30 % of the orders; Bob resumes: the backfill goes on
    after the checkpoint, every order is updated exactly once (a trigger counts the
    committed updates per row), C and the deploy run once, nothing before re-runs."""
    shared, alice, bob = pg_team
    _count_updates_trigger(shared)
    live = alice.spawn("run", NAME, "--yes", "--var", "batch_size=100", "--var", "max_batch=100", "--var", "throttle=20ms")
    stopped_at = _kill_when_backfill_passes(shared, live, int(ORDERS * 0.3))
    assert 0 < stopped_at < ORDERS
    done = shared.scalar("SELECT COUNT(*) FROM update_audit")
    assert isinstance(done, int) and stopped_at <= done < ORDERS
    run = shared.run()
    assert run.status == "running"  # a killed run never records its end
    assert shared.attempts(run.run_id)["backfill"] == ["running"]

    # The values the run started with (the --var batching) are replayed.
    resumed = bob.runbook("run", NAME, "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    assert "resuming after id" in resumed.stdout
    assert "[add_column] gate (re-check) ✔ orders.customer_id exists and is nullable" in resumed.stdout

    assert shared.scalar("SELECT COUNT(*) FROM (SELECT id FROM update_audit GROUP BY id HAVING COUNT(*) > 1) twice") == 0
    assert shared.scalar("SELECT COUNT(*) FROM update_audit") == ORDERS
    _every_order_has_its_customer(shared)
    assert shared.attempts(run.run_id) == {
        "backup": ["passed"],
        "add_column": ["passed"],
        "backfill": ["interrupted", "passed"],
        "not_null": ["passed"],
        "deploy": ["passed"],
        "verify": ["passed"],
    }
    assert len(shared.deploys()) == 2 and shared.deploys()[-1].endswith("v1 -> v2")
    assert shared.backups() == 1


# ------------------------------------------------------------------ a migration reverted by hand


def test_migration_reverted_by_hand_is_caught_before_the_deploy(pg_team: tuple[Team, Checkout, Checkout]) -> None:
    """The deploy fails after C (a deploy freeze); someone downgrades the database to A
    by hand; the resume from the other checkout is refused before the deploy runs,
    because C's gates (the frontier) no longer hold. Abandoning the run and starting
    again does the whole change."""
    shared, alice, bob = pg_team
    (shared.home / "FREEZE").write_text("quarter-end close")
    failed = alice.runbook("run", NAME, "--yes")
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr
    assert "deploys are frozen" in failed.stdout and "A deploy freeze is on" in failed.stdout
    run = shared.run()
    assert shared.attempts(run.run_id)["deploy"] == ["failed"]

    alice.tool("-m", "alembic", "-c", "examples/orders/alembic.ini", "downgrade", A)
    (shared.home / "FREEZE").unlink()
    refused = bob.runbook("run", NAME, "--resume", "--yes")
    assert refused.returncode == 3, refused.stdout[-3000:] + refused.stderr
    assert "step 'not_null' passed earlier but its gate" in refused.stderr
    assert "[deploy]" not in refused.stdout
    assert len(shared.deploys()) == 1  # only the setup's v1
    assert shared.attempts(run.run_id)["deploy"] == ["failed"]

    abandoned = bob.runbook("abandon", run.run_id, "--reason", "database downgraded by hand; starting over")
    assert abandoned.returncode == 0, abandoned.stdout + abandoned.stderr
    again = bob.runbook("run", NAME, "--yes")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert shared.deploys()[-1].endswith("v1 -> v2") and len(shared.deploys()) == 2
    _every_order_has_its_customer(shared)
