"""A PostgreSQL state store keeps to a schema of its own, versioned, next to an application.

Real `runbook` processes and a real PostgreSQL: the store shares the database
with an application's tables in ``public`` (the obvious setup with one
database) and must neither touch them nor end up in their backups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.errors import StateStoreError
from runbook.state import SCHEMA_VERSION, StateStore
from runbook.state.schema import metadata, schema_version
from tests.state.store_tables import store_engine

STORE_TABLES = {table.name for table in metadata.sorted_tables}
APP_DDL = [
    # The names runbook used to create in public, as an application's own tables.
    "CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, payload jsonb)",
    "CREATE TABLE locks (name text PRIMARY KEY, owner text)",
    "INSERT INTO events (kind, payload) VALUES ('signup', '{\"user\": 1}'), ('login', NULL)",
    "INSERT INTO locks VALUES ('billing', 'cron')",
]
STEPS = """
name: app
steps:
  - id: first
    kind: command
    run: "echo ran >> first.count"
    irreversible: true
  - id: second
    kind: command
    run: "echo ran >> second.count; touch second.started; while [ ! -e release ]; do sleep 0.02; done"
    irreversible: true
    timeout: 120s
"""


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.yaml").write_text(textwrap.dedent(STEPS))
    return tmp_path


def runbook(project: Path, *args: str, state: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        cwd=project, env={**clean, "RUNBOOK_STATE_URL": state, **env},
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Run statements as a plain client in one transaction; the last one's rows."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = None
            for statement in statements:
                result = conn.execute(sa.text(statement))
            return [tuple(row) for row in result] if result is not None and result.returns_rows else []
    finally:
        engine.dispose()


def relations(url: str) -> dict[str, set[str]]:
    """Every table, index and sequence of the database, by schema (system schemas left out)."""
    rows = sql(
        url,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'i', 'S', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%'",
    )
    found: dict[str, set[str]] = {}
    for schema, name in rows:
        found.setdefault(str(schema), set()).add(str(name))
    return found


def tables(url: str, schema: str) -> set[str]:
    return {str(name) for (name,) in sql(url, f"SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'")}


def _pg_dump_binary() -> str:
    """The pg_dump shipped with the embedded server (16) when installed: pg_dump refuses a
    server newer than itself, and the system's may be older (Debian 12 has 15)."""
    try:
        import pgserver
    except ImportError:
        return "pg_dump"
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    return str(bundled) if bundled.exists() else "pg_dump"


def with_query(url: str, suffix: str) -> str:
    """``url`` + ``?schema=...``, joined with ``&`` when the URL has a query already
    (the embedded server's URL names its socket directory in ``?host=``)."""
    return url + ("&" + suffix[1:] if "?" in url and suffix.startswith("?") else suffix)


def pg_dump(url: str, *args: str) -> str:
    out = subprocess.run([_pg_dump_binary(), "--no-owner", *args, libpq(url)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # Newer pg_dump brackets its output with a random \restrict key; the rest is deterministic.
    return "".join(line for line in out.stdout.splitlines(keepends=True) if not line.startswith(("\\restrict", "\\unrestrict")))


def versions(url: str, schema: str = "runbook") -> list[int]:
    engine = store_engine(url, schema)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version)).scalars())
    finally:
        engine.dispose()


def test_application_tables_in_public_are_untouched_and_the_run_works(pg_url: str, project: Path) -> None:
    """An application with its own ``events`` and ``locks`` tables in ``public``: a run
    passes, the application's tables keep their definitions and rows, every relation of
    the store (tables, indexes, sequences) is in schema ``runbook``, and the
    application's pg_dump, taken with ``--exclude-schema=runbook``, is byte for byte what
    it was before runbook came."""
    sql(pg_url, *APP_DDL)
    before = relations(pg_url)
    dump_before = pg_dump(pg_url, "--exclude-schema=runbook")
    (project / "release").touch()
    done = runbook(project, "run", "app.yaml", state=pg_url)
    assert done.returncode == 0, done.stdout + done.stderr
    after = relations(pg_url)
    assert after["public"] == before["public"]
    assert tables(pg_url, "runbook") == STORE_TABLES and set(after) == {"public", "runbook"}
    assert sql(pg_url, "SELECT kind, payload::text FROM events ORDER BY id") == [("signup", '{"user": 1}'), ("login", None)]
    assert pg_dump(pg_url, "--exclude-schema=runbook") == dump_before
    whole = pg_dump(pg_url, "--schema-only")
    assert "CREATE TABLE runbook.runs" in whole and "CREATE TABLE public.runs" not in whole
    history = runbook(project, "history", state=pg_url)
    assert history.returncode == 0 and "passed" in history.stdout, history.stdout + history.stderr


