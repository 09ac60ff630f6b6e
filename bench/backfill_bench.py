"""Benchmark of ``kind: backfill`` against the alternatives, on a real PostgreSQL.

    python bench/backfill_bench.py [--rows 1000000] [--repeat 3]

Uses ``RUNBOOK_BENCH_PG_URL`` when set (a database named ``backfill_bench`` is
created and dropped there), otherwise starts the embedded server of the
``pgserver`` wheel in a temporary directory, with max_wal_size raised to 4GB
(see ``server``). The schema mirrors the seed's ``plan_subscriptions`` after
migration ee4f9c4fb5b3: a nullable ``subscriber_id`` with its index and
foreign key. Every contender starts from the same freshly copied, vacuumed,
checkpointed table and must leave the same result: ambiguous customers get
their oldest live active subscriber (``ambiguous: first``), customers without
one stay NULL. The timed contenders run ``--repeat`` times, interleaved, and
the fastest run of each counts: on a shared machine the load comes and goes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runbook.connections import Connections
from runbook.masking import Masker
from runbook.steps.backfill import KIND, BackfillParams
from runbook.steps.base import StepContext, StepOutcome

DATABASE = "backfill_bench"
TARGETS = {"ratio": 1.25, "max_batch_ms": 150.0, "loop_speedup": 6.0, "dry_rows_per_s": 100_000.0}
# The rule of examples/isp/sql/resolve_subscriber.sql.
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
UPDATE = """
UPDATE plan_subscriptions
   SET subscriber_id = (SELECT s.id FROM subscribers s
                         WHERE s.customer_id = plan_subscriptions.customer_id
                           AND s.deleted_at IS NULL AND s.status = 'active'
                         ORDER BY s.created_at, s.id LIMIT 1)
 WHERE id BETWEEN :lo AND :hi AND subscriber_id IS NULL
"""
ONE_SHOT = """
UPDATE plan_subscriptions ps
   SET subscriber_id = r.id
  FROM (SELECT DISTINCT ON (customer_id) customer_id, id
          FROM subscribers
         WHERE deleted_at IS NULL AND status = 'active'
         ORDER BY customer_id, created_at, id) r
 WHERE r.customer_id = ps.customer_id AND ps.subscriber_id IS NULL
