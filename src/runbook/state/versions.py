"""The store's layout version, and bringing an older store to the current one.

The ``schema_version`` table holds one row per applied version. Opening a store
brings it to ``SCHEMA_VERSION`` by applying ``UPGRADES`` in order, all in one
transaction, so a crash midway leaves the store at its old version and the next
open simply retries. A store newer than this runbook is refused, never misread.

* 0: the unversioned prototype.
* 1: ``schema_version``, ``checkpoints``, ``step_attempts.kind``, listing indexes.
* 2: ``locks.owner_token``, ``step_attempts.pid_started``.
* 3: lock times are the store's clock, not the clients' (clock.py); on
  PostgreSQL the tables live in a schema of their own. No table changes; the
  number keeps an older runbook, which stamps locks with its own clock, out.
* 4: ``step_logs`` (each attempt's output, masked, in chunks) and ``runs.workdir``.
* 5: ``approvals.os_user`` and ``approvals.decision`` (approvals with identity,
  rejections), the ``controls`` table (cancel, pause, continue, set from any machine).
* 6: ``host_attempts`` (fleet steps: one row per host of an attempt).

On PostgreSQL everything happens under one advisory lock held until commit:
concurrent first opens, upgrades and the move below wait for each other. The
schema, its tables and their version row appear in one transaction, or not at all.

Runbook before version 3 kept its tables in ``public``. The first open by this
version moves them (``ALTER TABLE ... SET SCHEMA``, which takes their indexes,
constraints and sequences along) into the store's schema, keeping every run,
finished or not; tables of the same names that are not runbook's stay put.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from runbook import __version__
from runbook.errors import Refused, StateStoreUnusable
from runbook.state.clock import database_now
from runbook.state.connect import quoted_schema
from runbook.state.locks import LockRecord, stale_reason
from runbook.state.schema import approvals, controls, host_attempts, locks, metadata, runs, schema_version, step_attempts, step_logs

SCHEMA_VERSION = 6

# Arbitrary but fixed (b"runbook"): the advisory lock serializing creation, upgrades and the move.
_PG_LOCK_KEY = 0x72756E626F6F6B
_LEGACY_SCHEMA = "public"
# Columns upgrades added: a table without them may still be an older store's.
_ADDED_COLUMNS = {step_attempts.name: {"kind", "pid_started"}, locks.name: {"owner_token"}, runs.name: {"workdir"}, approvals.name: {"os_user", "decision"}}


def _upgrade_to_1(conn: Connection, schema: str | None) -> None:
    """Version 0 had no ``schema_version`` or ``checkpoints`` table, no ``kind`` column
    on ``step_attempts`` (rollback attempts were not recorded) and none of the listing indexes."""
    inspector = sa.inspect(conn)
    if "kind" not in {c["name"] for c in inspector.get_columns(step_attempts.name, schema=schema)}:
        conn.execute(sa.text(f"ALTER TABLE {_qualified(conn, schema, step_attempts)} ADD COLUMN kind VARCHAR(20) NOT NULL DEFAULT 'step'"))
    for table in metadata.sorted_tables:
        if inspector.has_table(table.name, schema=schema):
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        else:
            table.create(conn)


def _upgrade_to_2(conn: Connection, schema: str | None) -> None:
    """Version 1 matched locks by run id only and did not record which process
    (start time) ran an attempt.

    A lock row left by a version-1 process keeps a NULL token: it is still
    judged dead or alive by its pid, and taken over by matching that NULL.
    """
    _add_missing_columns(conn, schema, [(locks, "owner_token"), (step_attempts, "pid_started")])


def _upgrade_to_3(conn: Connection, schema: str | None) -> None:
    """Version 2 stamped lock heartbeats with each client's clock. The rows stay as they
    are: a heartbeat written by a version-2 process is judged by the store's clock from now on."""


def _upgrade_to_4(conn: Connection, schema: str | None) -> None:
    """Version 3 kept step output only in the files of the machine that ran the step,
    and did not record the directory a run started in."""
    _add_missing_columns(conn, schema, [(runs, "workdir")])
    step_logs.create(conn, checkfirst=True)
    for index in step_logs.indexes:
        index.create(conn, checkfirst=True)


def _add_missing_columns(conn: Connection, schema: str | None, wanted: list[tuple[sa.Table, str]]) -> None:
    """Add each (table, column) the table lacks, typed as schema.py declares it (nullable)."""
    inspector = sa.inspect(conn)
    for table, column in wanted:
        if column not in {c["name"] for c in inspector.get_columns(table.name, schema=schema)}:
            type_sql = table.c[column].type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {_qualified(conn, schema, table)} ADD COLUMN {column} {type_sql}"))


def _upgrade_to_5(conn: Connection, schema: str | None) -> None:
    """Version 4 recorded approvals by a free-text name only and had no way to reach a
    running run. Idempotent: a column or table already there is left as it is."""
    _add_missing_columns(conn, schema, [(approvals, "os_user")])
    if "decision" not in {c["name"] for c in sa.inspect(conn).get_columns(approvals.name, schema=schema)}:
        type_sql = approvals.c["decision"].type.compile(dialect=conn.dialect)
        # Every approval recorded before rejections existed was an approval.
        conn.execute(sa.text(f"ALTER TABLE {_qualified(conn, schema, approvals)} ADD COLUMN decision {type_sql} NOT NULL DEFAULT 'approved'"))
    controls.create(conn, checkfirst=True)


def _upgrade_to_6(conn: Connection, schema: str | None) -> None:
    """Version 5 had no ``host_attempts`` (fleet steps: one row per host of an attempt)."""
    host_attempts.create(conn, checkfirst=True)


