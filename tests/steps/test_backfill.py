"""``kind: backfill`` against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from runbook.connections import Connections
from runbook.masking import Masker
from runbook.process import ProcessSupervisor
from runbook.steps import get_step_kind
from runbook.steps.backfill import KIND, BackfillParams
from runbook.steps.base import StepContext, StepOutcome

# customer -> its subscribers: (id, status, deleted_at, created_at)
SUBSCRIBERS: dict[str, list[tuple[str, str, datetime | None, datetime]]] = {
    "c-one": [("s-one", "active", None, datetime(2024, 1, 1))],
    "c-two": [
        ("s-two-new", "active", None, datetime(2024, 2, 1)),
        ("s-two-old", "active", None, datetime(2024, 1, 1)),
    ],
    "c-none": [],
    "c-deleted": [
        ("s-del-gone", "active", datetime(2024, 3, 1), datetime(2023, 1, 1)),
        ("s-del-live", "active", None, datetime(2024, 1, 1)),
    ],
    "c-suspended": [
        ("s-susp-off", "suspended", None, datetime(2023, 1, 1)),
        ("s-susp-live", "active", None, datetime(2024, 1, 1)),
    ],
    "c-only-deleted": [("s-only-gone", "active", datetime(2024, 3, 1), datetime(2023, 1, 1))],
}
CUSTOMERS = list(SUBSCRIBERS)
RESOLVED = {"c-one": "s-one", "c-deleted": "s-del-live", "c-suspended": "s-susp-live"}
CANDIDATES = {"c-one": 1, "c-two": 2, "c-none": 0, "c-deleted": 1, "c-suspended": 1, "c-only-deleted": 0}

# The rule of examples/isp/sql/resolve_subscriber.sql: live, active subscribers; oldest first.
RESOLVE = """
SELECT ps.id AS "key",
       (SELECT s.id FROM subscribers s
         WHERE s.customer_id = ps.customer_id AND s.deleted_at IS NULL AND s.status = 'active'
         ORDER BY s.created_at, s.id LIMIT 1) AS "value",
       (SELECT COUNT(*) FROM subscribers s
         WHERE s.customer_id = ps.customer_id AND s.deleted_at IS NULL AND s.status = 'active') AS candidates
  FROM plan_subscriptions ps
 WHERE ps.subscriber_id IS NULL AND ps.id BETWEEN :lo AND :hi
 ORDER BY ps.id
"""
# The same rule as one UPDATE (ambiguous left NULL); ``touched`` counts how often a row was written.
UPDATE = """
UPDATE plan_subscriptions
   SET subscriber_id = (SELECT CASE WHEN COUNT(*) = 1 THEN MIN(s.id) END FROM subscribers s
                         WHERE s.customer_id = plan_subscriptions.customer_id
                           AND s.deleted_at IS NULL AND s.status = 'active'),
       touched = touched + 1
 WHERE id BETWEEN :lo AND :hi AND subscriber_id IS NULL
"""
WHERE = "subscriber_id IS NULL"

metadata = sa.MetaData()
customers = sa.Table("customers", metadata, sa.Column("id", sa.String(36), primary_key=True))
subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("customer_id", sa.String(36), sa.ForeignKey("customers.id"), index=True),
    sa.Column("status", sa.String(20)),
    sa.Column("deleted_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime),
)
plan_subscriptions = sa.Table(
    "plan_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.String(36), sa.ForeignKey("customers.id")),
    sa.Column("subscriber_id", sa.String(36), nullable=True),
    sa.Column("touched", sa.Integer, nullable=False, server_default="0"),
)


def make_schema(url: str, rows: int) -> dict[int, str]:
    """Customers and subscribers above, ``rows`` subscriptions with gaps in the keys
    (id = 3i) and every 10th one already set by hand. Returns id -> customer."""
    engine = sa.create_engine(url)
    subs = [
        {"id": s, "customer_id": c, "status": st, "deleted_at": d, "created_at": cr}
        for c, rows_ in SUBSCRIBERS.items()
        for s, st, d, cr in rows_
    ]
    owners = {3 * i: CUSTOMERS[i % len(CUSTOMERS)] for i in range(1, rows + 1)}
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(customers.insert(), [{"id": c} for c in CUSTOMERS])
        conn.execute(subscribers.insert(), subs)
        conn.execute(
            plan_subscriptions.insert(),
            [{"id": k, "customer_id": c, "subscriber_id": f"preset-{k}" if k % 30 == 0 else None} for k, c in owners.items()],
        )
    engine.dispose()
    return owners


def expected(owners: dict[int, str], ambiguous: str) -> dict[int, str | None]:
    chosen = {**RESOLVED, "c-two": "s-two-old"} if ambiguous == "first" else RESOLVED
    return {k: f"preset-{k}" if k % 30 == 0 else chosen.get(c) for k, c in owners.items()}


def table(url: str) -> dict[int, tuple[str | None, int]]:
    """id -> (subscriber_id, touched)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {r.id: (r.subscriber_id, r.touched) for r in conn.execute(sa.select(plan_subscriptions))}
    engine.dispose()
    return rows