"""
PARAMS = {"connection": "db", "table": "plan_subscriptions", "key": "id", "where": "subscriber_id IS NULL"}
RESOLVE_PARAMS = {**PARAMS, "resolve": RESOLVE, "set_column": "subscriber_id", "ambiguous": "first"}


class FileCheckpoints:
    """Checkpoints in a JSON file, replaced atomically and fsynced: the cost of a durable store."""

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


def run_kind(
    url: str,
    workdir: Path,
    checkpoint: Path,
    params: dict[str, Any],
    *,
    dry_run: bool = False,
    on_batch: Callable[[float], None] | None = None,
) -> tuple[StepOutcome, float]:
    """Run the kind as the engine would; ``on_batch`` gets the time between progress events."""
    last = [time.perf_counter()]

    def progress(_event: dict[str, Any]) -> None:
        now = time.perf_counter()
        if on_batch is not None:
            on_batch(now - last[0])
        last[0] = now

    masker = Masker()
    connections = Connections({"db": url}, masker)
    ctx = StepContext(
        run_id="bench",
        step_id="backfill",
        workdir=workdir,
        env={},
        masker=masker,
        connections=connections,
        output=lambda _line: None,
        checkpoints=FileCheckpoints(checkpoint),
        dry_run=dry_run,
        progress=progress,
    )
    started = last[0] = time.perf_counter()
    try:
        outcome = KIND.run(BackfillParams(**params), ctx)
    finally:
        connections.dispose()
    return outcome, time.perf_counter() - started


# ---------------------------------------------------------------- database


@contextmanager
def server() -> Iterator[str]:
    """The admin URL of the PostgreSQL to use."""
    url = os.environ.get("RUNBOOK_BENCH_PG_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as datadir:
        pg = pgserver.get_server(datadir, cleanup_mode="stop")
        try:
            url = pg.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
            # The default 1GB lets a checkpoint start inside whichever timed run happens
            # to cross it (a run writes ~600MB of WAL per million rows); with 4GB the
            # CHECKPOINT in reset() is the only one, so every contender starts alike.
            admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql("ALTER SYSTEM SET max_wal_size = '4GB'")
                conn.exec_driver_sql("SELECT pg_reload_conf()")
            admin.dispose()
            yield url
        finally:
            pg.cleanup()


@contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    try:
        yield sa.engine.make_url(admin_url).set(database=DATABASE).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.dispose()


def generate(engine: sa.Engine, rows: int) -> None:
    """rows subscriptions over rows/2 customers. Per 20 customers: 16 with one active
    subscriber, 2 with two (ambiguous), 1 with none, 1 with a soft-deleted older one
    next to a live one."""
    customers = max(1, rows // 2)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE customers (id varchar(36) PRIMARY KEY, name varchar(200) NOT NULL);"
            "CREATE TABLE subscribers (id varchar(36) PRIMARY KEY, customer_id varchar(36) NOT NULL REFERENCES customers(id),"
            " status varchar(20) NOT NULL, created_at timestamptz NOT NULL, deleted_at timestamptz);"
            "CREATE TABLE ps_seed (id integer PRIMARY KEY, customer_id varchar(36) NOT NULL REFERENCES customers(id),"
            " plan_id varchar(36) NOT NULL, status varchar(20) NOT NULL, start_date timestamptz NOT NULL,"
            " created_at timestamptz NOT NULL, subscriber_id varchar(36));"
        )
        conn.exec_driver_sql(
            f"INSERT INTO customers SELECT 'c' || g, 'customer ' || g FROM generate_series(0, {customers - 1}) g"
        )
        # Suffix a: the oldest live one (none for g % 20 = 18); b: a second live one
        # (ambiguous); z: an even older one, soft-deleted, which must be ignored.
        conn.exec_driver_sql(
            "INSERT INTO subscribers"
            " SELECT 's' || g || suffix, 'c' || g, 'active', now() - age, CASE WHEN suffix = 'z' THEN now() END"
            f" FROM generate_series(0, {customers - 1}) g,"
            " (VALUES ('a', interval '400 days'), ('b', interval '300 days'), ('z', interval '900 days')) AS v(suffix, age)"
            " WHERE (suffix = 'a' AND mod(g, 20) <> 18) OR (suffix = 'b' AND mod(g, 20) IN (16, 17))"
            " OR (suffix = 'z' AND mod(g, 20) = 19)"
        )
        conn.exec_driver_sql("CREATE INDEX ix_subscribers_customer_id ON subscribers (customer_id)")
        conn.exec_driver_sql(
            "INSERT INTO ps_seed SELECT g, 'c' || mod(g, "
            f"{customers}), 'plan-' || mod(g, 7), 'active', now() - interval '30 days', now() - interval '30 days', NULL"
            f" FROM generate_series(1, {rows}) g"
        )
        conn.exec_driver_sql("ANALYZE customers; ANALYZE subscribers")


def reset(engine: sa.Engine) -> None:
    """A fresh plan_subscriptions from the seed: same rows, indexes and FK, vacuumed, checkpointed."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TABLE IF EXISTS plan_subscriptions;"
            "CREATE TABLE plan_subscriptions (LIKE ps_seed INCLUDING ALL);"
            "INSERT INTO plan_subscriptions SELECT * FROM ps_seed;"
            "CREATE INDEX ix_plan_subscriptions_customer_id ON plan_subscriptions (customer_id);"
            "CREATE INDEX ix_plan_subscriptions_subscriber_id ON plan_subscriptions (subscriber_id);"
            "ALTER TABLE plan_subscriptions ADD CONSTRAINT fk_plan_subscriptions_subscriber_id"
            " FOREIGN KEY (subscriber_id) REFERENCES subscribers (id)"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE plan_subscriptions")
        try:
            conn.exec_driver_sql("CHECKPOINT")
        except sa.exc.DBAPIError:
            pass  # not a superuser on an external server: the table is still fresh


