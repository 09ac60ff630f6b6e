"""Failure and team paths: the frontier rule, exact values on resume, ownership, --only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.engine.conftest import Project, in_process


# Nothing here is killed, signalled or raced: each command runs in-process (tests/engine/conftest.py).
@pytest.fixture
def project(project: Project) -> Project:
    return in_process(project)


@pytest.fixture
def sqlite_project(sqlite_project: Project) -> Project:
    return in_process(sqlite_project)

CHAIN = """
name: chain
vars:
  target: {default: dev}
  token: {default: "", secret: true}
steps:
  - id: backup
    kind: command
    run: touch backup.flag
    irreversible: true
    gates: [{check: file_exists, path: backup.flag}]
  - id: migrate
    kind: command
    run: touch migrate.flag
    needs: [backup]
    irreversible: true
    gates: [{check: file_exists, path: migrate.flag}]
  - id: deploy
    kind: command
    run: "test -f ok && echo {{ vars.target }} >> counters/deploy"
    needs: [migrate]
    irreversible: true
"""


def test_resume_rechecks_only_the_frontier(project: Project) -> None:
    """A gate of a step a later passed step needs is not re-checked; the frontier's gate is."""
    project.write("chain.yaml", CHAIN)
    assert project.runbook("run", "chain.yaml").returncode == 1
    (project.root / "backup.flag").unlink()  # e.g. a backup that aged past max_age
    (project.root / "migrate.flag").unlink()  # the migration reverted by hand
    refused = project.runbook("run", "chain.yaml", "--resume")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "'migrate' passed earlier" in refused.stderr and "backup" not in refused.stderr
    (project.root / "migrate.flag").write_text("")
    (project.root / "ok").write_text("")
    result = project.runbook("run", "chain.yaml", "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.count("deploy") == 1


def test_unfinished_run_owns_the_environment_until_abandoned(project: Project) -> None:
    """A failed run keeps its environment: a new run is refused naming it; abandon frees it."""
    project.write("chain.yaml", CHAIN)
    assert project.runbook("run", "chain.yaml").returncode == 1
    second = project.runbook("run", "chain.yaml")
    assert second.returncode == 3 and "owns the environment" in second.stderr and "--resume" in second.stderr
    run_id = second.stderr.split("runbook abandon ")[1].split()[0]
    abandoned = project.runbook("abandon", run_id, "--reason", "superseded")
    assert abandoned.returncode == 0, abandoned.stdout + abandoned.stderr
    assert project.runbook("run", "chain.yaml", "--resume").returncode == 3
    (project.root / "ok").write_text("")
    assert project.runbook("run", "chain.yaml").returncode == 0


def test_resume_replays_values_and_refuses_different_ones(project: Project) -> None:
    """--resume runs with the run's own --var values; a different value is refused."""
    project.write("chain.yaml", CHAIN)
    assert project.runbook("run", "chain.yaml", "--var", "target=prod").returncode == 1
    (project.root / "ok").write_text("")
    changed = project.runbook("run", "chain.yaml", "--resume", "--var", "target=staging")
    assert changed.returncode == 3 and "target" in changed.stderr, changed.stdout + changed.stderr
    result = project.runbook("run", "chain.yaml", "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "counters" / "deploy").read_text().split() == ["prod"]


def test_secret_given_on_the_command_line_is_asked_for_again(project: Project) -> None:
    """A secret --var is never stored: the resume asks for it and checks it against its hash."""
    project.write("chain.yaml", CHAIN)
    assert project.runbook("run", "chain.yaml", "--var", "token=s3cr3t-value").returncode == 1
    (project.root / "ok").write_text("")
    missing = project.runbook("run", "chain.yaml", "--resume")
    assert missing.returncode == 2 and "--var token=" in missing.stderr, missing.stdout + missing.stderr
    wrong = project.runbook("run", "chain.yaml", "--resume", "--var", "token=other-value")
    assert wrong.returncode == 3 and "token" in wrong.stderr
    right = project.runbook("run", "chain.yaml", "--resume", "--var", "token=s3cr3t-value")
    assert right.returncode == 0, right.stdout + right.stderr
    store = project.root / ".runbook" / "state.db"
    if store.exists():
        assert b"s3cr3t-value" not in store.read_bytes()


def test_only_runs_the_step_without_rechecking_later_steps(project: Project) -> None:
    """--only make runs make although a later step's gate no longer holds (issue 18.1)."""
    project.write("mk.yaml", """
name: mk
steps:
  - id: make
    kind: command
    run: "touch flag; echo ran >> counters/make"
    irreversible: true
    gates: [{check: file_exists, path: flag}]
  - id: verify
    kind: command
    run: "true"
    irreversible: true
    gates: [{check: file_exists, path: flag}]
""")
    assert project.runbook("run", "mk.yaml").returncode == 0
    (project.root / "flag").unlink()
    result = project.runbook("run", "mk.yaml", "--only", "make")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.count("make") == 2


def test_refused_run_announces_nothing_and_owns_nothing(project: Project) -> None:
    """A run refused before any step acted sends no start/failure message and frees the environment."""
    project.write("chain.yaml", CHAIN.replace("steps:", """notifications:
  channels: [{type: file, path: notes.txt}]
  messages:
    start: started
    failure: failed
steps:""", 1))
    refused = project.runbook("run", "chain.yaml", "--only", "deploy")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "--resume" not in refused.stdout
    assert not (project.root / "notes.txt").exists()
    (project.root / "ok").write_text("")
    assert project.runbook("run", "chain.yaml").returncode == 0


TEAM = """
name: team
steps:
  - id: migrate
    kind: command
    run: echo ran >> "$COUNTERS/migrate"
    rollback: {kind: command, run: echo ran >> "$COUNTERS/undo.migrate"}
  - id: deploy
    kind: command
    run: echo ran >> "$COUNTERS/deploy"
    confirm: Deploy?
    rollback: {kind: command, run: echo ran >> "$COUNTERS/undo.deploy"}
"""


@pytest.mark.slow
def test_approve_resume_and_roll_back_from_another_checkout(project: Project, tmp_path: Path) -> None:
    """The run was started in a checkout that is not there for the operator who continues
    it (another host; here: deleted). `approve` and `rollback`, which find the run's
    runbook by its recorded path, fall back to the runbook of that name found from
    their own working directory, as `run --resume` there does."""
    shared = project.state_url or f"sqlite:///{tmp_path / 'shared.db'}"
    one, two = Project(tmp_path / "one", shared), Project(tmp_path / "two", shared)
    counters = {"COUNTERS": str(project.root / "counters")}
    for side in (one, two):
        side.write("team.yaml", TEAM)
    paused = one.runbook("run", "team.yaml", env=counters)
    assert paused.returncode == 4, paused.stdout + paused.stderr
    run_id = paused.stdout.split("runbook approve ")[1].split()[0]
    shutil.rmtree(one.root)

    approved = two.runbook("approve", run_id, "deploy", env=counters)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    resumed = two.runbook("run", "team.yaml", "--resume", env=counters)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "is void" not in resumed.stdout
    rolled = two.runbook("rollback", run_id, "--yes", env=counters)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert [project.count(s) for s in ("migrate", "deploy", "undo.deploy", "undo.migrate")] == [1, 1, 1, 1]

    (two.root / "runbooks" / "team.yaml").unlink()
    lost = two.runbook("rollback", run_id, "--yes", env=counters)
    assert lost.returncode == 2 and "which is not here" in lost.stderr and "team.yaml" in lost.stderr, lost.stderr


def test_rollback_refuses_steps_changed_since_they_ran(project: Project) -> None:
    """The rollback in the file now may not undo what an older definition did: refused
    (exit 3, naming the step) until the operator accepts the change."""
    original = """
        name: rb
        steps:
          - id: a
            kind: command
            run: echo a >> counters/order
            rollback: {kind: command, run: echo undo-a >> counters/order}
          - id: b
            kind: command
            run: "false"
    """
    project.write("rb.yaml", original)
    assert project.runbook("run", "rb.yaml").returncode == 1
    run_id = project.runbook("history").stdout.splitlines()[1].split()[0]
    project.write("rb.yaml", original.replace("echo a >>", "echo a2 >>"))
    preview = project.runbook("rollback", run_id, "--dry-run")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "changed since run" in preview.stdout and ": a (" in preview.stdout
    refused = project.runbook("rollback", run_id, "--yes")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "step(s) a changed" in refused.stderr and "--accept-changes" in refused.stderr
    assert (project.root / "counters" / "order").read_text().split() == ["a"]
    accepted = project.runbook("rollback", run_id, "--yes", "--accept-changes")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert (project.root / "counters" / "order").read_text().split() == ["a", "undo-a"]
