"""Database check kinds against real SQLite files, a real PostgreSQL and a real MariaDB (or MySQL),
plus ``run_passed`` against a real state store. What only MariaDB shows (how it finds long
transactions) is in test_mariadb.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from runbook.checks import CheckContext, CheckResult, get_check_kind
from runbook.connections import Connections
from runbook.masking import Masker
from runbook.state import StateStore
from runbook.state.schema import runs
from tests.alembic_project import write_project, write_revision
from tests.checks.sample_schema import SECRET, build_schema, check, default_schema, make_context


def break_pg_schema(url: str) -> None:
    """A NOT VALID foreign key, and the invalid index a failed CREATE INDEX CONCURRENTLY leaves."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(
            "ALTER TABLE child ADD CONSTRAINT fk_child_legacy"
            " FOREIGN KEY (legacy_parent_id) REFERENCES parent (id) NOT VALID"
        ))
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("CREATE UNIQUE INDEX CONCURRENTLY ix_child_code ON child (code)"))
    engine.dispose()


@pytest.fixture
def ctx(any_db_url: str, tmp_path: Path) -> Iterator[CheckContext]:
    """The sample schema on SQLite, PostgreSQL and MariaDB."""
    build_schema(any_db_url)
    yield from make_context(any_db_url, tmp_path)


@pytest.fixture
def pg_ctx(pg_url: str, tmp_path: Path) -> Iterator[CheckContext]:
    """The sample schema on PostgreSQL, with an unvalidated key and an invalid index."""
    build_schema(pg_url)
    break_pg_schema(pg_url)
    yield from make_context(pg_url, tmp_path)


# ---------------------------------------------------------------- schema

# A schema that is there, without the sample's tables.
OTHER_SCHEMA = {"sqlite": "temp", "postgresql": "information_schema", "mysql": "mysql"}


def test_table_exists(ctx: CheckContext) -> None:
    """table_exists sees tables, with or without a schema (on MySQL its database), and asserts absence with exists: false."""
    schema = default_schema(ctx)
    assert check("table_exists", ctx, table="child") == CheckResult(True, "present", "present")
    assert check("table_exists", ctx, table="child", schema=schema).ok
    assert check("table_exists", ctx, table=f"{schema}.child").ok
    elsewhere = OTHER_SCHEMA[ctx.connections.dialect("db")]
    assert check("table_exists", ctx, table="child", schema=elsewhere) == CheckResult(False, "absent", "present")
    assert check("table_exists", ctx, table="nope") == CheckResult(False, "absent", "present")
    assert check("table_exists", ctx, table="nope", exists=False).ok
    assert check("table_exists", ctx, table="child", exists=False) == CheckResult(False, "present", "absent")


def test_column_exists_compares_type_family_and_nullability(ctx: CheckContext) -> None:
    """column_exists matches types loosely by family (MySQL's INTEGER(11), TINYINT(1) for BOOLEAN,
    MariaDB's LONGTEXT for JSON too) and reports the observed type and nullability."""
    assert check("column_exists", ctx, table="child", column="code").ok
    for spelled in ("varchar", "character varying", "text", "VARCHAR(255)"):
        assert check("column_exists", ctx, table="child", column="code", type=spelled).ok, spelled
    assert check("column_exists", ctx, table="child", column="parent_id", type="integer", nullable=False).ok
    assert check("column_exists", ctx, table="child", column="parent_id", type="bigint", nullable=False).ok
    assert check("column_exists", ctx, table="child", column="note", type="text", nullable=True).ok
    assert check("column_exists", ctx, table="parent", column="active", type="boolean", nullable=False).ok
    assert check("column_exists", ctx, table="parent", column="settings", type="json").ok
    wrong = check("column_exists", ctx, table="child", column="code", type="integer")
    assert (wrong.ok, wrong.observed, wrong.expected) == (False, "VARCHAR(20) NULL", "integer")
    assert wrong.detail == "type VARCHAR(20) is not a integer"
    nullable = check("column_exists", ctx, table="child", column="note", nullable=False)
    assert (nullable.ok, nullable.observed, nullable.expected) == (False, "TEXT NULL", "any type NOT NULL")
    assert nullable.detail == "column is nullable"
    missing = check("column_exists", ctx, table="child", column="gone")
    assert (missing.ok, missing.observed, missing.detail) == (False, "absent", "child has no column gone")
    assert check("column_exists", ctx, table="child", column="gone", exists=False).ok
    assert check("column_exists", ctx, table="nope", column="id", exists=False).detail == "table nope does not exist"
    assert not check("column_exists", ctx, table="child", column="note", exists=False).ok