def differences(engine: sa.Engine) -> int:
    """Rows whose subscriber_id differs from the one-shot result."""
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT count(*) FROM plan_subscriptions p FULL JOIN expected e USING (id)"
                " WHERE p.subscriber_id IS DISTINCT FROM e.subscriber_id OR p.id IS NULL OR e.id IS NULL"
            ).scalar_one()
        )


# ---------------------------------------------------------------- contenders


def one_shot(engine: sa.Engine) -> float:
    reset(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(ONE_SHOT)
    elapsed = time.perf_counter() - started
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TABLE IF EXISTS expected; CREATE TABLE expected AS SELECT id, subscriber_id FROM plan_subscriptions"
        )
    return elapsed


def per_row_loop(engine: sa.Engine, rows: int) -> tuple[float, int]:
    """The script the seed replaces: per subscription a SELECT and an UPDATE, commit every 100.
    Run on the first tenth of the keys; returns (seconds, rows)."""
    reset(engine)
    sample = max(1, rows // 10)
    resolve = sa.text(RESOLVE)
    update = sa.text("UPDATE plan_subscriptions SET subscriber_id = :v WHERE id = :k AND subscriber_id IS NULL")
    started = time.perf_counter()
    with engine.connect() as conn:
        for key in range(1, sample + 1):
            row = conn.execute(resolve, {"lo": key, "hi": key}).one_or_none()
            if row is not None and row.value is not None:
                conn.execute(update, {"v": row.value, "k": key})
            if key % 100 == 0:
                conn.commit()
        conn.commit()
    return time.perf_counter() - started, sample


def kill_and_resume(url: str, engine: sa.Engine, workdir: Path) -> dict[str, Any]:
    """A child process runs the backfill and is SIGKILLed at ~40%; a second run resumes it."""
    reset(engine)
    checkpoint = workdir / "kill.json"
    checkpoint.unlink(missing_ok=True)
    with engine.connect() as conn:
        max_key = conn.exec_driver_sql("SELECT max(id) FROM plan_subscriptions").scalar_one()
    child = subprocess.Popen([sys.executable, __file__, "--child", url, str(checkpoint), str(workdir)])
    killed_at = None
    while child.poll() is None:
        saved = FileCheckpoints(checkpoint).load() if checkpoint.exists() else None
        if saved and saved["last_key"] >= 0.4 * max_key:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed_at = FileCheckpoints(checkpoint).load()
            break
        time.sleep(0.005)
    outcome, elapsed = run_kind(url, workdir, checkpoint, RESOLVE_PARAMS)
    return {
        "killed_after": None if killed_at is None else killed_at["last_key"],
        "max_key": max_key,
        "resume_ok": outcome.ok,
        "resume_s": elapsed,
        "differences": differences(engine),
        "total": outcome.outputs.get("total"),
    }


def child(url: str, checkpoint: str, workdir: str) -> None:
    run_kind(url, Path(workdir), Path(checkpoint), RESOLVE_PARAMS)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed contender; the fastest counts (default 3)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "CHECKPOINT", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows: int = args.rows
    contenders = {"backfill resolve": RESOLVE_PARAMS, "backfill update": {**PARAMS, "update": UPDATE}}
    shots: list[float] = []
    runs: dict[str, list[tuple[float, StepOutcome, list[float]]]] = {label: [] for label in contenders}
    with server() as admin_url, bench_database(admin_url) as url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        engine = sa.create_engine(url)
        started = time.perf_counter()
        generate(engine, rows)
        version = ".".join(str(v) for v in engine.dialect.server_version_info or ())
        took = time.perf_counter() - started
        print(f"generated {rows:,} plan_subscriptions in {took:.1f}s (PostgreSQL {version}, {os.cpu_count()} CPUs)")
        # Interleaved, best of --repeat: a shared machine's load comes and goes.
        for _ in range(args.repeat):
            shots.append(one_shot(engine))
            for label, params in contenders.items():
                reset(engine)
                cycles: list[float] = []
                outcome, elapsed = run_kind(url, workdir, workdir / f"{label}.json", params, on_batch=cycles.append)
                (workdir / f"{label}.json").unlink(missing_ok=True)
                if not outcome.ok:
                    raise SystemExit(f"{label} failed: {outcome.error}")
                diff = differences(engine)
                if diff:
                    raise SystemExit(f"{label}: {diff:,} rows differ from the one-shot UPDATE")
                runs[label].append((elapsed, outcome, cycles))
        loop_s, loop_rows = per_row_loop(engine, rows)
        reset(engine)
        dry, dry_s = run_kind(url, workdir, workdir / "dry.json", RESOLVE_PARAMS, dry_run=True)
        kill = kill_and_resume(url, engine, workdir)
        engine.dispose()

    shot_s = min(shots)
    best = {label: min(r, key=lambda run: run[0]) for label, r in runs.items()}
    resolve_s, resolve_outcome, _ = best["backfill resolve"]
    loop_total_s = loop_s * rows / loop_rows
    dry_rate = dry.outputs["total"] / dry_s
    print()
    print(f"{'':34}{'wall':>10}{'vs one-shot':>13}  notes")
    print(f"{'single UPDATE ... FROM':34}{shot_s:>9.2f}s{1.0:>12.2f}x  one transaction holding every row lock to the end")
    print(f"{'':58}runs: {_seconds(shots)}")
    for label, (elapsed, outcome, cycles) in best.items():
        out = outcome.outputs
        print(
            f"{label:34}{elapsed:>9.2f}s{elapsed / shot_s:>12.2f}x  {out['batches']} batches,"
            f" cycle p50 {_pct(cycles, 50):.0f} ms, p95 {_pct(cycles, 95):.0f} ms, longest batch {out['max_batch_ms']:.0f} ms"
        )
        print(
            f"{'':58}updated {out['updated']:,}, ambiguous {out['ambiguous']:,}, unresolved {out['unresolved']:,},"
            f" errors {out['errors']}"
        )
        print(
            f"{'':58}runs (wall/longest batch): "
            + ", ".join(f"{r[0]:.2f}s/{r[1].outputs['max_batch_ms']:.0f}ms" for r in runs[label])
        )
    print(
        f"{'per-row loop (1/10 sample, x10)':34}{loop_total_s:>9.2f}s{loop_total_s / shot_s:>12.2f}x  "
        f"{loop_rows:,} rows in {loop_s:.2f}s, extrapolated; backfill resolve is {loop_total_s / resolve_s:.1f}x faster"
    )
    print(f"{'dry run (classification only)':34}{dry_s:>9.2f}s{'':>13}  {dry_rate:,.0f} rows/s, {dry.outputs['batches']} batches")
    print(
        f"{'kill at ~40% + resume':34}{kill['resume_s']:>9.2f}s{'':>13}  killed after id {kill['killed_after'] or 0:,}"
        f" of {kill['max_key']:,}, resume ok={kill['resume_ok']}, rows checked {kill['total']:,},"
        f" rows differing from one-shot: {kill['differences']}"
    )
    print()
    checks = [
        ("backfill resolve <= 1.25x one-shot", resolve_s / shot_s <= TARGETS["ratio"], f"{resolve_s / shot_s:.2f}x"),
        (
            "longest batch <= 150 ms",
            resolve_outcome.outputs["max_batch_ms"] <= TARGETS["max_batch_ms"],
            f"{resolve_outcome.outputs['max_batch_ms']:.0f} ms",
        ),
        (
            "backfill >= 6x faster than per-row loop",
            loop_total_s / resolve_s >= TARGETS["loop_speedup"],
            f"{loop_total_s / resolve_s:.1f}x",
        ),
        ("dry run >= 100k rows/s", dry_rate >= TARGETS["dry_rows_per_s"], f"{dry_rate:,.0f} rows/s"),
        (
            "kill + resume equals one-shot",
            kill["killed_after"] is not None and kill["resume_ok"] and kill["differences"] == 0,
            f"{kill['differences']} differing rows",
        ),
    ]
    for name, ok, observed in checks:
        print(f"  [{'PASS' if ok else 'MISS'}] {name}: {observed}")
    if not all(ok for _, ok, _ in checks):
        sys.exit(1)


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}s" for v in values)


def _pct(values: list[float], pct: int) -> float:
    """Percentile of batch cycle times in ms (batch plus its checkpoint save, as seen from outside)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
