"""Step output in the state store: `runbook logs` from anywhere sharing it, the cap,
masking, --follow on a live run, a SIGKILLed attempt and its resume, and where a
resume from another directory says it differs."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from runbook.engine.steplog import StoredLog
from runbook.state import StateStore
from tests.engine.conftest import Project, in_process
from tests.state.store_tables import store_engine

SECRET = "hunter2-very-secret"

PRINTS = f"""
name: prints
vars:
  token: {{default: "{SECRET}", secret: true}}
steps:
  - id: hello
    kind: command
    run: "echo one; echo token={{{{ vars.token }}}}; echo three"
    irreversible: true
  - id: fails
    kind: command
    run: "echo about to fail; exit 3"
    irreversible: true
"""


def _run_id(project: Project) -> str:
    runs = json.loads(project.runbook("history", "--format", "json").stdout)["runs"]
    return str(runs[0]["id"])


def _wait_for(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stored_text(url: str | None, root: Path) -> list[str]:
    """Every chunk's text, read from the table behind runbook's back; [] before the store exists."""
    if url is None and not (root / ".runbook" / "state.db").exists():
        return []
    engine = store_engine(url or f"sqlite:///{root / '.runbook' / 'state.db'}")
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text("SELECT text FROM step_logs ORDER BY id"))]
    except sa.exc.DBAPIError:
        return []  # not created yet
    finally:
        engine.dispose()


def _stored(project: Project, line: str) -> bool:
    return any(line in text.split("\n") for text in _stored_text(project.state_url, project.root))


def test_logs_are_read_from_a_second_directory_sharing_the_store(pg_url: str, tmp_path: Path) -> None:
    """Run in one directory; in another (no runbooks, no .runbook/) `logs` shows every
    attempt's output, from the shared PostgreSQL store alone, as text and as JSON lines."""
    one, two = Project(tmp_path / "one", pg_url), Project(tmp_path / "two", pg_url)
    two.root.mkdir(parents=True)
    one.write("prints.yaml", PRINTS)
    assert one.runbook("run", "prints.yaml").returncode == 1
    run_id = _run_id(one)

    shown = two.runbook("logs", run_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["==> hello attempt 1 <==", "one", "token=***", "three", "==> fails attempt 1 <==", "about to fail"]
    assert not (two.root / ".runbook").exists()

    lines = [json.loads(line) for line in two.runbook("logs", run_id, "hello", "--format", "json").stdout.splitlines()]
    assert {"format", "run_id", "step", "attempt", "seq", "stream", "at", "lines"} <= set(lines[0])
    assert [line for chunk in lines for line in chunk["lines"]] == ["one", "token=***", "three"]
    assert lines[0]["at"].endswith("+00:00") and "T" in lines[0]["at"]

    shown_run = two.runbook("show", run_id)
    assert "| about to fail" in shown_run.stdout and f"runbook logs {run_id} fails" in shown_run.stdout
    missing = two.runbook("logs", run_id, "nope")
    assert missing.returncode == 2 and "no attempt of step 'nope'" in missing.stderr and "hello" in missing.stderr


def test_stored_chunks_never_hold_a_secret(project: Project) -> None:
    """The table itself, read behind runbook's back, has the masked line only."""
    project.write("prints.yaml", PRINTS)
    project.runbook("run", "prints.yaml")
    texts = _stored_text(project.state_url, project.root)
    assert any("token=***" in text for text in texts), texts
    assert not any(SECRET in text for text in texts)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_store_keeps_at_most_the_cap_per_attempt_and_says_what_it_left_out(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with StateStore.open(url, workdir=tmp_path) as store:
        run_id = store.create_run(runbook="r", env="e", path="p", fingerprint="f", dry_run=False, actor="a", params={})
        log = StoredLog(store, run_id, "big", 1, local_path=tmp_path / "big.1.log", cap=1000)
        for i in range(300):
            log.write(f"line {i:04d}")  # 10 bytes with its newline: 100 fit
        log.close()
        chunks = store.log_chunks(run_id, step_id="big", attempt=1)
    output = [line for c in chunks if c.stream == "output" for line in c.text.split("\n")]
    assert output == [f"line {i:04d}" for i in range(100)]
    note = chunks[-1]
    assert note.stream == "runbook" and "200 more line(s) (2,000 bytes) not stored" in note.text
    assert str(tmp_path / "big.1.log") in note.text
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))


FOLLOWED = """
name: followed
steps:
  - id: slow
    kind: command
    run: "echo first; while [ ! -f go ]; do sleep 0.05; done; echo second"
    irreversible: true
"""


@pytest.mark.slow
def test_follow_prints_lines_of_a_running_step_and_exits_when_the_run_ends(project: Project) -> None:
    project.write("followed.yaml", FOLLOWED)
    run = project.spawn("run", "followed.yaml")
    follow = None
    # A hung `logs --follow` would block readline() forever: end both after a minute instead.
    guard = threading.Timer(60, lambda: [p.kill() for p in (run, follow) if p is not None])
    guard.start()
    try:
        _wait_for(lambda: _stored(project, "first"), "the first line stored")
        run_id = _run_id(project)
        follow = project.spawn("logs", run_id, "--follow")
        assert follow.stdout is not None
        assert follow.stdout.readline().strip() == "==> slow attempt 1 <=="
        assert follow.stdout.readline().strip() == "first"
        (project.root / "go").touch()
        rest, err = follow.communicate(timeout=60)
        assert follow.returncode == 0, err
        assert rest.splitlines() == ["second"]
        assert run.wait(timeout=60) == 0
    finally:
        guard.cancel()
        for proc in (run, follow):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