def test_schema_from_url_parameter_or_environment(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``?schema=`` in the URL, else $RUNBOOK_STATE_SCHEMA, else ``runbook``: each schema is a
    store of its own in the same database, and nothing lands in ``public``."""
    monkeypatch.delenv("RUNBOOK_STATE_SCHEMA", raising=False)
    run = {"runbook": "r", "env": "prod", "path": "r.yaml", "fingerprint": "f", "dry_run": False, "actor": "a", "params": {}}
    with StateStore.open(pg_url) as default:
        assert default.schema == "runbook"
        default.create_run(**run, run_id="in-default")
    with StateStore.open(with_query(pg_url, "?schema=ops_state")) as by_url:
        assert by_url.schema == "ops_state" and by_url.list_runs() == []
        by_url.create_run(**run, run_id="in-url")
    monkeypatch.setenv("RUNBOOK_STATE_SCHEMA", "team_a")
    with StateStore.open(pg_url) as by_env:
        assert by_env.schema == "team_a" and by_env.list_runs() == []
    with StateStore.open(with_query(pg_url, "?schema=ops_state")) as url_wins:
        assert [r.run_id for r in url_wins.list_runs()] == ["in-url"]
    for schema in ("runbook", "ops_state", "team_a"):
        assert tables(pg_url, schema) == STORE_TABLES, schema
        assert versions(pg_url, schema) == [SCHEMA_VERSION]
    assert tables(pg_url, "public") == set()


@pytest.mark.parametrize(
    ("suffix", "env", "message"),
    [
        ("?schema=public", {}, "'public' (from ?schema= of "),
        ("?schema=pg_temp_1", {}, "is not runbook's to use"),
        ("", {"RUNBOOK_STATE_SCHEMA": "Ops-State"}, "invalid state store schema 'Ops-State' (from $RUNBOOK_STATE_SCHEMA)"),
        ("", {"RUNBOOK_STATE_SCHEMA": "information_schema"}, "is not runbook's to use"),
        ("?schema=a&schema=b", {}, "?schema= is given more than once"),
    ],
)
def test_a_schema_that_is_not_runbooks_is_refused_with_exit_2(
    pg_url: str, project: Path, suffix: str, env: dict[str, str], message: str
) -> None:
    """``public``, system schemas and names that need quoting are refused before anything is created."""
    out = runbook(project, "history", state=with_query(pg_url, suffix), **env)
    assert out.returncode == 2 and message in out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert set(relations(pg_url)) <= {"public"} and tables(pg_url, "public") == set()


def test_a_schema_parameter_on_a_sqlite_store_is_refused(project: Path) -> None:
    out = runbook(project, "history", state=f"sqlite:///{project / 'state.db'}?schema=x")
    assert out.returncode == 2 and "a SQLite store has no schemas" in out.stderr, out.stderr


def _to_legacy_layout(url: str) -> None:
    """Turn a store of this version into what runbook before schema version 3 left: the
    tables of version 2 (version 3 changed none; version 4 added ``step_logs`` and
    ``runs.workdir``, version 5 ``controls`` and two columns of ``approvals``, version 6 ``host_attempts``) in
    ``public``, no version recorded (upgraded from 0 on open)."""
    added = {"step_logs", "controls", "host_attempts"}
    moves = [f"ALTER TABLE runbook.{name} SET SCHEMA public" for name in sorted(STORE_TABLES - added)]
    drops = [f"DROP TABLE runbook.{name}" for name in sorted(added)]
    columns = ["ALTER TABLE public.runs DROP COLUMN workdir", "ALTER TABLE public.approvals DROP COLUMN os_user", "ALTER TABLE public.approvals DROP COLUMN decision"]
    sql(url, *drops, *moves, *columns, "DELETE FROM public.schema_version", "DROP SCHEMA runbook")
    assert tables(url, "public") == STORE_TABLES - added and "runbook" not in relations(url)


def test_store_in_public_with_an_unfinished_run_is_moved_and_resumable(pg_url: str, project: Path) -> None:
    """A run SIGKILLed mid-step under the old layout (the store in ``public``, schema
    version 2): the next `runbook run --resume` moves the store into ``runbook`` in one
    transaction, upgrades it, takes the dead run's lock over and finishes the run: the
    passed step is not run again, the killed one is; no table of the store is left in
    ``public``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    first = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", "app.yaml"], cwd=project, env={**clean, "RUNBOOK_STATE_URL": pg_url},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (project / "second.started").exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the second step never started"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    _to_legacy_layout(pg_url)
    sql(pg_url, "CREATE TABLE audit (id serial PRIMARY KEY, note text)")  # the application's, beside the old store
    (killed_run,) = sql(pg_url, "SELECT run_id, status FROM public.runs")
    assert killed_run[1] == "running"

    # The killed step's loop still runs: the resume stops its process group before running the step again.
    (project / "release").touch()
    resumed = runbook(project, "run", "app.yaml", "--resume", state=pg_url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert tables(pg_url, "public") == {"audit"}
    assert tables(pg_url, "runbook") == STORE_TABLES
    assert versions(pg_url) == list(range(1, SCHEMA_VERSION + 1))
    with StateStore.open(pg_url) as store:
        run = store.get_run(str(killed_run[0]))
        assert run is not None and run.status == "passed"
        assert [r.run_id for r in store.list_runs()] == [run.run_id]
        assert any(e.event == "lock_taken_over" for e in store.events(run.run_id))
    assert (project / "first.count").read_text().count("ran") == 1
    assert (project / "second.count").read_text().count("ran") == 2


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from runbook.state import StateStore
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.0005)
with StateStore.open(url) as store:
    print(len(store.list_runs()), flush=True)
"""


@pytest.mark.parametrize("layout", ["new", "legacy"])
def test_processes_opening_a_store_at_once(pg_url: str, tmp_path: Path, layout: str) -> None:
    """Four processes released together on an empty database (or on an old store in
    ``public``): every one opens the store; it is created (or moved and upgraded) once."""
    if layout == "legacy":
        with StateStore.open(pg_url) as store:
            store.create_run(runbook="r", env="e", path="p", fingerprint="f", dry_run=False, actor="a", params={})
        _to_legacy_layout(pg_url)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, pg_url, str(tmp_path / f"ready{i}"), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(4)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline, "the processes never became ready"
        time.sleep(0.01)
    go.touch()
    outcomes = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outcomes
    expected_runs = "1" if layout == "legacy" else "0"
    assert [out.strip() for out, _ in outcomes] == [expected_runs] * 4
    assert versions(pg_url) == (list(range(1, SCHEMA_VERSION + 1)) if layout == "legacy" else [SCHEMA_VERSION])
    assert tables(pg_url, "runbook") == STORE_TABLES and tables(pg_url, "public") == set()


def test_an_older_runbook_refuses_a_newer_store_with_exit_2(db_url: str, project: Path) -> None:
    """A store at a schema version this runbook does not know is refused, exit 2, with both
    versions named; the store is left as it was."""
    with StateStore.open(db_url) as store:
        store.create_run(runbook="r", env="e", path="p", fingerprint="f", dry_run=False, actor="a", params={})
    engine = store_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION + 1, applied_at=datetime.now(UTC)))
    engine.dispose()
    out = runbook(project, "history", state=db_url)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this runbook" in out.stderr
    assert f"it reads and writes schema version {SCHEMA_VERSION}" in out.stderr
    assert "Traceback" not in out.stderr and "upgrade runbook" in out.stderr
    assert versions(db_url) == [SCHEMA_VERSION, SCHEMA_VERSION + 1]


def test_a_role_without_create_on_the_database_uses_a_schema_made_for_it(pg_url: str) -> None:
    """An application role usually may not create schemas: with none made for it the open
    fails in one line naming the permission; once its DBA created ``runbook`` for it, the
    store is created inside it."""
    role = f"rb_{uuid.uuid4().hex[:8]}"
    sql(pg_url, f"CREATE ROLE {role} LOGIN")
    as_role = sa.make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    try:
        with pytest.raises(StateStoreError) as caught:
            StateStore.open(as_role)
        assert "permission denied for database" in caught.value.message and "\n" not in caught.value.message
        assert "runbook" not in relations(pg_url)
        sql(pg_url, f"CREATE SCHEMA runbook AUTHORIZATION {role}")
        with StateStore.open(as_role) as store:
            store.create_run(runbook="r", env="e", path="p", fingerprint="f", dry_run=False, actor="a", params={})
        owners = sql(pg_url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'runbook'")
        assert owners == [(role,)] and tables(pg_url, "runbook") == STORE_TABLES
    finally:
        sql(pg_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
