"""Schema version 4 (step_logs, runs.workdir) over a version-3 store with a run in flight."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.state import SCHEMA_VERSION, StateStore
from runbook.state.connect import create_engine, in_schema, locate
from runbook.state.schema import schema_version
from runbook.state.versions import UPGRADES
from tests.state.store_tables import store_engine


def _to_version_3(url: str) -> None:
    engine = store_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE step_logs"))
            conn.execute(sa.text("ALTER TABLE runs DROP COLUMN workdir"))
            # What version 5 added (approvals with identity, live control).
            conn.execute(sa.text("DROP TABLE controls"))
            conn.execute(sa.text("ALTER TABLE approvals DROP COLUMN os_user"))
            conn.execute(sa.text("ALTER TABLE approvals DROP COLUMN decision"))
            conn.execute(sa.text("DELETE FROM schema_version"))
            conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (3, CURRENT_TIMESTAMP)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_version_3_store_gains_step_logs_and_workdir_keeping_its_running_run(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore.open(url) as store:
        run_id = store.create_run(runbook="r", env="e", path="p", fingerprint="f", dry_run=False, actor="a", params={})
        store.start_attempt(run_id, "s", fingerprint="f")
    _to_version_3(url)
    with StateStore.open(url) as store:
        run = store.get_run(run_id)
        assert run is not None and run.status == "running" and run.workdir is None
        store.append_log(run_id, "s", 1, 1, "still here")
        assert [c.text for c in store.log_chunks(run_id)] == ["still here"]
    location = locate(url, None)
    engine = in_schema(create_engine(location), location.schema)
    try:
        with engine.begin() as conn:
            for version in range(4, SCHEMA_VERSION + 1):
                UPGRADES[version](conn, location.schema)  # again: nothing to add, nothing lost
            assert conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one() == SCHEMA_VERSION
        with StateStore.open(url) as store:
            assert [c.text for c in store.log_chunks(run_id)] == ["still here"]
    finally:
        engine.dispose()