def add_write_counter(url: str) -> None:
    """A trigger that bumps ``touched`` on every write of subscriber_id: proof of exactly-once."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER count_write BEFORE UPDATE OF subscriber_id ON plan_subscriptions"
                " FOR EACH ROW EXECUTE FUNCTION count_write()"
            )
        elif engine.dialect.name == "mysql":
            # MySQL has no UPDATE OF: count the writes that change the column (every write a backfill does).
            conn.exec_driver_sql(
                "CREATE TRIGGER count_write BEFORE UPDATE ON plan_subscriptions FOR EACH ROW"
                " SET NEW.touched = OLD.touched + IF(NEW.subscriber_id <=> OLD.subscriber_id, 0, 1)"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER count_write AFTER UPDATE OF subscriber_id ON plan_subscriptions"
                " BEGIN UPDATE plan_subscriptions SET touched = touched + 1 WHERE id = NEW.id; END"
            )
    engine.dispose()


class MemoryCheckpoints:
    """Checkpoints kept in memory; ``crash_after`` raises once that many saves are stored."""

    def __init__(self, data: dict[str, Any] | None = None, crash_after: int | None = None) -> None:
        self.data, self.saves, self.crash_after = data, 0, crash_after

    def load(self) -> dict[str, Any] | None:
        return None if self.data is None else dict(self.data)

    def save(self, data: dict[str, Any]) -> None:
        self.data = dict(data)
        self.saves += 1
        if self.saves == self.crash_after:
            raise SimulatedCrash


class SimulatedCrash(Exception):
    pass


class FileCheckpoints:
    """Checkpoints in a JSON file, replaced atomically and fsynced, like a durable store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    def save(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The backfill's tests run on SQLite, PostgreSQL and MariaDB (skipped when no server answers)."""
    return str(request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]))


def run_backfill(
    url: str,
    workdir: Path,
    checkpoints: Any = None,
    *,
    dry_run: bool = False,
    progress: Callable[[dict[str, Any]], None] = lambda _e: None,
    lines: list[str] | None = None,
    supervisor: ProcessSupervisor | None = None,
    **params: Any,
) -> StepOutcome:
    masker = Masker()
    connections = Connections({"db": url}, masker)
    ctx = StepContext(
        run_id="run-1",
        step_id="backfill",
        workdir=workdir,
        env={},
        masker=masker,
        connections=connections,
        output=(lines if lines is not None else []).append,
        checkpoints=checkpoints if checkpoints is not None else MemoryCheckpoints(),
        dry_run=dry_run,
        progress=progress,
        supervisor=supervisor,
    )
    defaults = {
        "connection": "db",
        "table": "plan_subscriptions",
        "key": "id",
        "where": WHERE,
        "batch_size": 25,
        "min_batch": 10,
        "max_batch": 50,
    }
    try:
        return KIND.run(BackfillParams(**{**defaults, **params}), ctx)
    finally:
        connections.dispose()


