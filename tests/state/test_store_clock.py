"""Lock heartbeats and staleness go by the database server's clock, never a client's.

Each host below is a real process whose Python clock is ten minutes off and whose
host name is its own (tests/state/skewed_clock/sitecustomize.py on its
PYTHONPATH); the PostgreSQL server keeps the true time. Judged by client clocks,
a holder ten minutes behind looks silent for ten minutes to everyone else, and a
taker ten minutes ahead finds every holder silent that long: either one would
take a live lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.errors import LockHeld
from runbook.state import LOCK_STALE_AFTER, StateStore
from tests.state.store_tables import store_engine

SKEW = 600.0
SKEWED_CLOCK = Path(__file__).parent / "skewed_clock"

HOLD = """
import sys, time
from runbook.state import StateStore
store = StateStore.open(sys.argv[1])
run_id = store.create_run(runbook="deploy", env="prod", path="p", fingerprint="f", dry_run=False, actor="a", params={})
lock = store.acquire_lock("deploy", "prod", run_id)
store.heartbeat(lock)
print(run_id, flush=True)
sys.stdin.read()  # hold until the test closes stdin
"""

TAKE = """
import json, sys
from datetime import UTC, datetime
from runbook.errors import LockHeld
from runbook.state import StateStore
from runbook.state.liveness import observe
store = StateStore.open(sys.argv[1])
run_id = store.create_run(runbook="deploy", env="prod", path="p", fingerprint="f", dry_run=False, actor="b", params={})
held = store.get_run(sys.argv[2])
shown = observe(store, held)[1].status
try:
    store.acquire_lock("deploy", "prod", run_id)
    outcome = "taken"
except LockHeld:
    outcome = "held"
print(json.dumps({"outcome": outcome, "shown": shown, "client_now": datetime.now(UTC).isoformat()}))
"""


def host_env(name: str, skew: float) -> dict[str, str]:
    """The environment of a process on host ``name`` whose clock is ``skew`` seconds off."""
    path = os.pathsep.join([str(SKEWED_CLOCK), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "RUNBOOK_TEST_CLOCK_SKEW": str(skew), "RUNBOOK_TEST_HOSTNAME": name}


@pytest.fixture
def holder(pg_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A live process on host-a, its clock ``request.param`` seconds off, holding deploy/prod."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, pg_url], env=host_env("host-a", request.param),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, "the holder never took the lock"
        yield proc, run_id
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def take(pg_url: str, run_id: str, skew: float) -> dict[str, str]:
    """What a process on host-b, its clock ``skew`` seconds off, makes of the lock."""
    out = subprocess.run(
        [sys.executable, "-c", TAKE, pg_url, run_id], env=host_env("host-b", skew), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    seen: dict[str, str] = json.loads(out.stdout)
    # The fake is in force: the taker's clock is off by the skew (give or take a slow start).
    off = (datetime.fromisoformat(seen["client_now"]) - datetime.now(UTC)).total_seconds()
    assert abs(off - skew) < 60, off
    return seen


def silence(pg_url: str) -> float:
    """How long ago the lock's heartbeat was, by the server's clock."""
    engine = store_engine(pg_url)
    try:
        with engine.connect() as conn:
            return float(conn.execute(sa.text("SELECT extract(epoch FROM now() - heartbeat_at) FROM locks")).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize(("holder", "taker_skew"), [(-SKEW, 0.0), (0.0, SKEW), (-SKEW, SKEW)], indirect=["holder"])
def test_a_skewed_client_clock_never_takes_a_live_lock(
    pg_url: str, holder: tuple[subprocess.Popen[str], str], taker_skew: float
) -> None:
    """A holder whose clock is 10 minutes behind, a taker 10 minutes ahead, or both: the
    heartbeat is stamped with the server's time, so the lock stays with its live holder
    and `status` shows the run running, not interrupted."""
    proc, run_id = holder
    assert abs(silence(pg_url)) < 60  # stamped by the server, not ten minutes in the past
    seen = take(pg_url, run_id, taker_skew)
    assert seen["outcome"] == "held" and seen["shown"] == "running", seen
    # And from an unskewed process on this host (a remote holder to it) too.
    with StateStore.open(pg_url) as store:
        other = store.create_run(runbook="deploy", env="prod", path="p", fingerprint="f", dry_run=False, actor="c", params={})
        with pytest.raises(LockHeld, match="host-a"):
            store.acquire_lock("deploy", "prod", other)
    assert proc.poll() is None


@pytest.mark.parametrize("holder", [0.0], indirect=True)
def test_a_silent_holder_is_taken_over_by_the_servers_clock_whatever_the_takers(
    pg_url: str, holder: tuple[subprocess.Popen[str], str]
) -> None:
    """A heartbeat LOCK_STALE_AFTER old by the server's clock is stale for a taker whose own
    clock is 10 minutes behind (by its clock the beat would be in the future)."""
    _, run_id = holder
    engine = store_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE locks SET heartbeat_at = now() - interval '{LOCK_STALE_AFTER + 5} seconds'"))
    engine.dispose()
    seen = take(pg_url, run_id, -SKEW)
    assert seen["outcome"] == "taken" and seen["shown"] == "interrupted", seen
