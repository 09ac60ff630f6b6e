"""Every table of the state store, and the in-place upgrade of older stores.

The layout is versioned by the ``schema_version`` table (one row per applied
version). Opening a store brings it to ``SCHEMA_VERSION`` by applying the
functions of ``UPGRADES`` in order, all in one transaction, so a crash midway
leaves the store at its old version and the next open simply retries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine

from runbook.errors import StateStoreError

SCHEMA_VERSION = 2

# Arbitrary but fixed: serializes concurrent first opens on PostgreSQL, where
# two racing CREATE TABLEs would otherwise fail on the catalog's unique keys.
_PG_MIGRATION_LOCK_KEY = 0x72756E626F6F6B


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone-aware type, so values are stored there as naive
    UTC and re-labelled on the way out; PostgreSQL uses timestamptz and may
    answer in the session's zone, so results are converted back to UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only autoincrements an "INTEGER PRIMARY KEY" (a rowid alias), not BIGINT.
_EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("runbook", sa.Text, nullable=False),
    sa.Column("env", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Index("ix_runs_runbook_env_started", "runbook", "env", "started_at"),
    sa.Index("ix_runs_started", "started_at"),
)

step_attempts = sa.Table(
    "step_attempts",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("step_id", sa.Text, primary_key=True),
    # Numbered per (run, step) across kinds, so (run, step, attempt) names one row.
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(20), nullable=False, server_default="step"),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    # The pid's start (clock ticks since boot): tells whether the process that ran
    # an attempt left 'running' is still alive or its pid was reused. NULL before version 2.
    sa.Column("pid_started", sa.BigInteger),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("outputs", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("checks", sa.JSON),
    sa.Column("log_path", sa.Text),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _EventId, primary_key=True, autoincrement=True),
    # No foreign key: the audit log must accept an event even for a run whose
    # row is missing (e.g. a lock broken on behalf of a run that never started).
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("step_id", sa.Text),
    sa.Column("event", sa.String(80), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_events_run", "run_id", "id"),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", _EventId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("step_id", sa.Text, nullable=False),
    sa.Column("approved_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Index("ix_approvals_run_step", "run_id", "step_id", "id"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("step_id", sa.Text, primary_key=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    # The primary key is what makes acquisition race-free: two inserts for the
    # same (runbook, env) cannot both commit.
    sa.Column("runbook", sa.Text, primary_key=True),
    sa.Column("env", sa.Text, primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    # Clock ticks since boot from /proc/<pid>/stat; tells a reused pid apart.
    sa.Column("pid_started", sa.BigInteger),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    # Random per acquisition: heartbeat, release and takeover match it, never the run id
    # alone (a resume by another process holds the same run id). NULL before version 2.
    sa.Column("owner_token", sa.String(64)),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)


def _upgrade_to_1(conn: Connection) -> None:
    """Version 0 is the unversioned prototype layout.

    It had no ``schema_version`` or ``checkpoints`` table, no ``kind`` column
    on ``step_attempts`` (rollback attempts were not recorded) and none of
    the listing indexes.
    """
    inspector = sa.inspect(conn)
    if "kind" not in {c["name"] for c in inspector.get_columns("step_attempts")}:
        conn.execute(sa.text("ALTER TABLE step_attempts ADD COLUMN kind VARCHAR(20) NOT NULL DEFAULT 'step'"))
    for table in metadata.sorted_tables:
        if inspector.has_table(table.name):
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        else:
            table.create(conn)


def _upgrade_to_2(conn: Connection) -> None:
    """Version 1 matched locks by run id only and did not record which process
    (start time) ran an attempt.

    A lock row left by a version-1 process keeps a NULL token: it is still
    judged dead or alive by its pid, and taken over by matching that NULL.
    """
    inspector = sa.inspect(conn)
    for table, column in ((locks, "owner_token"), (step_attempts, "pid_started")):
        if column not in {c["name"] for c in inspector.get_columns(table.name)}:
            type_sql = table.c[column].type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column} {type_sql}"))


# UPGRADES[n] brings a store from version n - 1 to version n.
UPGRADES: dict[int, Callable[[Connection], None]] = {1: _upgrade_to_1, 2: _upgrade_to_2}


def current_version(conn: Connection) -> int | None:
    """The store's schema version: None for an empty database, 0 if unversioned."""
    inspector = sa.inspect(conn)
    if inspector.has_table(schema_version.name):
        found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one()
        return 0 if found is None else int(found)
    return 0 if inspector.has_table(runs.name) else None


def ensure_schema(reader: Engine, writer: Engine) -> None:
    """Create the tables of an empty store, or upgrade an older one in place.

    ``writer`` must open transactions that exclude other writers (BEGIN
    IMMEDIATE on SQLite); concurrent first opens then wait for each other.
    """
    with reader.connect() as conn:
        if current_version(conn) == SCHEMA_VERSION:
            return
    with writer.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK_KEY)))
        version = current_version(conn)
        if version is None:
            metadata.create_all(conn)
            _record_version(conn, SCHEMA_VERSION)
            return
        if version > SCHEMA_VERSION:
            raise StateStoreError(
                f"the state store has schema version {version}, newer than this runbook understands ({SCHEMA_VERSION})",
                hint="upgrade runbook to use this state store",
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            UPGRADES[target](conn)
            _record_version(conn, target)


def _record_version(conn: Connection, version: int) -> None:
    conn.execute(sa.insert(schema_version).values(version=version, applied_at=datetime.now(UTC)))