def test_foreign_key_exists_by_name_or_columns(ctx: CheckContext) -> None:
    """foreign_key_exists finds a key by constraint name or by columns and referenced table."""
    assert check("foreign_key_exists", ctx, table="child", constraint="fk_child_parent").ok
    assert check(
        "foreign_key_exists", ctx, table="child", columns=["parent_id"], referenced_table="parent", referenced_columns=["id"]
    ).ok
    assert check("foreign_key_exists", ctx, table="child", columns=["parent_id"], referenced_table="parent").ok
    qualified = f"{default_schema(ctx)}.parent"
    assert check("foreign_key_exists", ctx, table="child", columns=["parent_id"], referenced_table=qualified).ok
    for columns, referenced in ((["parent_id"], "child"), (["legacy_parent_id"], "parent")):
        other = check("foreign_key_exists", ctx, table="child", columns=columns, referenced_table=referenced)
        assert (other.ok, other.observed) == (False, "absent")
        assert "fk_child_parent (parent_id) -> parent (id)" in (other.detail or "")
    assert check("foreign_key_exists", ctx, table="child", constraint="fk_nope", exists=False).ok
    assert not check("foreign_key_exists", ctx, table="child", constraint="fk_child_parent", exists=False).ok
    assert check("foreign_key_exists", ctx, table="nope", constraint="fk_child_parent", exists=False).ok


def test_foreign_key_not_valid_on_postgresql(pg_ctx: CheckContext) -> None:
    """A NOT VALID key is reported as such: it fails exists: true and exists: false."""
    result = check("foreign_key_exists", pg_ctx, table="child", columns=["legacy_parent_id"], referenced_table="parent")
    assert (result.ok, result.observed) == (False, "present but NOT VALID")
    assert "fk_child_legacy" in (result.detail or "") and "VALIDATE CONSTRAINT" in (result.detail or "")
    gone = check("foreign_key_exists", pg_ctx, table="child", constraint="fk_child_legacy", exists=False)
    assert (gone.ok, gone.observed) == (False, "present but NOT VALID")
    assert check("foreign_key_exists", pg_ctx, table="child", constraint="fk_child_parent").ok


def test_index_exists_by_name_or_columns(ctx: CheckContext) -> None:
    """index_exists finds an index by name or by its ordered columns, and asserts absence;
    the primary key and a unique constraint count as indexes on their columns."""
    assert check("index_exists", ctx, table="child", index="ix_child_parent").ok
    assert check("index_exists", ctx, table="child", columns=["parent_id"]).ok
    assert check("index_exists", ctx, table="child", index="ix_child_parent", columns=["parent_id"]).ok
    assert check("index_exists", ctx, table="child", columns=["code", "id"]).ok
    dialect = ctx.connections.dialect("db")
    if dialect != "sqlite":
        # SQLite names a unique constraint's index itself (sqlite_autoindex_child_1), and its
        # INTEGER PRIMARY KEY is the rowid, without an index.
        assert check("index_exists", ctx, table="child", index="uq_child_code").ok
        primary = {"postgresql": "child_pkey (id)", "mysql": "PRIMARY (id)"}[dialect]
        assert check("index_exists", ctx, table="child", columns=["id"]) == CheckResult(True, "present", "present", primary)
    wrong = check("index_exists", ctx, table="child", index="ix_child_parent", columns=["code"])
    assert (wrong.ok, wrong.observed) == (False, "absent") and "ix_child_parent (parent_id)" in (wrong.detail or "")
    assert check("index_exists", ctx, table="child", columns=["note"], exists=False).ok
    assert check("index_exists", ctx, table="child", index="ix_child_parent", exists=False).observed == "present"


def test_invalid_index_on_postgresql(pg_ctx: CheckContext) -> None:
    """The invalid index a failed CREATE INDEX CONCURRENTLY leaves is reported, not taken as present."""
    result = check("index_exists", pg_ctx, table="child", index="ix_child_code")
    assert (result.ok, result.observed) == (False, "present but INVALID")
    assert "drop it and create it again" in (result.detail or "")
    assert not check("index_exists", pg_ctx, table="child", columns=["code"], exists=False).ok
    # The primary key's index counts as an index on its columns.
    assert check("index_exists", pg_ctx, table="child", columns=["id"]).ok


