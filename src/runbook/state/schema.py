"""Every table of the state store, as the current schema version lays it out.

Tables are defined without a schema: on PostgreSQL the engine places them in
the store's own schema (connect.py). How older layouts are brought to this one
is versions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


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
    # The directory the run started in (host is above); a resume elsewhere says what differs. NULL before version 4.
    sa.Column("workdir", sa.Text),
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
    # Who ran ``approve``/``reject`` by the OS (identity.py), whatever ``approved_by`` names
    # (someone else only when the runbook allows delegation). NULL before version 5.
    sa.Column("os_user", sa.Text),
    # 'approved' or 'rejected': a rejection voids the approvals before it.
    sa.Column("decision", sa.String(20), nullable=False, server_default="approved"),
    sa.Index("ix_approvals_run_step", "run_id", "step_id", "id"),
)

controls = sa.Table(
    "controls",
    metadata,
    # Requests to a running run from any machine: cancel, pause, continue, set (control.py).
    # The run's process polls for ids above the last it saw.
    sa.Column("id", _EventId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("step_id", sa.Text),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_controls_run", "run_id", "id"),
)

# One row per host of a fleet step's attempt (runbook.fleet.rollout): written 'running'
# before the host's command starts, so a resume knows which hosts passed and never re-runs them.
host_attempts = sa.Table(
    "host_attempts",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("step_id", sa.Text, primary_key=True),
    sa.Column("host", sa.Text, primary_key=True),
    # Numbered per (run, step, host) across kinds, like step attempts.
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
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

step_logs = sa.Table(
    "step_logs",
    metadata,
    # Each attempt's output (masked), in chunks of lines written every half second or so
    # (engine/steplog.py); ``id`` orders them across attempts for ``runbook logs --follow``.
    sa.Column("id", _EventId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("step_id", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    # "output" (the step's own lines) or "runbook" (what runbook says about the log: the cap).
    sa.Column("stream", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_step_logs_attempt", "run_id", "step_id", "attempt", "seq"),
    sa.Index("ix_step_logs_run", "run_id", "id"),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)