# UPGRADES[n] brings a store from version n - 1 to version n.
UPGRADES: dict[int, Callable[[Connection, str | None], None]] = {
    1: _upgrade_to_1, 2: _upgrade_to_2, 3: _upgrade_to_3, 4: _upgrade_to_4, 5: _upgrade_to_5, 6: _upgrade_to_6,
}  # fmt: skip


def current_version(conn: Connection, schema: str | None) -> int | None:
    """The store's schema version: None for no store, 0 if unversioned."""
    if _has_table(conn, schema, schema_version.name):
        found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one()
        return 0 if found is None else int(found)
    return 0 if _has_table(conn, schema, runs.name) else None


def _has_table(conn: Connection, schema: str | None, name: str) -> bool:
    # One small catalog query: every command opens the store, and the Inspector's
    # query costs several milliseconds to build in a fresh process.
    if schema is None:
        query = sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name")
        return conn.execute(query, {"name": name}).first() is not None
    # pg_class read with the statement's snapshot, not to_regclass(): that goes through the
    # backend's catalog cache, which after waiting for the advisory lock may still miss
    # the tables another process just created (and would then be created twice).
    query = sa.text(
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = :schema AND c.relname = :name AND c.relkind IN ('r', 'p')"
    )
    return conn.execute(query, {"schema": schema, "name": name}).first() is not None


def ensure_schema(reader: Engine, writer: Engine, *, schema: str | None, host: str) -> None:
    """Create the store, or bring an older one (in place, or from ``public``) to ``SCHEMA_VERSION``.

    ``writer`` must open transactions that exclude other writers (BEGIN
    IMMEDIATE on SQLite); on PostgreSQL the advisory lock does. Both engines
    place tables in ``schema`` (None for SQLite). ``host`` is this machine's
    name, to judge the holders of an older store's locks.
    """
    with reader.connect() as conn:
        if current_version(conn, schema) == SCHEMA_VERSION:
            return
    with writer.begin() as conn:
        if schema is not None:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        version = current_version(conn, schema)
        if version == SCHEMA_VERSION:
            return  # another process got here first
        if schema is not None and version is None:
            _create_schema(conn, schema)
            version = _adopt_legacy_store(conn, schema, host)
        if version is None:
            metadata.create_all(conn)
            _record_version(conn, SCHEMA_VERSION)
            return
        if version > SCHEMA_VERSION:
            raise StateStoreUnusable(
                f"the state store has schema version {version}, newer than this runbook ({__version__}) "
                f"understands: it reads and writes schema version {SCHEMA_VERSION}",
                hint="upgrade runbook here: every runbook sharing a state store must be at least as new as the newest that opened it",
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            UPGRADES[target](conn, schema)
            _record_version(conn, target)
        metadata.create_all(conn)  # any table an older store lacked (checkfirst)


def _create_schema(conn: Connection, schema: str) -> None:
    # Looked up first: CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege on the
    # database, which a role given a schema made for it by its DBA may lack.
    found = conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}).first()
    if found is None:
        conn.execute(sa.text(f"CREATE SCHEMA {quoted_schema(conn, schema)}"))


def _adopt_legacy_store(conn: Connection, schema: str, host: str) -> int | None:
    """Move a store an older runbook created in ``public`` into ``schema``; its version, or None if there is none."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names(schema=_LEGACY_SCHEMA))
    ours = [table for table in metadata.sorted_tables if table.name in present and _is_ours(inspector, table)]
    if runs not in ours:
        return None
    if locks in ours:
        _refuse_live_holders(conn, schema, host)
    target = quoted_schema(conn, schema)
    for table in ours:
        conn.execute(sa.text(f"ALTER TABLE {_qualified(conn, _LEGACY_SCHEMA, table)} SET SCHEMA {target}"))
    return current_version(conn, schema)


def _is_ours(inspector: sa.Inspector, table: sa.Table) -> bool:
    """Whether ``public``'s table of that name has every column runbook ever gave it (not an application's)."""
    found = {c["name"] for c in inspector.get_columns(table.name, schema=_LEGACY_SCHEMA)}
    return {c.name for c in table.columns} - _ADDED_COLUMNS.get(table.name, set()) <= found


def _refuse_live_holders(conn: Connection, schema: str, host: str) -> None:
    """An older runbook still running on the store in ``public`` would lose its tables mid-run: refuse."""
    legacy = locks.to_metadata(sa.MetaData(), schema=_LEGACY_SCHEMA)
    present = {c["name"] for c in sa.inspect(conn).get_columns(locks.name, schema=_LEGACY_SCHEMA)}
    columns = [legacy.c[name] if name in present else sa.null() for name in LockRecord.__dataclass_fields__]
    now = database_now(conn)
    for row in conn.execute(sa.select(*columns)):
        holder = LockRecord(*row)
        if stale_reason(holder, host=host, now=now) is None:
            raise Refused(
                f"the state store is still in schema {_LEGACY_SCHEMA}, where an older runbook keeps it, "
                f"and {holder.describe()} is using it",
                hint=f"let that run finish (or stop it), then try again: runbook moves the store into schema {schema} once, keeping every run",
            )


def _qualified(conn: Connection, schema: str | None, table: sa.Table) -> str:
    name = conn.dialect.identifier_preparer.quote(table.name)
    return name if schema is None else f"{quoted_schema(conn, schema)}.{name}"


def _record_version(conn: Connection, version: int) -> None:
    conn.execute(sa.insert(schema_version).values(version=version, applied_at=datetime.now(UTC)))