def test_identifiers_are_validated() -> None:
    """Table, column and key names must be plain identifiers; nothing else can reach the SQL."""
    bad = [
        ("table_exists", {"connection": "db", "table": "child; DROP TABLE parent"}),
        ("column_exists", {"connection": "db", "table": "child", "column": 'a"b'}),
        ("no_nulls", {"connection": "db", "table": "a.b.c", "column": "x"}),
        ("no_orphans", {"connection": "db", "table": "child", "column": "x", "references": "parent"}),
        ("no_orphans", {"connection": "db", "table": "child", "column": "x", "references": "parent.id--"}),
        ("table_exists", {"connection": "db", "table": "s1.child", "schema": "s2"}),
        ("foreign_key_exists", {"connection": "db", "table": "child"}),
        ("foreign_key_exists", {"connection": "db", "table": "child", "columns": ["a"]}),
        ("index_exists", {"connection": "db", "table": "child"}),
        ("row_count", {"connection": "db", "table": "child", "query": "SELECT 1"}),
        ("row_count", {"connection": "db", "table": "child", "expect": "matches '('"}),
    ]
    for kind_name, params in bad:
        with pytest.raises(ValidationError):
            get_check_kind(kind_name).Params.model_validate(params)


# ---------------------------------------------------------------- data


def test_no_nulls_counts_and_samples_keys(ctx: CheckContext) -> None:
    """no_nulls observes the count of NULLs and shows up to five primary keys of offending rows."""
    result = check("no_nulls", ctx, table="child", column="note")
    assert (result.ok, result.observed, result.expected) == (False, "2 rows", "0 rows")
    assert result.detail == "id of rows with NULL note: 2, 3"
    assert check("no_nulls", ctx, table="child", column="note", where="parent_id = 2").observed == "1 row"
    assert check("no_nulls", ctx, table="child", column="parent_id").ok
    missing = check("no_nulls", ctx, table="child", column="gone")
    assert (missing.ok, missing.detail) == (False, "child has no column gone")


def test_no_orphans_counts_and_samples_values(ctx: CheckContext) -> None:
    """no_orphans counts values missing from the referenced key and shows a sample of them."""
    result = check("no_orphans", ctx, table="child", column="legacy_parent_id", references="parent.id")
    assert (result.ok, result.observed) == (False, "2 rows")
    assert result.detail == "legacy_parent_id values missing from parent.id: 7, 8"
    scoped = check("no_orphans", ctx, table="child", column="legacy_parent_id", references="parent.id", where="child.id < 3")
    assert scoped.observed == "1 row"
    assert check("no_orphans", ctx, table="child", column="parent_id", references="parent.id").ok
    schema = default_schema(ctx)
    assert check("no_orphans", ctx, table=f"{schema}.child", column="parent_id", references=f"{schema}.parent.id").ok
    missing = check("no_orphans", ctx, table="child", column="parent_id", references="nope.id")
    assert (missing.ok, missing.detail) == (False, "table nope does not exist")


def test_row_count(ctx: CheckContext) -> None:
    """row_count compares the count of a table (optionally filtered) or of a query's rows with expect."""
    assert check("row_count", ctx, table="child") == CheckResult(True, "4", "> 0")
    assert check("row_count", ctx, table="child", where="note IS NULL", expect="== 2").ok
    assert check("row_count", ctx, query="SELECT id FROM parent;", expect=2).ok
    failing = check("row_count", ctx, table="child", where="code = 'dup'", expect="== 0")
    assert (failing.ok, failing.observed, failing.expected) == (False, "2", "== 0")
    assert check("sql", ctx, query="SELECT COUNT(*) FROM child WHERE code = :code", params={"code": "dup"}, expect="== 2").ok
    assert check("row_count", ctx, table="nope").detail == "table nope does not exist"


def test_checks_leave_no_transaction_open(pg_ctx: CheckContext, pg_url: str) -> None:
    """Every database check ends its transaction: none of its sessions stays idle in transaction."""
    check("table_exists", pg_ctx, table="child")
    check("index_exists", pg_ctx, table="child", index="ix_child_code")
    check("no_orphans", pg_ctx, table="child", column="legacy_parent_id", references="parent.id")
    check("row_count", pg_ctx, table="child")
    check("no_long_transactions", pg_ctx, older_than="1m")
    with psycopg.connect(_libpq(pg_url)) as conn:
        states = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert states and all(state == "idle" for (state,) in states)


