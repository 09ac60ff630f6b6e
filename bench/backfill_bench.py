"""Benchmark of ``kind: backfill`` against one plain UPDATE, on a real PostgreSQL and MariaDB.

    python bench/backfill_bench.py [--rows 1000000] [--repeat 3] [--pg-bin DIR] [--backends postgresql,mariadb]

Both databases run the same contenders side by side in one run (the MariaDB
side: ``backfill_bench_mariadb.py``).

Every backfill is measured as a whole ``runbook run`` process (start-up,
state store, journal and checkpoints included) against one plain ``UPDATE``
of the same rows on an identical table, run as a whole ``psql -c`` process
(or on a fresh connection when psql is not installed): the same rows,
indexes and foreign keys, freshly copied, vacuumed and checkpointed before
each timed run.

Uses ``RUNBOOK_BENCH_PG_URL`` when set (a database named ``backfill_bench``
is created and dropped there; server settings are left alone); else, with
``--pg-bin /usr/lib/postgresql/15/bin``, a private cluster of the machine's
PostgreSQL in a temporary directory; else the embedded server of the
``pgserver`` wheel. Both private servers get max_wal_size 4GB, so that no
checkpoint falls inside a timed run (on a shared server every other tenant's
DROP DATABASE forces one, and a batch just after a checkpoint writes a full
image of every index page it touches: on the machine's shared server the
join-resolve form's batches took up to 3 s).

Contenders, each against its own plain UPDATE:

* cheap update: ``SET y = x * 2`` over an integer key (update form);
* join-resolve: the demo's rule (``resolve`` form, ``ambiguous: first``) over
  ``plan_subscriptions`` with the demo's time-ordered UUID text ids, against
  ``UPDATE ... FROM (SELECT DISTINCT ON ...)``;
* UUID key: ``SET y = x * 2`` over a random ``uuid`` primary key;
* the per-row loop the seed replaces (a SELECT and an UPDATE per row, commit
  every 100), on a tenth of the rows, extrapolated;
* a dry run of the join-resolve form (classification only), beside the
  resolve SELECT alone over all rows in one statement (its ceiling);
* SIGKILL at ~40 % of the join-resolve run, then ``--resume``.

The timed contenders run ``--repeat`` times, interleaved, and the fastest run
of each counts: on a shared machine the load comes and goes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

DATABASE = "backfill_bench"
TARGETS = {
    "cheap update": 1.25,
    "join-resolve": 1.25,
    "uuid key": 1.35,
    "max_batch_ms": 150.0,
    "loop_speedup": 6.0,
    "dry_rows_per_s": 250_000.0,
}
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
ONE_SHOT = """
UPDATE plan_subscriptions ps
   SET subscriber_id = r.id
  FROM (SELECT DISTINCT ON (customer_id) customer_id, id
          FROM subscribers
         WHERE deleted_at IS NULL AND status = 'active'
         ORDER BY customer_id, created_at, id) r
 WHERE r.customer_id = ps.customer_id AND ps.subscriber_id IS NULL