def report_rows(outcome: StepOutcome) -> list[list[str]]:
    with open(outcome.outputs["report"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["key", "classification", "candidates"]
    return rows[1:]


def test_params_are_checked() -> None:
    """Exactly one of update/resolve, set_column with resolve, :lo and :hi, sane batch bounds."""
    base: dict[str, Any] = {"connection": "db", "table": "t", "key": "id", "where": "x IS NULL"}
    with pytest.raises(ValidationError, match="exactly one"):
        BackfillParams(**base)
    with pytest.raises(ValidationError, match="set_column"):
        BackfillParams(**base, resolve="SELECT 1 AS key WHERE id BETWEEN :lo AND :hi")
    with pytest.raises(ValidationError, match=":lo and :hi"):
        BackfillParams(**base, update="UPDATE t SET x = 1 WHERE id >= :lo")
    with pytest.raises(ValidationError, match="only with 'resolve'"):
        BackfillParams(**base, update="UPDATE t SET x = 1 WHERE id BETWEEN :lo AND :hi", ambiguous="first")
    with pytest.raises(ValidationError, match="min_batch <= batch_size"):
        BackfillParams(**base, update="UPDATE t SET x = 1 WHERE id BETWEEN :lo AND :hi", batch_size=50000)
    with pytest.raises(ValidationError):
        BackfillParams(**{**base, "table": "t; DROP TABLE t"}, update="UPDATE t SET x = 1 WHERE id BETWEEN :lo AND :hi")
    params = BackfillParams.model_validate({**base, "resolve": RESOLVE, "set_column": "x", "target_batch_time": "250ms"})
    assert params.target_batch_time == 0.25 and params.report_path == "backfill_t_report.csv"
    assert get_step_kind("backfill") is KIND
    assert KIND.describe(params) == "backfill t.x where x IS NULL (batches of 1000, keyset on id)"


def test_resolve_skip_leaves_ambiguous_unset(db_url: str, tmp_path: Path) -> None:
    """resolve + skip: one candidate set, several or none left NULL and reported, hand-set rows kept."""
    owners = make_schema(db_url, 300)
    lines: list[str] = []
    events: list[dict[str, Any]] = []
    outcome = run_backfill(db_url, tmp_path, resolve=RESOLVE, set_column="subscriber_id", lines=lines, progress=events.append)

    assert outcome.ok, outcome.error
    assert {k: v for k, (v, _) in table(db_url).items()} == expected(owners, "skip")
    todo = [k for k in owners if k % 30]
    kinds = {c: sum(1 for k in todo if owners[k] == c) for c in CUSTOMERS}
    out = outcome.outputs
    assert out["total"] == 300 and out["skipped_already_set"] == 30
    assert out["updated"] == kinds["c-one"] + kinds["c-deleted"] + kinds["c-suspended"]
    assert out["ambiguous"] == kinds["c-two"] and out["updated_ambiguous"] == 0
    assert out["unresolved"] == kinds["c-none"] + kinds["c-only-deleted"]
    assert out["errors"] == 0 and out["batches"] >= 6 and out["max_batch_ms"] > 0
    assert sorted(report_rows(outcome), key=lambda r: int(r[0])) == [
        [str(k), "ambiguous_skipped" if owners[k] == "c-two" else "unresolved", str(CANDIDATES[owners[k]])]
        for k in todo
        if owners[k] not in RESOLVED
    ]
    assert (
        outcome.summary is not None and "Backfill Summary" in outcome.summary and "Errors:                  0" in outcome.summary
    )
    # The total starts as the database's estimate (never a count(*) scan) and is exact at the end.
    assert any(re.match(r"batch 1: 25 rows \(25/~?[\d,]+, ", line) for line in lines), lines
    assert events[-1]["done"] == 300 and events[-1]["total"] == 300 and events[-1]["rate"] > 0


def test_resolve_first_takes_oldest_and_counts_it_ambiguous(db_url: str, tmp_path: Path) -> None:
    """resolve + first: a customer with several subscribers gets the oldest, counted as updated-ambiguous."""
    owners = make_schema(db_url, 300)
    outcome = run_backfill(
        db_url, tmp_path, resolve=RESOLVE, set_column="subscriber_id", ambiguous="first", report="out/cases.csv"
    )

    assert outcome.ok, outcome.error
    assert {k: v for k, (v, _) in table(db_url).items()} == expected(owners, "first")
    ambiguous = sum(1 for k, c in owners.items() if c == "c-two" and k % 30)
    out = outcome.outputs
    assert out["ambiguous"] == out["updated_ambiguous"] == ambiguous
    assert out["updated"] + out["unresolved"] + out["skipped_already_set"] == out["total"] == 300
    assert out["report"] == str(tmp_path / "out" / "cases.csv")
    assert {r[1] for r in report_rows(outcome)} == {"ambiguous_first", "unresolved"}
    assert f"({ambiguous} set to the first candidate)" in (outcome.summary or "")


def test_update_form(db_url: str, tmp_path: Path) -> None:
    """update: the author's UPDATE per key range; rows still matching where are reported unresolved."""
    owners = make_schema(db_url, 300)
    outcome = run_backfill(db_url, tmp_path, update=UPDATE)

    assert outcome.ok, outcome.error
    after = table(db_url)
    assert {k: v for k, (v, _) in after.items()} == expected(owners, "skip")
    assert all(touched == (0 if k % 30 == 0 else 1) for k, (_, touched) in after.items())
    left = [k for k, (v, _) in after.items() if v is None]
    assert outcome.outputs["unresolved"] == len(left) and outcome.outputs["ambiguous"] == 0
    assert outcome.outputs["updated"] == 300 - 30 - len(left)
    assert [int(r[0]) for r in report_rows(outcome)] == sorted(left)


@pytest.mark.parametrize("how", ["dry_run", "preview"])
def test_dry_run_writes_report_and_changes_nothing(db_url: str, tmp_path: Path, how: str) -> None:
    """Dry run, or preview: true in a real run: classification and report only; table and checkpoints left alone."""
    owners = make_schema(db_url, 300)
    before = table(db_url)
    checkpoints = MemoryCheckpoints({"last_key": 150, "max_key": 900}) if how == "preview" else MemoryCheckpoints()
    lines: list[str] = []
    mode: dict[str, Any] = {"dry_run": True} if how == "dry_run" else {"preview": True}
    outcome = run_backfill(db_url, tmp_path, checkpoints, resolve=RESOLVE, set_column="subscriber_id", lines=lines, **mode)

    assert outcome.ok, outcome.error
    assert table(db_url) == before
    assert checkpoints.saves == 0
    would = sum(1 for k, c in owners.items() if k % 30 and c in RESOLVED)
    assert outcome.outputs["dry_run"] is True and outcome.outputs["updated"] == would and outcome.outputs["total"] == 300
    assert outcome.outputs["summary"] == outcome.summary
    assert len(report_rows(outcome)) == outcome.outputs["ambiguous"] + outcome.outputs["unresolved"]
    summary = outcome.summary or ""
    assert "Backfill Dry Run" in summary and f"Would update:            {would}" in summary
    sample = next(line for line in summary.splitlines() if line.startswith("Sample keys:"))
    assert sample.count(",") == 2 * 9  # ten keys of each kind
    assert summary in lines
    # Read-only chunks are sized by time, not held to max_batch (50): fewer than the 6 a write needs.
    assert outcome.outputs["batches"] < 300 // 50


def test_read_chunks_grow_by_time_up_to_their_cap() -> None:
    """A dry run's chunks aim at about a second each (less under a short statement_timeout),
    growing at most 8x a chunk, up to 250,000 rows; a write's batches keep to
    target_batch_time and max_batch, growing at most 2x."""
    from runbook.steps.backfill.sizing import Sizer

    reads = Sizer.for_reads(100, 0.1, 30.0)
    assert reads.next(1000, 1000, 0.001) == 8000
    assert reads.next(200_000, 200_000, 0.2) == 250_000
    assert Sizer.for_reads(100, 0.1, 30.0).next(100_000, 100_000, 2.0) == 50_000
    # A quarter of a 1 s statement_timeout; never below target_batch_time; 0 is no timeout.
    assert Sizer.for_reads(100, 0.1, 1.0).target_s == 0.25
    assert Sizer.for_reads(100, 0.1, 0.2).target_s == 0.1
    assert Sizer.for_reads(100, 0.1, 0.0).target_s == 1.0
    writes = Sizer(0.1, 100, 20_000)
    assert writes.next(1000, 1000, 0.001) == 2000
    assert writes.next(20_000, 20_000, 0.01) == 20_000


def test_batches_shrink_at_once_after_a_slow_one() -> None:
    """Rows three times as costly from one batch on: the next batch is sized for the new cost
    (not only halved), so only the batch that met the change runs over target_batch_time."""
    from runbook.steps.backfill.sizing import Sizer

    writes = Sizer(0.1, 100, 20_000)
    size = 2600
    for _ in range(5):
        size = writes.next(size, size, size * 0.1 / 2600)  # on target
    assert size == 2600
    size = writes.next(size, size, 3 * 0.1)  # the change: 300 ms
    assert size == round(2600 / 3)
    assert writes.next(size, size, size * 3 * 0.1 / 2600) == size  # on target again


def test_dry_run_update_form_counts_rows_to_do(db_url: str, tmp_path: Path) -> None:
    """Dry run of the update form counts the rows matching where without running the UPDATE."""
    make_schema(db_url, 120)
    before = table(db_url)
    outcome = run_backfill(db_url, tmp_path, dry_run=True, update=UPDATE)

    assert outcome.ok, outcome.error
    assert table(db_url) == before
    assert outcome.outputs["updated"] == 120 - 12 and outcome.outputs["skipped_already_set"] == 12


def test_mistakes_in_the_sql_fail_before_any_batch(db_url: str, tmp_path: Path) -> None:
    """A resolve without the required columns, or SQL that does not run, fails at once and writes nothing."""
    make_schema(db_url, 60)
    before = table(db_url)
    checkpoints = MemoryCheckpoints()
    no_candidates = 'SELECT id AS "key", customer_id AS "value" FROM plan_subscriptions WHERE id BETWEEN :lo AND :hi'
    missing = run_backfill(db_url, tmp_path, checkpoints, resolve=no_candidates, set_column="subscriber_id", max_errors=5)
    broken = run_backfill(
        db_url, tmp_path, checkpoints, update="UPDATE plan_subscriptions SET nope = 1 WHERE id BETWEEN :lo AND :hi"
    )
    outside = """SELECT id AS "key", 's-one' AS "value", 1 AS candidates FROM plan_subscriptions WHERE id >= :lo AND :hi > 0"""
    strays = run_backfill(db_url, tmp_path, checkpoints, resolve=outside, set_column="subscriber_id", max_errors=5)

    assert not missing.ok and "missing candidates" in (missing.error or "")
    assert not broken.ok and (broken.error or "").startswith("the update SQL fails: ") and broken.outputs["errors"] == 0
    assert not strays.ok and "outside the batch" in (strays.error or "") and strays.outputs["errors"] == 0
    assert table(db_url) == before and checkpoints.saves == 0


def test_stop_request_ends_after_a_committed_batch(sqlite_url: str, tmp_path: Path) -> None:
    """SIGINT/SIGTERM (the supervisor's stop request) ends the step between batches, ready to resume."""
    owners = make_schema(sqlite_url, 120)
    supervisor = ProcessSupervisor()
    checkpoints = MemoryCheckpoints()

    def stop_after_three(event: dict[str, Any]) -> None:
        supervisor.stop_requested = event["done"] >= 30

    stopped = run_backfill(
        sqlite_url,
        tmp_path,
        checkpoints,
        supervisor=supervisor,
        progress=stop_after_three,
        update=UPDATE,
        batch_size=10,
        min_batch=10,
        max_batch=10,
    )

    assert stopped.interrupted and not stopped.ok and stopped.outputs["last_key"] == 90
    assert "a resume continues after id 90" in (stopped.error or "")
    resumed = run_backfill(sqlite_url, tmp_path, checkpoints, update=UPDATE)
    assert resumed.ok and {k: v for k, (v, _) in table(sqlite_url).items()} == expected(owners, "skip")


def test_resume_from_checkpoint_processes_each_row_once(db_url: str, tmp_path: Path) -> None:
    """A crash right after a checkpoint: the rerun starts after it and touches no row twice."""
    owners = make_schema(db_url, 300)
    checkpoints = MemoryCheckpoints(crash_after=4)
    with pytest.raises(SimulatedCrash):
        run_backfill(db_url, tmp_path, checkpoints, update=UPDATE, batch_size=30, min_batch=30, max_batch=30)
    mid = checkpoints.load()
    assert mid is not None and mid["last_key"] == [3 * 120] and mid["batches"] == 4
    touched_mid = table(db_url)
    assert all(t == 0 for k, (_, t) in touched_mid.items() if k > mid["last_key"][0])

    lines: list[str] = []
    outcome = run_backfill(db_url, tmp_path, checkpoints, update=UPDATE, batch_size=30, min_batch=30, max_batch=30, lines=lines)

    assert outcome.ok, outcome.error
    assert lines[0] == "resuming after id 360 (120 rows done in 4 batches)"
    after = table(db_url)
    assert {k: v for k, (v, _) in after.items()} == expected(owners, "skip")
    assert all(touched == (0 if k % 30 == 0 else 1) for k, (_, touched) in after.items())
    assert outcome.outputs["total"] == 300 and outcome.outputs["batches"] == 10
    # The report was continued, not restarted: each unresolved row once.
    keys = [int(r[0]) for r in report_rows(outcome)]
    assert keys == sorted(k for k, (v, _) in after.items() if v is None)


CHILD = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_backfill import FileCheckpoints, run_backfill
url, checkpoint, workdir, params = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), json.loads(sys.argv[5])
outcome = run_backfill(url, workdir, FileCheckpoints(checkpoint), **params)
print(json.dumps({"ok": outcome.ok, "error": outcome.error}))
"""


def test_sigkill_mid_backfill_then_resume(db_url: str, tmp_path: Path) -> None:
    """SIGKILL a child mid-backfill; the rerun ends with the one-shot table and no row written twice."""
    owners = make_schema(db_url, 900)
    add_write_counter(db_url)
    params: dict[str, Any] = {
        "resolve": RESOLVE,
        "set_column": "subscriber_id",
        "ambiguous": "first",
        "batch_size": 10,
        "min_batch": 10,
        "max_batch": 10,
    }
    checkpoint = tmp_path / "checkpoint.json"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(Path(__file__).parent), db_url, str(checkpoint), str(tmp_path), json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.poll() is None:
        saved = FileCheckpoints(checkpoint).load() if checkpoint.exists() else None
        if saved and saved["last_key"][0] >= 3 * 300:
            break
        time.sleep(0.002)
    assert child.poll() is None, f"the child ended before it could be killed: {child.communicate()}"
    time.sleep(random.uniform(0, 0.02))
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = FileCheckpoints(checkpoint).load()
    assert killed_at is not None and killed_at["last_key"][0] < 3 * 900

    resumed = run_backfill(db_url, tmp_path, FileCheckpoints(checkpoint), **params)

    assert resumed.ok, resumed.error
    final = table(db_url)
    assert {k: v for k, (v, _) in final.items()} == expected(owners, "first")
    assert max(touched for _, touched in final.values()) == 1
    assert all(touched == (1 if v is not None and k % 30 else 0) for k, (v, touched) in final.items())
    assert resumed.outputs["total"] == 900
    resumed_report = [tuple(r) for r in report_rows(resumed)]
    assert len(set(resumed_report)) == len(resumed_report)

    # The same backfill in one go, from the same starting point, for comparison.
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(plan_subscriptions.update().where(plan_subscriptions.c.id % 30 != 0).values(subscriber_id=None))
    engine.dispose()
    one_shot = run_backfill(db_url, tmp_path / "one-shot", **params)
    assert one_shot.ok, one_shot.error
    assert {k: v for k, (v, _) in table(db_url).items()} == {k: v for k, (v, _) in final.items()}
    assert set(resumed_report) <= {tuple(r) for r in report_rows(one_shot)}


def test_concurrent_writers_lose_no_update(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL: rows set by another writer during the backfill keep that writer's value; new rows are left alone."""
    make_schema(pg_url, 2000)
    checkpoints = MemoryCheckpoints()
    # The pause (run once per SELECT, after its snapshot) widens the gap between what the
    # SELECT saw and the UPDATE, which is where the writer strikes.
    slow_resolve = RESOLVE.replace("ORDER BY ps.id", "AND (SELECT pg_sleep(0.01)::text) IS NOT NULL ORDER BY ps.id")
    written: dict[int, str] = {}
    inserted: list[int] = []
    done = threading.Event()

    def writer() -> None:
        engine = sa.create_engine(pg_url)
        rng = random.Random(7)
        n = 0
        while not done.is_set():
            front = ((checkpoints.data or {}).get("last_key") or [0])[0]
            key = 3 * rng.randint(front // 3 + 1, front // 3 + 20)
            n += 1
            with engine.begin() as conn:
                # New rows only once the backfill has started (its first checkpoint): they come after its max_key.
                if n % 5 == 0 and checkpoints.data is not None:
                    new_key = 100_000 + n
                    conn.execute(plan_subscriptions.insert().values(id=new_key, customer_id="c-one", subscriber_id=None))
                    inserted.append(new_key)
                elif key <= 6000:
                    conn.execute(plan_subscriptions.update().where(plan_subscriptions.c.id == key).values(subscriber_id=f"w-{n}"))
                    written[key] = f"w-{n}"
            time.sleep(0.001)
        engine.dispose()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        outcome = run_backfill(pg_url, tmp_path, checkpoints, resolve=slow_resolve, set_column="subscriber_id", ambiguous="first")
    finally:
        done.set()
        thread.join()

    assert outcome.ok, outcome.error
    final = table(pg_url)
    assert len(written) > 50 and len(inserted) > 10
    assert {k: final[k][0] for k in written} == written
    assert all(final[k][0] is None for k in inserted)
    out = outcome.outputs
    assert out["max_key"] == 6000 and out["total"] == 2000
    assert out["updated"] + out["unresolved"] + out["skipped_already_set"] + out["ambiguous"] - out["updated_ambiguous"] == 2000


def test_lock_timeout_counts_errors_and_fails_after_max_errors(db_url: str, tmp_path: Path) -> None:
    """A lock held by another connection: the batch times out, is retried smaller, and the step fails past max_errors."""
    owners = make_schema(db_url, 120)
    checkpoints = MemoryCheckpoints()
    holder = Blocker(db_url)
    params: dict[str, Any] = {
        "resolve": RESOLVE,
        "set_column": "subscriber_id",
        "ambiguous": "first",
        "batch_size": 10,
        "min_batch": 5,
        "max_batch": 10,
    }
    lines: list[str] = []

    def lock_after_two_batches(event: dict[str, Any]) -> None:
        if event["done"] == 20:
            holder.lock(after=60, upto=90)

    try:
        failed = run_backfill(
            db_url,
            tmp_path,
            checkpoints,
            lock_timeout="300ms",
            max_errors=1,
            progress=lock_after_two_batches,
            lines=lines,
            **params,
        )
    finally:
        holder.release()

    assert not failed.ok
    assert "lock" in (failed.error or "").lower() and "2 failed batches, max_errors 1" in (failed.error or "")
    assert failed.outputs["errors"] == 2 and failed.outputs["last_key"] == 60
    assert any("retrying with 5 rows" in line for line in lines)
    assert all(v == (f"preset-{k}" if k % 30 == 0 else None) for k, (v, _) in table(db_url).items() if k > 60)

    resumed = run_backfill(db_url, tmp_path, checkpoints, **params)

    assert resumed.ok, resumed.error
    assert {k: v for k, (v, _) in table(db_url).items()} == expected(owners, "first")
    # The failed batches were rolled back and done by the resumed attempt: it reports no errors of its own.
    assert resumed.outputs["errors"] == 0 and resumed.outputs["total"] == 120


class Blocker:
    """Another session holding locks: row locks on PostgreSQL and MariaDB, the write lock on SQLite."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        self.conn: sa.Connection | None = None

    def lock(self, after: int, upto: int) -> None:
        self.conn = self.engine.connect()
        if self.engine.dialect.name != "sqlite":
            query = sa.select(plan_subscriptions.c.id).where(plan_subscriptions.c.id > after, plan_subscriptions.c.id <= upto)
            self.conn.execute(query.with_for_update()).all()
        else:
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
        self.engine.dispose()