# ---------------------------------------------------------------- transactions


def _libpq(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_no_long_transactions_names_the_old_transaction(pg_ctx: CheckContext, pg_url: str) -> None:
    """An old transaction that read the table fails the check with its pid, age and masked query; commit clears it."""
    with psycopg.connect(_libpq(pg_url)) as other:
        pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        other.execute(f"SELECT count(*) FROM child WHERE note <> '{SECRET}'")
        time.sleep(1.2)  # older than 1 s for sure; a young one passing is checked below with older_than="1m"
        result = check("no_long_transactions", pg_ctx, tables=["child"], older_than="1s")
        assert not result.ok
        assert re.fullmatch(rf"pid {pid} open \d+(\.\d)?s", result.observed or "")
        assert result.expected == "no transaction open longer than 1s holding locks on child"
        assert f"pid {pid} (idle in transaction" in (result.detail or "") and "locks child" in (result.detail or "")
        assert "note <> '***'" in (result.detail or "") and SECRET not in (result.detail or "")
        assert check("no_long_transactions", pg_ctx, tables=["parent"], older_than="1s").ok
        assert not check("no_long_transactions", pg_ctx, older_than="1s").ok
        assert check("no_long_transactions", pg_ctx, older_than="1m").ok
        other.commit()
        assert check("no_long_transactions", pg_ctx, tables=["child"], older_than="1s").ok
    missing = check("no_long_transactions", pg_ctx, tables=["nope"], older_than="1s")
    assert (missing.ok, missing.detail) == (False, "table nope does not exist")


def test_no_long_transactions_not_applicable_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    """On SQLite the check passes as not applicable."""
    for ctx in make_context(sqlite_url, tmp_path):
        result = check("no_long_transactions", ctx, tables=["child"], older_than="30s")
        assert (result.ok, result.applicable, result.detail) == (True, False, "not applicable on sqlite")


# ---------------------------------------------------------------- alembic

REV_A, REV_B, REV_C = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"


@pytest.fixture
def alembic_dir(tmp_path: Path) -> Path:
    """db/alembic.ini with its scripts beside it (%(here)s) and revisions A <- B."""
    versions = write_project(tmp_path / "db")
    write_revision(versions, REV_A, None, "step")
    write_revision(versions, REV_B, REV_A, "step")
    return versions


def set_version(url: str, *revisions: str) -> None:
    engine = sa.create_engine(url)
    table = sa.Table("alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32), primary_key=True))
    table.create(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), [{"version_num": r} for r in revisions])
    engine.dispose()


def test_alembic_current(ctx: CheckContext, any_db_url: str) -> None:
    """current compares the set of alembic_version rows with one revision or a list."""
    base = check("alembic_revision", ctx, current=[])
    assert (base.ok, base.observed, base.detail) == (True, "base (no revision)", "no alembic_version table")
    set_version(any_db_url, REV_B)
    assert check("alembic_revision", ctx, current=REV_B) == CheckResult(True, REV_B, REV_B)
    assert check("alembic_revision", ctx, current=REV_A) == CheckResult(False, REV_B, REV_A)
    set_version(any_db_url, REV_C, REV_B)
    assert check("alembic_revision", ctx, current=[REV_B, REV_C]).ok
    branched = check("alembic_revision", ctx, current=REV_C)
    assert (branched.ok, branched.observed) == (False, f"{REV_B}, {REV_C}")
    assert branched.detail == "several heads are applied (branches not merged)"


def test_alembic_heads(ctx: CheckContext, any_db_url: str, alembic_dir: Path) -> None:
    """at_head and single_head read the script directory named by an alembic.ini beside the runbook (no runbook_dir here: workdir)."""
    ini = "db/alembic.ini"
    set_version(any_db_url, REV_B)
    assert check("alembic_revision", ctx, at_head=True, config=ini) == CheckResult(True, REV_B, f"head {REV_B}")
    assert check("alembic_revision", ctx, single_head=True, config=ini).observed == f"1 head: {REV_B}"
    write_revision(alembic_dir, REV_C, REV_A, "step")
    behind = check("alembic_revision", ctx, at_head=True, config=ini)
    assert (behind.ok, behind.observed, behind.expected) == (False, REV_B, f"head {REV_B}, {REV_C}")
    split = check("alembic_revision", ctx, single_head=True, config=ini)
    assert (split.ok, split.observed, split.expected) == (False, f"2 heads: {REV_B}, {REV_C}", "1 head")
    set_version(any_db_url, REV_B, REV_C)
    assert check("alembic_revision", ctx, at_head=True, config=ini).ok
    missing = check("alembic_revision", ctx, at_head=True, config="nope.ini")
    assert (missing.ok, missing.observed, missing.error) == (
        False, None, f"alembic config nope.ini not found: no file {ctx.workdir}/nope.ini (a relative config starts at the runbook's directory)"
    )
    assert missing.shortfall.startswith("error: alembic config nope.ini not found")


def test_alembic_params_choose_one_question() -> None:
    """Exactly one of current, at_head, single_head; the latter two need config."""
    params = get_check_kind("alembic_revision").Params
    for bad in (
        {"connection": "db"},
        {"connection": "db", "current": "a", "at_head": True},
        {"connection": "db", "at_head": True},
        {"current": "a"},
    ):
        with pytest.raises(ValidationError):
            params.model_validate(bad)
    params.model_validate({"single_head": True, "config": "alembic.ini"})


# ---------------------------------------------------------------- run_passed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(f"sqlite:///{tmp_path}/s.db")
    yield opened
    opened.close()


def record_run(
    store: StateStore, *, env: str = "staging", fingerprint: str = "fp-v2", status: str = "passed", dry_run: bool = False
) -> str:
    run_id = store.create_run(
        runbook="deploy", env=env, path="deploy.yaml", fingerprint=fingerprint, dry_run=dry_run, actor="alice", params={}
    )
    store.set_run_status(run_id, status, finished=True)
    return run_id


def run_ctx(store: StateStore | None, tmp_path: Path) -> CheckContext:
    masker = Masker()
    return CheckContext(
        workdir=tmp_path, env={}, masker=masker, connections=Connections({}, masker),
        state=store, runbook="deploy", fingerprint="fp-v2",
    )


def test_run_passed_needs_a_passed_real_run_of_this_version(store: StateStore, tmp_path: Path) -> None:
    """Only a passed, non-dry run in that env with the same fingerprint counts (unless same_version: false)."""
    ctx = run_ctx(store, tmp_path)
    record_run(store, status="failed")
    record_run(store, dry_run=True)
    record_run(store, env="prod")
    none = check("run_passed", ctx, env="staging")
    assert (none.ok, none.observed) == (False, "no passed run in staging")
    assert none.expected == "a passed run in staging of this version"
    old = record_run(store, fingerprint="fp-v1")
    other = check("run_passed", ctx, env="staging")
    assert (other.ok, other.observed) == (False, "passed runs are of other versions")
    assert other.detail == f"latest passed run {old} has fingerprint fp-v1, this version is fp-v2"
    assert check("run_passed", ctx, env="staging", same_version=False).ok
    current = record_run(store)
    result = check("run_passed", ctx, env="staging")
    assert result.ok and (result.observed or "").startswith(f"run {current} passed ")


def test_run_passed_within(store: StateStore, tmp_path: Path) -> None:
    """within rejects a pass that finished too long ago."""
    run_id = record_run(store)
    ctx = run_ctx(store, tmp_path)
    assert check("run_passed", ctx, env="staging", within="1h").ok
    engine = sa.create_engine(f"sqlite:///{tmp_path}/s.db")
    with engine.begin() as conn:
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        conn.execute(sa.update(runs).where(runs.c.run_id == run_id).values(finished_at=two_days_ago))
    engine.dispose()
    stale = check("run_passed", ctx, env="staging", within="1d")
    assert (stale.ok, stale.observed, stale.expected) == (
        False, f"last passed 48h ago (run {run_id})", "a passed run in staging of this version within 24h"
    )
    assert check("run_passed", ctx, env="staging", within="3d").ok


def test_run_passed_without_state_store(tmp_path: Path) -> None:
    """Without a state store the check fails and says why."""
    result = check("run_passed", run_ctx(None, tmp_path), env="staging")
    assert (result.ok, result.observed) == (False, "no run history")
    assert "state store" in (result.detail or "")