"""


@dataclass
class Contender:
    label: str
    table: str
    plain: str
    step: dict[str, Any]
    # Rows whose result differs from what the plain UPDATE leaves (run after the backfill).
    check: str
    runs: list[Run] = field(default_factory=list)
    plains: list[float] = field(default_factory=list)


@dataclass
class Run:
    seconds: float
    outputs: dict[str, Any]


def contenders(dialect: str = "postgresql") -> list[Contender]:
    found = pg_contenders()
    if dialect == "postgresql":
        return found
    import backfill_bench_mariadb as mariadb

    checks = mariadb.checks()
    for c in found:
        c.check = checks[c.table]
        if c.table == "plan_subscriptions":
            c.plain = mariadb.ONE_SHOT
    return found


def pg_contenders() -> list[Contender]:
    cheap_check = "SELECT count(*) FROM {t} WHERE y IS DISTINCT FROM x * 2"
    return [
        Contender(
            "cheap update",
            "cheap",
            "UPDATE cheap SET y = x * 2 WHERE y IS NULL",
            {"table": "cheap", "key": "id", "where": "y IS NULL",
             "update": "UPDATE cheap SET y = x * 2 WHERE id BETWEEN :lo AND :hi AND y IS NULL"},
            cheap_check.format(t="cheap"),
        ),
        Contender(
            "join-resolve",
            "plan_subscriptions",
            ONE_SHOT,
            {"table": "plan_subscriptions", "key": "id", "where": "subscriber_id IS NULL", "resolve": RESOLVE,
             "set_column": "subscriber_id", "ambiguous": "first"},
            "SELECT count(*) FROM plan_subscriptions p FULL JOIN expected e USING (id)"
            " WHERE p.subscriber_id IS DISTINCT FROM e.subscriber_id OR p.id IS NULL OR e.id IS NULL",
        ),
        Contender(
            "uuid key",
            "uuids",
            "UPDATE uuids SET y = x * 2 WHERE y IS NULL",
            {"table": "uuids", "key": "id", "where": "y IS NULL",
             "update": "UPDATE uuids SET y = x * 2 WHERE id BETWEEN :lo AND :hi AND y IS NULL"},
            cheap_check.format(t="uuids"),
        ),
    ]


# ---------------------------------------------------------------- runbook runs


def runbook_file(workdir: Path, url: str, step: dict[str, Any], *, dry_run: bool = False) -> Path:
    body = {"id": "fill", "kind": "backfill", "connection": "db", **step}
    body["dry_run" if dry_run else "irreversible"] = "safe" if dry_run else True
    text = json.dumps({"name": "bench", "connections": {"db": url}, "steps": [body]}, indent=2)
    path = workdir / "bench.yaml"
    path.write_text(text)  # JSON is YAML
    return path


def runbook(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args], cwd=workdir, env=_env(), capture_output=True, text=True, timeout=3600,
        stdin=subprocess.DEVNULL,
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    # Compiled modules cached as on an operator's machine (this image sets PYTHONDONTWRITEBYTECODE).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def step_outputs(workdir: Path) -> dict[str, Any]:
    from runbook.state import StateStore

    with StateStore.open(None, workdir=workdir) as store:
        run = store.latest_run("bench", "default", dry_run=None)
        assert run is not None
        return dict(store.step_states(run.run_id)["fill"].outputs or {})


def timed_run(url: str, step: dict[str, Any], *, dry_run: bool = False) -> Run:
    with tempfile.TemporaryDirectory(prefix="backfill-bench-run-") as tmp:
        workdir = Path(tmp)
        path = runbook_file(workdir, url, step, dry_run=dry_run)
        started = time.perf_counter()
        done = runbook(workdir, "run", path.name, "--yes", *(["--dry-run"] if dry_run else []))
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"runbook run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
        return Run(elapsed, step_outputs(workdir))


# ---------------------------------------------------------------- database


@contextmanager
def server(pg_bin: str | None) -> Iterator[tuple[str, str]]:
    """The admin URL of the PostgreSQL to use, and what it is."""
    url = os.environ.get("RUNBOOK_BENCH_PG_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1), "RUNBOOK_BENCH_PG_URL"
        return
    if pg_bin:
        with private_cluster(Path(pg_bin)) as url:
            yield url, f"a private cluster of {pg_bin}"
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as datadir:
        pg = pgserver.get_server(datadir, cleanup_mode="stop")
        try:
            url = pg.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
            admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql("ALTER SYSTEM SET max_wal_size = '4GB'")
                conn.exec_driver_sql("SELECT pg_reload_conf()")
            admin.dispose()
            yield url, "embedded (pgserver)"
        finally:
            pg.cleanup()


@contextmanager
def private_cluster(bin_dir: Path) -> Iterator[str]:
    """A cluster of its own, from the machine's PostgreSQL binaries, in a temporary directory:
    no other tenant's CHECKPOINT (every DROP DATABASE forces one) lands in a timed run, and
    max_wal_size is 4GB so that none of its own does either. Run as the postgres user when
    this is root (initdb refuses root)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    datadir = Path(tempfile.mkdtemp(prefix="backfill-bench-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(datadir, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    pgdata = datadir / "data"

    def ctl(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True)

    try:
        ctl(str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--no-sync")
        options = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={datadir} -c max_wal_size=4GB"
        ctl(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-o", options, "-l", str(datadir / "log"), "-w", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            ctl(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


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


def uuid_text(expr: str) -> str:
    """SQL for a time-ordered UUID string (the demo's layout) from the integer ``expr``."""
    return (
        f"(lpad(to_hex({expr}), 12, '0') || '7' || substr(md5({expr}::text), 1, 19))"
    )


def formatted(raw: str) -> str:
    return f"substr({raw}, 1, 8) || '-' || substr({raw}, 9, 4) || '-' || substr({raw}, 13, 4) || '-' || substr({raw}, 17, 4) || '-' || substr({raw}, 21, 12)"


def generate(engine: sa.Engine, rows: int) -> None:
    """Seeds: cheap and uuids (x, y NULL); plan_subscriptions over rows/2 customers. Per 20
    customers: 16 with one active subscriber, 2 with two (ambiguous), 1 with none, 1 with a
    soft-deleted older one next to a live one."""
    customers = max(1, rows // 2)
    ps_id = formatted(uuid_text("g"))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE cheap_seed (id bigint PRIMARY KEY, x integer NOT NULL, y integer);"
            f"INSERT INTO cheap_seed SELECT g, mod(g, 100000), NULL FROM generate_series(1, {rows}) g;"
            "CREATE TABLE uuids_seed (id uuid PRIMARY KEY, x integer NOT NULL, y integer);"
            f"INSERT INTO uuids_seed SELECT gen_random_uuid(), mod(g, 100000), NULL FROM generate_series(1, {rows}) g;"
            "CREATE TABLE customers (id varchar(36) PRIMARY KEY, name varchar(200) NOT NULL);"
            "CREATE TABLE subscribers (id varchar(36) PRIMARY KEY, customer_id varchar(36) NOT NULL REFERENCES customers(id),"
            " status varchar(20) NOT NULL, created_at timestamptz NOT NULL, deleted_at timestamptz);"
            "CREATE TABLE plan_subscriptions_seed (id varchar(36) PRIMARY KEY, customer_id varchar(36) NOT NULL REFERENCES customers(id),"
            " plan_id varchar(36) NOT NULL, status varchar(20) NOT NULL, start_date timestamptz NOT NULL,"
            " created_at timestamptz NOT NULL, subscriber_id varchar(36));"
        )
        conn.exec_driver_sql(f"INSERT INTO customers SELECT 'c' || g, 'customer ' || g FROM generate_series(0, {customers - 1}) g")
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
            f"INSERT INTO plan_subscriptions_seed SELECT {ps_id}, 'c' || mod(g, {customers}), 'plan-' || mod(g, 7), 'active',"
            f" now() - interval '30 days', now() - interval '30 days', NULL FROM generate_series(1, {rows}) g"
        )
        conn.exec_driver_sql("ANALYZE customers; ANALYZE subscribers")


def reset(engine: sa.Engine, table: str) -> None:
    """A fresh ``table`` from its seed: same rows, indexes and FK, vacuumed, checkpointed."""
    extra = ""
    if table == "plan_subscriptions":
        extra = (
            "CREATE INDEX ix_plan_subscriptions_customer_id ON plan_subscriptions (customer_id);"
            "CREATE INDEX ix_plan_subscriptions_subscriber_id ON plan_subscriptions (subscriber_id);"
            "ALTER TABLE plan_subscriptions ADD CONSTRAINT fk_plan_subscriptions_subscriber_id"
            " FOREIGN KEY (subscriber_id) REFERENCES subscribers (id);"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (LIKE {table}_seed INCLUDING ALL);"
            f" INSERT INTO {table} SELECT * FROM {table}_seed; {extra}"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
        try:
            conn.exec_driver_sql("CHECKPOINT")
        except sa.exc.DBAPIError:
            pass  # not a superuser on an external server: the table is still fresh


@dataclass
class Backend:
    """One database the contenders run on: PostgreSQL or MariaDB."""

    name: str
    url: str
    engine: sa.Engine
    about: str

    @property
    def pg(self) -> bool:
        return self.name == "postgresql"

    def reset(self, table: str) -> None:
        if self.pg:
            reset(self.engine, table)
        else:
            import backfill_bench_mariadb as mariadb

            mariadb.reset(self.engine, table)

    def plain(self, contender: Contender) -> float:
        if self.pg:
            return plain_update(self.engine, self.url, contender)
        import backfill_bench_mariadb as mariadb

        return mariadb.plain_update(self.engine, self.url, contender.plain, contender.table)


def scalar(engine: sa.Engine, query: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(query).scalar_one())


def plain_update(engine: sa.Engine, url: str, contender: Contender) -> float:
    """One plain UPDATE, as a whole ``psql -c`` process when psql is installed (else a fresh connection here)."""
    reset(engine, contender.table)
    psql = shutil.which("psql")
    started = time.perf_counter()
    if psql:
        libpq = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        subprocess.run([psql, "-q", "-v", "ON_ERROR_STOP=1", libpq, "-c", contender.plain], check=True, capture_output=True)
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql(contender.plain)
    elapsed = time.perf_counter() - started
    if contender.table == "plan_subscriptions":
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS expected; CREATE TABLE expected AS SELECT id, subscriber_id FROM plan_subscriptions")
    return elapsed


def backfill(db: Backend, contender: Contender) -> Run:
    db.reset(contender.table)
    run = timed_run(db.url, contender.step)
    wrong = scalar(db.engine, contender.check)
    if wrong:
        raise SystemExit(f"{contender.label}: {wrong:,} rows differ from the plain UPDATE's result")
    return run


def per_row_loop(db: Backend, rows: int) -> tuple[float, int]:
    """The script the seed replaces: per subscription a SELECT and an UPDATE, commit every 100.
    Run on the first tenth of the keys; returns (seconds, rows)."""
    engine = db.engine
    db.reset("plan_subscriptions")
    sample = max(1, rows // 10)
    with engine.connect() as conn:
        keys = [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM plan_subscriptions ORDER BY id LIMIT {sample}")]
    resolve = sa.text(RESOLVE)
    update = sa.text("UPDATE plan_subscriptions SET subscriber_id = :v WHERE id = :k AND subscriber_id IS NULL")
    started = time.perf_counter()
    with engine.connect() as conn:
        for n, key in enumerate(keys, 1):
            row = conn.execute(resolve, {"lo": key, "hi": key}).one_or_none()
            if row is not None and row.value is not None:
                conn.execute(update, {"v": row.value, "k": key})
            if n % 100 == 0:
                conn.commit()
        conn.commit()
    return time.perf_counter() - started, len(keys)


def kill_and_resume(db: Backend, step: dict[str, Any]) -> dict[str, Any]:
    """``runbook run`` SIGKILLed once its checkpoint counts ~40 % of the rows; ``--resume`` finishes."""
    from runbook.state import StateStore

    url, engine = db.url, db.engine
    db.reset("plan_subscriptions")
    rows = scalar(engine, "SELECT count(*) FROM plan_subscriptions")
    with tempfile.TemporaryDirectory(prefix="backfill-bench-kill-") as tmp:
        workdir = Path(tmp)
        path = runbook_file(workdir, url, step)
        child = subprocess.Popen(
            [sys.executable, "-m", "runbook", "run", path.name, "--yes"], cwd=workdir, env=_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        killed_at = None
        while child.poll() is None and killed_at is None:
            time.sleep(0.01)
            if not (workdir / ".runbook" / "state.db").exists():
                continue
            with StateStore.open(None, workdir=workdir) as store:
                run = store.latest_run("bench", "default")
                saved = store.load_checkpoint(run.run_id, "fill") if run is not None else None
            if saved and saved["total"] >= 0.4 * rows:
                child.send_signal(signal.SIGKILL)
                child.wait()
                killed_at = saved["total"]
        started = time.perf_counter()
        resumed = runbook(workdir, "run", path.name, "--resume", "--yes")
        elapsed = time.perf_counter() - started
        outputs = step_outputs(workdir) if resumed.returncode == 0 else {}
    return {
        "killed_after": killed_at,
        "rows": rows,
        "resume_ok": resumed.returncode == 0,
        "resume_s": elapsed,
        "differences": scalar(engine, contenders(db.name)[1].check),
        "total": outputs.get("total"),
    }


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed contender; the fastest counts (default 3)")
    parser.add_argument(
        "--pg-bin", help="run a private cluster of these PostgreSQL binaries, e.g. /usr/lib/postgresql/15/bin"
    )
    parser.add_argument("--backends", default="postgresql,mariadb", help="comma-separated: postgresql, mariadb")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    checks: list[tuple[str, bool, str]] = []
    for name in args.backends.split(","):
        with backend(name, args.pg_bin) as db:
            checks += suite(db, args.rows, args.repeat)
    print()
    for label, ok, observed in checks:
        print(f"  [{'PASS' if ok else 'MISS'}] {label}: {observed}")
    if not all(ok for _, ok, _ in checks):
        sys.exit(1)


@contextmanager
def backend(name: str, pg_bin: str | None) -> Iterator[Backend]:
    if name == "postgresql":
        with server(pg_bin) as (admin_url, where), bench_database(admin_url) as url:
            engine = sa.create_engine(url)
            try:
                engine.connect().close()
                version = ".".join(str(v) for v in engine.dialect.server_version_info or ())
                about = f"PostgreSQL {version}, {where}, max_wal_size {scalar_text(engine, 'SHOW max_wal_size')}"
                yield Backend(name, url, engine, about)
            finally:
                engine.dispose()
        return
    import backfill_bench_mariadb as mariadb

    with mariadb.bench_database() as url:
        engine = sa.create_engine(url)
        try:
            yield Backend(name, url, engine, f"MariaDB {mariadb.describe(engine)}")
        finally:
            engine.dispose()


def suite(db: Backend, rows: int, repeat: int) -> list[tuple[str, bool, str]]:
    """Every contender on one database; prints its table and returns its checks."""
    timed = contenders(db.name)
    started = time.perf_counter()
    if db.pg:
        generate(db.engine, rows)
    else:
        import backfill_bench_mariadb as mariadb

        mariadb.generate(db.engine, rows)
    load = os.getloadavg()
    print(
        f"\n== {db.name}: generated {rows:,} rows per table in {time.perf_counter() - started:.1f}s ({db.about},"
        f" {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})",
        flush=True,
    )
    # Interleaved, best of --repeat: a shared machine's load comes and goes.
    for _ in range(repeat):
        for contender in timed:
            contender.plains.append(db.plain(contender))
            contender.runs.append(backfill(db, contender))
    join = timed[1]
    loop_s, loop_rows = per_row_loop(db, rows)
    # The dry run and its ceiling side by side, interleaved, best of --repeat each (both only read).
    db.reset("plan_subscriptions")
    selects, drys = [], []
    for _ in range(repeat):
        selects.append(resolve_select(db))
        drys.append(timed_run(db.url, join.step, dry_run=True))
    select_s = min(selects)
    dry = min(drys, key=lambda r: r.seconds)
    startup_s = startup_floor(db)
    kill = kill_and_resume(db, join.step)
    load = os.getloadavg()

    print(f"(load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})\n")
    print(f"{'':16}{'plain UPDATE':>14}{'runbook run':>13}{'ratio':>8}  batches  batch time p50 / p99 / max")
    checks: list[tuple[str, bool, str]] = []
    best: dict[str, Run] = {}
    for contender in timed:
        plain = min(contender.plains)
        run = min(contender.runs, key=lambda r: r.seconds)
        best[contender.label] = run
        out = run.outputs
        ratio = run.seconds / plain
        print(
            f"{contender.label:16}{plain:>13.2f}s{run.seconds:>12.2f}s{ratio:>7.2f}x  {out['batches']:>7}"
            f"  {out['batch_ms_p50']:.0f} / {out['batch_ms_p99']:.0f} / {out['max_batch_ms']:.0f} ms"
        )
        print(
            f"{'':16}runs: plain {_seconds(contender.plains)}; runbook "
            + ", ".join(f"{r.seconds:.2f}s (p50 {r.outputs['batch_ms_p50']:.0f}, p99 {r.outputs['batch_ms_p99']:.0f},"
                        f" max {r.outputs['max_batch_ms']:.0f} ms)" for r in contender.runs)
        )
        checks.append((f"{db.name}: {contender.label} <= {TARGETS[contender.label]}x", ratio <= TARGETS[contender.label], f"{ratio:.2f}x"))
    join_run = best["join-resolve"]
    checks.append(
        (f"{db.name}: join-resolve longest batch <= 150 ms", join_run.outputs["max_batch_ms"] <= TARGETS["max_batch_ms"],
         f"{join_run.outputs['max_batch_ms']:.0f} ms")
    )
    loop_total_s = loop_s * rows / loop_rows
    speedup = loop_total_s / join_run.seconds
    print(f"{'floor: start-up':16}{'':14}{startup_s:>12.2f}s{'':8}  python -c 'import runbook.engine, sqlalchemy' and the driver, best of 3")
    print(f"{'floor: SELECT':16}{'':14}{select_s:>12.2f}s{'':8}  the resolve SELECT alone over all rows, one statement:"
          f" {rows / select_s:,.0f} rows/s (the dry run's ceiling)")
    print(f"{'per-row loop':16}{'':14}{loop_total_s:>12.2f}s{'':8}  {loop_rows:,} rows in {loop_s:.2f}s, extrapolated;"
          f" the join-resolve backfill is {speedup:.1f}x faster")
    checks.append((f"{db.name}: backfill >= 6x faster than the per-row loop", speedup >= TARGETS["loop_speedup"], f"{speedup:.1f}x"))
    dry_rate = dry.outputs["total"] / dry.seconds
    select_rate = rows / select_s
    print(f"{'dry run':16}{'':14}{dry.seconds:>12.2f}s{'':8}  {dry_rate:,.0f} rows/s classified, whole process, against the bare"
          f" SELECT's {select_rate:,.0f} rows/s ({dry_rate / select_rate:.0%} of it); {dry.outputs['batches']} read-only chunks,"
          f" chunk time p50 {dry.outputs['batch_ms_p50']:.0f} / p99 {dry.outputs['batch_ms_p99']:.0f} / max {dry.outputs['max_batch_ms']:.0f} ms")
    print(f"{'':16}runs: SELECT {_seconds(selects)}; dry run {_seconds([r.seconds for r in drys])}")
    checks.append((f"{db.name}: dry-run classification >= 250,000 rows/s", dry_rate >= TARGETS["dry_rows_per_s"], f"{dry_rate:,.0f} rows/s"))
    print(
        f"{'kill + resume':16}{'':14}{kill['resume_s']:>12.2f}s{'':8}  killed after {kill['killed_after'] or 0:,} of {kill['rows']:,} rows,"
        f" resume ok={kill['resume_ok']}, rows checked {kill['total'] or 0:,}, rows differing from the plain UPDATE: {kill['differences']}",
        flush=True,
    )
    checks.append(
        (f"{db.name}: kill + resume equals the plain UPDATE", kill["killed_after"] is not None and kill["resume_ok"] and kill["differences"] == 0,
         f"{kill['differences']} differing rows")
    )
    return checks


def startup_floor(db: Backend) -> float:
    driver = "psycopg" if db.pg else "pymysql"
    code = f"import runbook.engine, sqlalchemy, {driver}"
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=_env())
        best = min(best, time.perf_counter() - started)
    return best


def resolve_select(db: Backend) -> float:
    """The join-resolve form's SELECT over the whole table in one statement, counted on the server."""
    with db.engine.connect() as conn:
        lo, hi = conn.exec_driver_sql("SELECT min(id), max(id) FROM plan_subscriptions").one()
        query = sa.text(f"SELECT count(*), count(q.value), sum(q.candidates) FROM ({RESOLVE}) q")
        started = time.perf_counter()
        conn.execute(query, {"lo": lo, "hi": hi}).one()
        return time.perf_counter() - started


def scalar_text(engine: sa.Engine, query: str) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(query).scalar_one())


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}s" for v in values)


if __name__ == "__main__":
    main()
