"""Bad input to a backfill: a clear message naming the batch, nothing half-written beyond the
committed batches, and the run resumable once the input is fixed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.steps.test_backfill import MemoryCheckpoints, db_url, run_backfill  # noqa: F401 (fixture)
from tests.steps.test_backfill_keys import WHERE, expected, forms, make_items, read_items

BATCHES = {"batch_size": 20, "min_batch": 20, "max_batch": 20}
# x of the row that goes wrong: in the fourth batch of a text key (keys sort differently from x).
BAD_X = 71


def _fails_in_a_later_batch(url: str, tmp_path: Path, resolve: str, message: str) -> None:
    """The bad row's batch fails with ``message`` (a regex) naming it; batches before it are
    committed and checkpointed, its own rows untouched; the fixed resolve resumes and completes."""
    items, xs = make_items(url, "text")
    checkpoints = MemoryCheckpoints()
    params: dict[str, Any] = {"table": "items", "where": WHERE, "key": "id", "set_column": "v", **BATCHES}
    failed = run_backfill(url, tmp_path, checkpoints, resolve=resolve, **params)

    assert not failed.ok and not failed.refused
    error = failed.error or ""
    assert re.search(r"^batch (\d+) \(id \S+\.\.\S+\)( failed)?: " + message, error), error
    assert error.endswith(f"that batch was rolled back, and a resume continues after id {failed.outputs['last_key']}")
    number = int(re.match(r"batch (\d+)", error).group(1))  # type: ignore[union-attr]
    saved = checkpoints.data or {}
    assert failed.outputs["batches"] == number - 1 == saved.get("batches", 0)
    assert failed.outputs["errors"] == 0
    rows = read_items(url, items)
    written = {k for k, (v, _) in rows.items() if v not in (None, -1)}
    bad = next(k for k, x in xs.items() if x == BAD_X)
    assert bad not in written and len(written) == failed.outputs["updated"]
    # Every row written was in a committed batch: at or before the checkpoint's last key.
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        after_last = conn.execute(
            sa.text("SELECT count(*) FROM items WHERE id > :last AND v IS NOT NULL AND v <> -1"), {"last": failed.outputs["last_key"]}
        ).scalar_one()
    engine.dispose()
    assert after_last == 0

    resumed = run_backfill(url, tmp_path, checkpoints, resolve=forms("text")["resolve"]["resolve"], **params)
    assert resumed.ok, resumed.error
    final = read_items(url, items)
    assert {k: v for k, (v, _) in final.items()} == expected(xs)
    assert all(touched == 1 for v, touched in final.values() if v not in (None, -1))


def test_a_resolve_returning_a_key_twice_fails_that_batch(db_url: str, tmp_path: Path) -> None:
    duplicating = (
        'SELECT i.id AS "key", i.x * 2 AS "value", CASE WHEN i.x % 7 = 0 THEN 0 ELSE 1 END AS candidates'
        " FROM items i JOIN (SELECT 1 AS n UNION ALL SELECT 2) d ON d.n = 1 OR i.x = 71"
        " WHERE i.v IS NULL AND i.id BETWEEN :lo AND :hi"
    )
    _fails_in_a_later_batch(db_url, tmp_path, duplicating, r"resolve returned id \S+ twice: it must return each row at most once;")


def test_a_value_of_the_wrong_type_fails_that_batch(db_url: str, tmp_path: Path) -> None:
    """SQLite stores anything anywhere, so the backfill checks the value's type itself; PostgreSQL
    refuses a value out of the column's range when it meets it."""
    if db_url.startswith("sqlite"):
        value, message = "CASE WHEN x = 71 THEN 'seventy' ELSE x * 2 END", r"resolve returned str 'seventy' for \S+, but items\.v holds int values;"
    elif db_url.startswith("mysql"):
        # Strict mode (the default) refuses what does not fit; it would otherwise store 0 or the type's limit.
        value, message = "CASE WHEN x = 71 THEN 'seventy' ELSE x * 2 END", r"resolve returned a value that items\.v cannot hold: Incorrect integer value: 'seventy';"
    else:
        value, message = "CASE WHEN x = 71 THEN 99999999999 ELSE x * 2 END", r"NumericValueOutOfRange: integer out of range;"
    wrong = (
        f'SELECT id AS "key", {value} AS "value", CASE WHEN x % 7 = 0 THEN 0 ELSE 1 END AS candidates'
        " FROM items WHERE v IS NULL AND id BETWEEN :lo AND :hi"
    )
    _fails_in_a_later_batch(db_url, tmp_path, wrong, message)


