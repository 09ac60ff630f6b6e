"""``kind: backfill`` over keys other than one integer: UUID, text, several columns;
keys that cannot be walked are refused before any write; old checkpoints."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.steps.test_backfill import FileCheckpoints, MemoryCheckpoints, SimulatedCrash, db_url, run_backfill  # noqa: F401 (fixture)

ROWS = 240
WHERE = "v IS NULL"
TENANTS = ["acme", "Beta", "beta-2", "Zed", "_system", "ümlaut"]


def key_values(kind: str) -> list[tuple[Any, ...]]:
    """ROWS keys of the kind, in no particular order."""
    if kind == "uuid":
        return [(uuid.uuid4(),) for _ in range(ROWS)]
    if kind == "text":
        # Mixed case, punctuation and lengths: whatever order the database's collation gives them.
        return [(f"{['sub', 'Sub', 'sub-', 'a', 'zz'][i % 5]}{i * 7919 % 1000:03d}-{i}",) for i in range(ROWS)]
    return [(TENANTS[i % len(TENANTS)], i // len(TENANTS)) for i in range(ROWS)]


def key_columns(kind: str) -> list[sa.Column[Any]]:
    if kind == "uuid":
        return [sa.Column("id", sa.Uuid, primary_key=True)]
    if kind == "text":
        return [sa.Column("id", sa.String(40), primary_key=True)]
    return [sa.Column("tenant_id", sa.String(20), primary_key=True), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False)]


def make_items(url: str, kind: str) -> tuple[sa.Table, dict[tuple[Any, ...], int]]:
    """Table ``items``: the key, ``x``, ``v`` to fill (every 10th row preset to -1) and
    ``touched``, which a trigger bumps on every write of ``v``. Returns key -> x."""
    metadata = sa.MetaData()
    items = sa.Table(
        "items",
        metadata,
        *key_columns(kind),
        sa.Column("x", sa.Integer, nullable=False),
        sa.Column("v", sa.Integer, nullable=True),
        sa.Column("touched", sa.Integer, nullable=False, server_default="0"),
    )
    keys = key_values(kind)
    names = [c.name for c in items.primary_key.columns]
    xs = {k: i + 1 for i, k in enumerate(keys)}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            items.insert(),
            [{**dict(zip(names, k, strict=True)), "x": x, "v": -1 if x % 10 == 0 else None} for k, x in xs.items()],
        )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END $$"
            )
            conn.exec_driver_sql("CREATE TRIGGER count_write BEFORE UPDATE OF v ON items FOR EACH ROW EXECUTE FUNCTION count_write()")
        elif engine.dialect.name == "mysql":
            conn.exec_driver_sql("CREATE TRIGGER count_write BEFORE UPDATE ON items FOR EACH ROW SET NEW.touched = OLD.touched + IF(NEW.v <=> OLD.v, 0, 1)")
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER count_write AFTER UPDATE OF v ON items"
                " BEGIN UPDATE items SET touched = touched + 1 WHERE rowid = NEW.rowid; END"
            )
    engine.dispose()
    return items, xs


def read_items(url: str, items: sa.Table) -> dict[tuple[Any, ...], tuple[int | None, int]]:
    engine = sa.create_engine(url)
    names = [c.name for c in items.primary_key.columns]
    with engine.connect() as conn:
        rows = {tuple(getattr(r, n) for n in names): (r.v, r.touched) for r in conn.execute(sa.select(items))}
    engine.dispose()
    return rows


def forms(kind: str) -> dict[str, dict[str, Any]]:
    if kind == "composite":
        key: Any = ["tenant_id", "id"]
        # Not BETWEEN of row values: MySQL and MariaDB compare rows with <, <=, >, >= and = only.
        batch = "(tenant_id, id) >= (:lo_tenant_id, :lo_id) AND (tenant_id, id) <= (:hi_tenant_id, :hi_id)"
        select_key = "tenant_id, id"
    else:
        key, batch, select_key = "id", "id BETWEEN :lo AND :hi", 'id AS "key"'
    return {
        "update": {"key": key, "update": f"UPDATE items SET v = CASE WHEN x % 7 = 0 THEN NULL ELSE x * 2 END WHERE {batch} AND v IS NULL"},
        "resolve": {
            "key": key,
            "set_column": "v",
            "resolve": f'SELECT {select_key}, x * 2 AS "value", CASE WHEN x % 7 = 0 THEN 0 ELSE 1 END AS candidates'
            f" FROM items WHERE v IS NULL AND {batch}",
        },
    }


def expected(xs: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int | None]:
    return {k: -1 if x % 10 == 0 else None if x % 7 == 0 else 2 * x for k, x in xs.items()}


class CrashingFileCheckpoints(FileCheckpoints):
    """A JSON file, as a durable store keeps it; the process 'dies' after ``crash_after`` saves."""

    def __init__(self, path: Path, crash_after: int | None = None) -> None:
        super().__init__(path)
        self.saves, self.crash_after = 0, crash_after

    def save(self, data: dict[str, Any]) -> None:
        super().save(data)
        self.saves += 1
        if self.saves == self.crash_after:
            raise SimulatedCrash


@pytest.mark.parametrize("form", ["update", "resolve"])
@pytest.mark.parametrize("kind", ["uuid", "text", "composite"])
def test_any_ordered_key_is_walked_once_and_resumes(db_url: str, tmp_path: Path, kind: str, form: str) -> None:
    """UUID, text and (tenant_id, id) keys: every row done once, hand-set rows kept; a crash after
    three checkpoints (saved as JSON) resumes after the last one and writes no row twice."""
    items, xs = make_items(db_url, kind)
    params = {**forms(kind)[form], "table": "items", "where": WHERE, "batch_size": 20, "min_batch": 20, "max_batch": 20}
    checkpoints = CrashingFileCheckpoints(tmp_path / "checkpoint.json", crash_after=3)
    with pytest.raises(SimulatedCrash):
        run_backfill(db_url, tmp_path, checkpoints, **params)
    saved = json.loads(checkpoints.path.read_text())
    assert saved["format"] == 2 and saved["batches"] == 3 and saved["key"] == (["tenant_id", "id"] if kind == "composite" else ["id"])

    lines: list[str] = []
    resumed = run_backfill(db_url, tmp_path, CrashingFileCheckpoints(checkpoints.path), lines=lines, **params)

    assert resumed.ok, resumed.error
    assert lines[0].startswith("resuming after ") and "(60 rows done in 3 batches)" in lines[0]
    after = read_items(db_url, items)
    assert {k: v for k, (v, _) in after.items()} == expected(xs)
    # Written once; the update form may evaluate (and so touch) a row it leaves unresolved again.
    assert all(touched == 1 for v, touched in after.values() if v not in (None, -1))
    assert all(touched == 0 for v, touched in after.values() if v == -1 or (v is None and form == "resolve"))
    out = resumed.outputs
    assert out["total"] == ROWS and out["batches"] == ROWS // 20 and out["errors"] == 0
    assert out["skipped_already_set"] == ROWS // 10
    unresolved = sum(1 for x in xs.values() if x % 7 == 0 and x % 10)
    assert out["unresolved"] == unresolved and out["updated"] == ROWS - ROWS // 10 - unresolved
    # The last key is a JSON value: the column's value for one column, a list for several.
    if kind == "composite":
        assert isinstance(out["max_key"], list) and len(out["max_key"]) == 2
    else:
        assert isinstance(out["max_key"], str) and out["last_key"] == out["max_key"]
    json.dumps(out)
    with open(out["report"], newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == (["tenant_id", "id"] if kind == "composite" else ["key"]) + ["classification", "candidates"]
    assert len(rows) == unresolved and len(rows) == len({tuple(r) for r in rows})


def test_dry_run_over_a_uuid_key(db_url: str, tmp_path: Path) -> None:
    """A dry run classifies over a UUID key and writes nothing."""
    items, xs = make_items(db_url, "uuid")
    before = read_items(db_url, items)
    outcome = run_backfill(db_url, tmp_path, dry_run=True, table="items", where=WHERE, **forms("uuid")["resolve"])
    assert outcome.ok, outcome.error
    assert read_items(db_url, items) == before
    unresolved = sum(1 for x in xs.values() if x % 7 == 0 and x % 10)
    assert outcome.outputs["total"] == ROWS and outcome.outputs["unresolved"] == unresolved


# ---------------------------------------------------------------- keys that cannot be walked


def make_plain(url: str, ddl: list[str]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in ddl:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO plain (id, code, tenant, x) VALUES (1, 'a', 't', 1), (2, 'b', 't', 2)")
    engine.dispose()


PLAIN = "CREATE TABLE plain (id INTEGER PRIMARY KEY, code VARCHAR(10) NOT NULL, tenant VARCHAR(10) NOT NULL, x INTEGER, v INTEGER)"


@pytest.mark.parametrize(
    ("key", "ddl", "message"),
    [
        ("nope", [], "key column nope does not exist in plain (its columns: id, code, tenant, x, v)"),
        ("code", [], "no unique index on plain (code): every batch would scan the table. Missing: a unique index on plain (code)"),
        ("code", ["CREATE INDEX ix_plain_code ON plain (code)"], "index ix_plain_code allows duplicates. Missing: a unique index on plain (code)"),
        (
            ["code", "tenant"],
            ["CREATE UNIQUE INDEX ux_plain ON plain (tenant, code)"],
            "Missing: a unique index on plain (code, tenant); ux_plain has these columns in another order",
        ),
        ("x", ["CREATE UNIQUE INDEX ux_plain_x ON plain (x)"], "key column x of plain may be NULL"),
    ],
)
def test_a_key_that_cannot_be_walked_is_refused_before_any_write(
    db_url: str, tmp_path: Path, key: Any, ddl: list[str], message: str
) -> None:
    """A missing column, no index, a non-unique index, a unique index in another order, a nullable
    unique column: refused (exit 3 in a run), naming what is missing; nothing written or saved."""
    make_plain(db_url, [PLAIN, *ddl])
    checkpoints = MemoryCheckpoints()
    cols = key if isinstance(key, list) else [key]
    bounds = " AND ".join(f"{c} BETWEEN :lo{'_' + c if len(cols) > 1 else ''} AND :hi{'_' + c if len(cols) > 1 else ''}" for c in cols)
    outcome = run_backfill(db_url, tmp_path, checkpoints, table="plain", key=key, where="v IS NULL", update=f"UPDATE plain SET v = 1 WHERE {bounds}")
    assert not outcome.ok and outcome.refused
    assert message in (outcome.error or ""), outcome.error
    assert checkpoints.saves == 0 and not (tmp_path / "backfill_plain_report.csv").exists()


RUNBOOK = """
name: fill
connections:
  app: {url}