KILLED = """
name: killed
steps:
  - id: work
    kind: command
    run: "echo started; touch started; while [ ! -f release ]; do sleep 0.05; done; echo finished"
    irreversible: true
"""


@pytest.mark.slow
def test_sigkill_keeps_what_was_committed_and_the_resume_logs_attempt_2_apart(project: Project) -> None:
    project.write("killed.yaml", KILLED)
    run = project.spawn("run", "killed.yaml")
    try:
        _wait_for(lambda: _stored(project, "started"), "the first line stored")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    run_id = _run_id(project)
    first = project.runbook("logs", run_id, "work")
    assert first.stdout.splitlines() == ["==> work attempt 1 <==", "started"]

    (project.root / "release").touch()
    resumed = project.runbook("run", "killed.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert project.runbook("logs", run_id, "work", "--attempt", "1").stdout.splitlines() == ["==> work attempt 1 <==", "started"]
    assert project.runbook("logs", run_id, "work", "--attempt", "2").stdout.splitlines() == ["==> work attempt 2 <==", "started", "finished"]


ELSEWHERE = """
name: elsewhere
steps:
  - id: backup
    kind: command
    run: "mkdir -p backups && touch backups/db.dump"
    irreversible: true
  - id: migrate
    kind: command
    run: "test -f go"
    irreversible: true
    preconditions:
      - check: file_fresh
        name: a fresh backup
        path: backups/*
        max_age: 1h
"""


@pytest.mark.slow
def test_resume_from_another_directory_says_what_differs_and_paths_resolve_against_the_project(pg_url: str, tmp_path: Path) -> None:
    """Relative paths resolve against the project directory (where runbooks/ is), wherever
    runbook is started; a resume from another directory says so in one line; a file that is
    not there is named with the directory it was looked for in."""
    one = Project(tmp_path / "one", pg_url)
    one.write("elsewhere.yaml", ELSEWHERE)
    (one.root / "elsewhere").mkdir()
    first = one.runbook("run", "runbooks/elsewhere.yaml")
    assert first.returncode == 1, first.stdout + first.stderr
    run_id = _run_id(one)
    assert json.loads(one.runbook("show", run_id, "--format", "json").stdout)["run"]["workdir"] == str(one.root)

    two = Project(tmp_path / "two", pg_url)
    two.write("elsewhere.yaml", ELSEWHERE)
    (two.root / "go").touch()
    resumed = two.runbook("run", "elsewhere.yaml", "--resume")
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert f"run {run_id} started in {one.root}; this is {two.root}: relative paths in its steps resolve against {two.root}" in resumed.stdout
    assert f"nothing matches {two.root / 'backups' / '*'} (backups/* resolved against the project directory {two.root})" in resumed.stdout

    # From a directory without runbooks/, the runbook found through RUNBOOK_PATH: its project is one's.
    (one.root / "go").touch()
    elsewhere = Project(one.root / "elsewhere", pg_url)
    again = elsewhere.runbook("run", "elsewhere.yaml", "--resume", env={"RUNBOOK_PATH": str(one.root / "runbooks")})
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"this is {elsewhere.root}: relative paths in its steps resolve against {one.root}" in again.stdout


def test_resume_on_another_host_says_so_and_logs_show_both_hosts_attempts(pg_url: str, tmp_path: Path) -> None:
    """Started on host-a (a process whose hostname says so), resumed here: one line names both
    hosts, and `logs` here shows host-a's output from the store."""
    from tests.state.test_store_clock import host_env

    project = Project(tmp_path, pg_url)
    project.write("prints.yaml", PRINTS)
    on_a = project.runbook("run", "prints.yaml", env={k: v for k, v in host_env("host-a", 0).items() if k in ("PYTHONPATH", "RUNBOOK_TEST_HOSTNAME")})
    assert on_a.returncode == 1, on_a.stdout + on_a.stderr
    run_id = _run_id(project)
    assert json.loads(project.runbook("show", run_id, "--format", "json").stdout)["run"]["host"] == "host-a"
    here = project.runbook("run", "prints.yaml", "--resume")
    assert f"run {run_id} started on host host-a; this is " in here.stdout, here.stdout
    assert "started in" not in here.stdout  # the same directory
    shown = project.runbook("logs", run_id, "fails").stdout.splitlines()
    assert shown == ["==> fails attempt 1 <==", "about to fail", "==> fails attempt 2 <==", "about to fail"]


UNDONE = """
name: undone
steps:
  - id: change
    kind: command
    run: "echo changing"
    rollback:
      kind: command
      run: "echo undoing"
"""


def test_a_rollbacks_output_is_stored_under_its_own_run_as_a_rollback_attempt(sqlite_project: Project) -> None:
    project = in_process(sqlite_project)
    project.write("undone.yaml", UNDONE)
    assert project.runbook("run", "undone.yaml").returncode == 0
    run_id = _run_id(project)
    rolled = project.runbook("rollback", run_id, "--yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    rollback_id = _run_id(project)
    assert rollback_id != run_id
    assert project.runbook("logs", rollback_id).stdout.splitlines() == ["==> change rollback attempt 1 <==", "undoing"]
    (chunk,) = [json.loads(line) for line in project.runbook("logs", rollback_id, "--format", "json").stdout.splitlines()]
    assert (chunk["kind"], chunk["lines"]) == ("rollback", ["undoing"])
    assert project.runbook("logs", run_id).stdout.splitlines() == ["==> change attempt 1 <==", "changing"]