def test_a_value_postgresql_cannot_assign_fails_before_any_batch(pg_url: str, tmp_path: Path) -> None:
    """Text for an integer column: PostgreSQL says so when the statement is planned, so the step
    fails on its trial run, before the first batch."""
    items, _ = make_items(pg_url, "text")
    before = read_items(pg_url, items)
    checkpoints = MemoryCheckpoints()
    resolve = forms("text")["resolve"]["resolve"].replace('x * 2 AS "value"', "'two' AS \"value\"")
    outcome = run_backfill(pg_url, tmp_path, checkpoints, table="items", where=WHERE, key="id", set_column="v", resolve=resolve)
    assert not outcome.ok
    assert (outcome.error or "").startswith('the resolve SQL fails: DatatypeMismatch: column "v" is of type integer but expression is of type text')
    assert read_items(pg_url, items) == before and checkpoints.saves == 0


def test_a_where_that_matches_nothing_says_so(db_url: str, tmp_path: Path) -> None:
    """Every row checked, none to do: the step passes (a re-run after completion is the same case)
    and the summary says that where matched no row."""
    items, _ = make_items(db_url, "uuid")
    before = read_items(db_url, items)
    resolve = forms("uuid")["resolve"]
    resolve = {**resolve, "resolve": resolve["resolve"].replace("WHERE v IS NULL", "WHERE v = -12345")}
    outcome = run_backfill(db_url, tmp_path, table="items", where="v = -12345", **resolve)
    assert outcome.ok, outcome.error
    assert outcome.outputs["total"] == outcome.outputs["skipped_already_set"] == len(before)
    assert "No row matched where (v = -12345): nothing to do." in (outcome.summary or "")
    assert read_items(db_url, items) == before


RUNBOOK = """
name: fill
connections:
  app: {url}
steps:
  - id: fill_items
    kind: backfill
    connection: app
    table: items
    key: id
    where: v IS NULL
    set_column: v
    batch_size: 20
    min_batch: 20
    max_batch: 20
    resolve: {resolve}
    irreversible: true
"""


def test_the_run_names_the_step_and_the_batch_and_resumes(tmp_path: Path) -> None:
    """runbook run: exit 1 naming the step and the batch; --resume with the fixed SQL (--accept-changes) completes."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    items, xs = make_items(url, "text")
    good = forms("text")["resolve"]["resolve"]
    bad = good.replace('x * 2 AS "value"', "CASE WHEN x = 71 THEN 'seventy' ELSE x * 2 END AS \"value\"")
    runbook_file = tmp_path / "fill.yaml"

    def runbook(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )

    runbook_file.write_text(RUNBOOK.format(url=url, resolve=json.dumps(bad)))
    failed = runbook("run", "fill.yaml")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"fill_items.*batch \d+ \(id \S+\.\.\S+\): resolve returned str 'seventy'", failed.stdout), failed.stdout
    runbook_file.write_text(RUNBOOK.format(url=url, resolve=json.dumps(good)))
    resumed = runbook("run", "fill.yaml", "--resume", "--accept-changes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming after id " in resumed.stdout
    assert {k: v for k, (v, _) in read_items(url, items).items()} == expected(xs)


def test_a_batch_size_out_of_bounds_names_the_step_cleanly(tmp_path: Path) -> None:
    """A templated batch_size that renders outside min_batch..max_batch: exit 2, the message names
    the step (no dangling '.:' after it) and the keys at fault, without dumping the step's SQL."""
    (tmp_path / "fill.yaml").write_text(
        RUNBOOK.format(url=f"sqlite:///{tmp_path / 'app.db'}", resolve=json.dumps(forms("text")["resolve"]["resolve"]))
        .replace("    batch_size: 20\n", '    batch_size: "{{ vars.size }}"\n')
        .replace("steps:", "vars:\n  size: 20\nsteps:")
    )
    planned = subprocess.run(
        [sys.executable, "-m", "runbook", "plan", "fill.yaml", "--var", "size=5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert planned.returncode == 2, planned.stdout + planned.stderr
    said = planned.stdout + planned.stderr
    assert "steps[0] (fill_items): after rendering: need min_batch <= batch_size <= max_batch, got 20, 5, 20" in said, said
    assert ".:" not in said and "Value error" not in said and "SELECT" not in said