steps:
  - id: fill
    kind: backfill
    connection: app
    table: plain
    key: code
    where: v IS NULL
    update: UPDATE plain SET v = 1 WHERE code BETWEEN :lo AND :hi AND v IS NULL
    irreversible: true
"""


def test_refusal_exits_3_and_the_run_resumes_once_the_index_exists(db_url: str, tmp_path: Path) -> None:
    """runbook run: exit 3 naming the missing index, nothing written; after CREATE UNIQUE INDEX, --resume completes."""
    url = db_url
    make_plain(url, [PLAIN])
    (tmp_path / "fill.yaml").write_text(RUNBOOK.format(url=url))

    def runbook(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )

    refused = runbook("run", "fill.yaml")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "Missing: a unique index on plain (code)" in refused.stdout
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM plain WHERE v IS NOT NULL").scalar_one() == 0
        conn.exec_driver_sql("CREATE UNIQUE INDEX ux_plain_code ON plain (code)")
    engine.dispose()
    resumed = runbook("run", "fill.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM plain WHERE v = 1").scalar_one() == 2
    engine.dispose()


# ---------------------------------------------------------------- checkpoints of the integer-only format


OLD_TALLY = {"updated": 0, "updated_ambiguous": 0, "ambiguous": 0, "unresolved": 0, "errors": 0, "max_batch_ms": 1.0}


def test_an_old_integer_checkpoint_resumes(db_url: str, tmp_path: Path) -> None:
    """A checkpoint of format 1 (integers last_key/max_key) resumes after its key, on an integer key."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ints (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute(sa.text("INSERT INTO ints (id, v) VALUES (:id, NULL)"), [{"id": i} for i in range(1, 101)])
    engine.dispose()
    old = {"last_key": 40, "max_key": 80, "batch_size": 10, "report_bytes": None, "rows_total": 100, "total": 40,
           "skipped_already_set": 40, "batches": 4, **OLD_TALLY}
    checkpoints = MemoryCheckpoints(old)
    lines: list[str] = []
    update = "UPDATE ints SET v = id WHERE id BETWEEN :lo AND :hi AND v IS NULL"
    outcome = run_backfill(db_url, tmp_path, checkpoints, table="ints", key="id", where=WHERE, update=update, lines=lines)
    assert outcome.ok, outcome.error
    assert lines[0] == "resuming after id 40 (40 rows done in 4 batches)"
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        done = [r[0] for r in conn.exec_driver_sql("SELECT id FROM ints WHERE v IS NOT NULL ORDER BY id")]
    engine.dispose()
    # After 40, up to the max_key the old run recorded; rows after it belong to the new code.
    assert done == list(range(41, 81))
    assert outcome.outputs["total"] == 80 and checkpoints.data is not None and checkpoints.data["format"] == 2


def test_an_old_integer_checkpoint_on_a_text_key_is_refused(db_url: str, tmp_path: Path) -> None:
    """A format 1 checkpoint cannot say where a text key stood: refused, with what to do."""
    items, _ = make_items(db_url, "text")
    before = read_items(db_url, items)
    old = {"last_key": 40, "max_key": 80, "batch_size": 10, "report_bytes": 0, "rows_total": 100, "total": 40,
           "skipped_already_set": 40, "batches": 4, **OLD_TALLY}
    outcome = run_backfill(db_url, tmp_path, MemoryCheckpoints(old), table="items", where=WHERE, **forms("text")["update"])
    assert not outcome.ok and outcome.refused
    assert "saved by an older runbook that walked integer keys (it stopped after 40)" in (outcome.error or "")
    assert "start a new run (without --resume)" in (outcome.error or "")
    assert read_items(db_url, items) == before
