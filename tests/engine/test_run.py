"""The engine through the real CLI: order, gates, failures, resume, approvals."""

from __future__ import annotations

from runbook import identity
import json
import sqlite3

import pytest

from tests.engine.conftest import Project, counter_step, in_process


# Nothing here is killed, signalled or raced: each command runs in-process (tests/engine/conftest.py).
@pytest.fixture
def project(project: Project) -> Project:
    return in_process(project)


@pytest.fixture
def sqlite_project(sqlite_project: Project) -> Project:
    return in_process(sqlite_project)

PIPELINE = (
    "name: pipeline\nsteps:"
    + counter_step("migrate")
    + counter_step("backfill", "\n    needs: [migrate]")
    + counter_step("deploy", "\n    needs: [migrate, backfill]")
)


def test_steps_run_in_order_once(project: Project) -> None:
    """A clean run passes every step exactly once and exits 0."""
    project.write("pipeline.yaml", PIPELINE)
    result = project.runbook("run", "pipeline.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [project.count(s) for s in ("migrate", "backfill", "deploy")] == [1, 1, 1]
    assert result.stdout.index("[migrate]") < result.stdout.index("[backfill]") < result.stdout.index("[deploy]")


def test_only_deploy_on_fresh_target_is_refused(project: Project) -> None:
    """--only deploy before migrate and backfill passed: exit 3, deploy never runs."""
    project.write("pipeline.yaml", PIPELINE)
    result = project.runbook("run", "pipeline.yaml", "--only", "deploy")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "needs 'migrate'" in result.stdout
    assert project.count("deploy") == 0


def test_only_deploy_after_earlier_run_passed_prerequisites(project: Project) -> None:
    """While the failed run owns the environment a new run is refused; once it is
    abandoned, --only deploy counts migrate and backfill from that run."""
    project.write("pipeline.yaml", "name: pipeline\nsteps:" + counter_step("migrate") + counter_step("backfill", "\n    needs: [migrate]") + """
  - id: deploy
    kind: command
    run: "test -f ok && echo ran >> counters/deploy"
    needs: [migrate, backfill]
    irreversible: true
""")
    failed = project.runbook("run", "pipeline.yaml")
    assert failed.returncode == 1
    (project.root / "ok").write_text("")
    refused = project.runbook("run", "pipeline.yaml", "--only", "deploy")
    assert refused.returncode == 3 and "owns the environment" in refused.stderr, refused.stdout + refused.stderr
    run_id = refused.stderr.split("runbook abandon ")[1].split()[0]
    assert project.runbook("abandon", run_id, "--reason", "deploying by hand").returncode == 0
    result = project.runbook("run", "pipeline.yaml", "--only", "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [project.count(s) for s in ("migrate", "backfill", "deploy")] == [1, 1, 1]


def test_failure_prints_tail_hint_and_resume_then_resume_reruns_only_failed(project: Project) -> None:
    """A failing step halts with its output tail, the matching hint and the resume command; --resume finishes."""
    project.write("pipeline.yaml", "name: pipeline\nsteps:" + counter_step("migrate") + """
  - id: backfill
    kind: command
    run: "echo ran >> counters/backfill; test -f fixed || { echo 'ProgrammingError: column subscriber_id does not exist'; exit 3; }"
    needs: [migrate]
    irreversible: true
    hints:
      "column .* does not exist": Run the migration first.
""" + counter_step("deploy", "\n    needs: [backfill]"))
    result = project.runbook("run", "pipeline.yaml")
    assert result.returncode == 1
    assert "ProgrammingError: column subscriber_id does not exist" in result.stdout
    assert "Run the migration first." in result.stdout
    assert "runbook run pipeline.yaml --resume" in result.stdout
    (project.root / "fixed").write_text("")
    resumed = project.runbook("run", "pipeline.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [project.count(s) for s in ("migrate", "backfill", "deploy")] == [1, 2, 1]


def test_gate_failure_shows_observed_and_expected(project: Project) -> None:
    """A failing gate fails the step (exit 1) and prints observed next to expected."""
    project.write("g.yaml", """
        name: g
        steps:
          - id: one
            kind: command
            run: "echo '{\\"failed\\": 2}'"
            irreversible: true
            gates:
              - check: value
                name: no failures
                value: "{{ steps.one.outputs.json.failed }}"
                expect: "== 0"
    """)
    result = project.runbook("run", "g.yaml")
    assert result.returncode == 1
    assert "observed 2" in result.stdout and "expected == 0" in result.stdout


def test_preconditions_halt_skip_warn(project: Project) -> None:
    """halt refuses with exit 3; skip records the step skipped; warn goes on."""
    project.write("p.yaml", """
        name: p
        steps:
          - id: warned
            kind: command
            run: echo ran >> counters/warned
            irreversible: true
            preconditions:
              - {check: file_exists, path: missing-file, on_fail: warn}
          - id: skipped
            kind: command
            run: echo ran >> counters/skipped
            irreversible: true
            preconditions:
              - {check: file_exists, path: missing-file, on_fail: skip}
          - id: halted
            kind: command
            run: echo ran >> counters/halted
            irreversible: true
            preconditions:
              - {check: file_exists, path: missing-file}
    """)
    result = project.runbook("run", "p.yaml")
    assert result.returncode == 3, result.stdout + result.stderr
    assert [project.count(s) for s in ("warned", "skipped", "halted")] == [1, 0, 0]
    assert "skipped" in result.stdout and "refused" in result.stdout


CONFIRM = """
name: c
steps:
  - id: deploy
    kind: command
    run: echo ran >> counters/deploy
    irreversible: true
    confirm: Deploy version 2?
"""


def test_confirmation_without_terminal_pauses_then_approve_and_resume(project: Project) -> None:
    """No terminal, no approval: exit 4 awaiting approval; approve from another process; --resume runs it."""
    project.write("c.yaml", CONFIRM)
    paused = project.runbook("run", "c.yaml")
    assert paused.returncode == 4, paused.stdout + paused.stderr
    assert project.count("deploy") == 0
    run_id = json.loads(project.runbook("run", "c.yaml", "--resume", "--log-format", "json").stdout.splitlines()[0])["run_id"]
    approved = project.runbook("approve", run_id, "deploy", "--comment", "change ticket 42")
    assert approved.returncode == 0, approved.stderr
    resumed = project.runbook("run", "c.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert project.count("deploy") == 1
    shown = project.runbook("show", run_id)
    assert identity.current().user in shown.stdout and "change ticket 42" in shown.stdout


def test_approval_is_void_when_the_step_changed(project: Project) -> None:
    """An approval recorded for one definition does not approve a changed step."""
    project.write("c.yaml", CONFIRM)
    assert project.runbook("run", "c.yaml").returncode == 4
    run_id = project.runbook("history").stdout.splitlines()[1].split()[0]
    assert project.runbook("approve", run_id, "deploy").returncode == 0
    project.write("c.yaml", CONFIRM.replace("echo ran", "echo changed; echo ran"))
    result = project.runbook("run", "c.yaml", "--resume")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "void" in result.stdout
    assert project.count("deploy") == 0


def test_yes_and_approve_flags_approve(project: Project) -> None:
    """--approve STEP (or --yes) approves the confirmation and it is recorded."""
    project.write("c.yaml", CONFIRM)
    result = project.runbook("run", "c.yaml", "--approve", "deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.count("deploy") == 1


def test_changed_definition_refuses_resume_unless_accepted(project: Project) -> None:
    """A passed step whose definition changed blocks --resume (exit 3) until --accept-changes re-runs it."""
    text = "name: pipeline\nsteps:" + counter_step("migrate") + """
  - id: backfill
    kind: command
    run: "test -f fixed"
    irreversible: true
"""
    project.write("pipeline.yaml", text)
    assert project.runbook("run", "pipeline.yaml").returncode == 1
    project.write("pipeline.yaml", text.replace("echo ran >> counters/migrate", "echo ran >> counters/migrate; true"))
    (project.root / "fixed").write_text("")
    refused = project.runbook("run", "pipeline.yaml", "--resume")
    assert refused.returncode == 3
    assert "migrate" in refused.stderr + refused.stdout
    # The command it offers to go on is the one that can: a plain --resume is refused again.
    assert "next: resume: runbook run pipeline.yaml --resume --accept-changes" in refused.stdout, refused.stdout
    accepted = project.runbook("run", "pipeline.yaml", "--resume", "--accept-changes")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert project.count("migrate") == 2


def test_resume_rechecks_gates_of_passed_steps(project: Project) -> None:
    """If a passed step's gate no longer holds, --resume stops and names it (exit 3)."""
    project.write("r.yaml", """
        name: r
        steps:
          - id: make
            kind: command
            run: touch artifact
            irreversible: true
            gates:
              - {check: file_exists, name: artifact exists, path: artifact}
          - id: next
            kind: command
            run: test -f go
            irreversible: true
    """)
    assert project.runbook("run", "r.yaml").returncode == 1
    (project.root / "artifact").unlink()
    result = project.runbook("run", "r.yaml", "--resume")
    assert result.returncode == 3
    assert "artifact exists" in result.stdout + result.stderr


def test_dry_run_never_marks_steps_passed(project: Project) -> None:
    """--dry-run reports what would run, runs nothing that changes, and a real run still runs everything."""
    project.write("pipeline.yaml", PIPELINE)
    dry = project.runbook("run", "pipeline.yaml", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would run: echo ran >> counters/migrate" in dry.stdout
    assert project.count("migrate") == 0
    only = project.runbook("run", "pipeline.yaml", "--only", "deploy")
    assert only.returncode == 3


CRITERIA = """
name: criteria
steps:
  - id: smoke
    kind: command
    run: >-
      echo '{"id": null, "failed": 0}'
    irreversible: true
    outputs: {id: "{{ result.json.id }}", failed: "{{ result.json.failed }}"}
success_criteria:
  - description: new rows have an id
    check: {check: value, value: "{{ steps.smoke.outputs.id }}", expect: is not null}
  - description: nothing failed
    check: {check: value, value: "{{ steps.smoke.outputs.failed }}", expect: "== 0"}
"""


def test_a_dry_run_does_not_judge_criteria_on_outputs_it_never_had(project: Project) -> None:
    """A dry run only describes the step, so a criterion on its outputs is not known: neither
    the ✔ the placeholder's text gave `is not null`, nor the ✘ it gave `== 0`. The real run
    judges both (here the id is null: that criterion fails)."""
    project.write("criteria.yaml", CRITERIA)
    dry = project.runbook("run", "criteria.yaml", "--dry-run")
    lines = [line for line in dry.stdout.splitlines() if "[success] criterion" in line]
    assert len(lines) == 2 and all("not known in a dry run" in line and "smoke" in line for line in lines), dry.stdout
    assert "✔" not in "".join(lines) and "✘" not in "".join(lines)
    real = project.runbook("run", "criteria.yaml")
    assert real.returncode == 1, real.stdout + real.stderr
    assert "criterion ✘ new rows have an id" in real.stdout and "criterion ✔ nothing failed" in real.stdout, real.stdout


def test_retries_are_recorded_as_attempts(project: Project) -> None:
    """A flaky step retried with delay passes on its third attempt; status shows 3 tries."""
    project.write("f.yaml", """
        name: f
        steps:
          - id: flaky
            kind: command
            run: "echo x >> counters/flaky; test $(wc -l < counters/flaky) -ge 3"
            irreversible: true
            retries: {count: 3, delay: 0.1s, backoff: 2}
    """)
    result = project.runbook("run", "f.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.count("flaky") == 3
    status = project.runbook("status")
    line = next(line for line in status.stdout.splitlines() if "flaky" in line)
    assert " 3 " in line


def test_timeout_fails_the_step(sqlite_project: Project) -> None:
    """A step over its timeout is killed (process group) and fails."""
    sqlite_project.write("t.yaml", """
        name: t
        steps:
          - id: slow
            kind: command
            run: "sleep 30 & sleep 30"
            irreversible: true
            timeout: 0.5s
    """)
    result = sqlite_project.runbook("run", "t.yaml", timeout=20)
    assert result.returncode == 1
    assert "timed out" in result.stdout


def test_secrets_are_masked_everywhere(sqlite_project: Project) -> None:
    """A secret var never reaches the terminal, the logs or the state store."""
    secret = "hunter2-Sup3rSecret"
    sqlite_project.write("s.yaml", """
        name: s
        vars:
          token: {secret: true, env: API_TOKEN, required: true}
        steps:
          - id: use
            kind: command
            run: "echo token={{ vars.token }}; echo postgresql://u:{{ vars.token }}@db/x; exit 1"
            irreversible: true
    """)
    result = sqlite_project.runbook("run", "s.yaml", env={"API_TOKEN": secret})
    assert result.returncode == 1
    assert "token=***" in result.stdout
    everything = result.stdout + result.stderr
    for path in (sqlite_project.root / ".runbook").rglob("*"):
        if path.is_file():
            everything += path.read_bytes().decode("utf-8", "replace")
    assert secret not in everything
    db = sqlite3.connect(sqlite_project.root / ".runbook" / "state.db")
    dump = "\n".join(db.iterdump())
    assert secret not in dump


def test_from_step_requires_earlier_steps_passed(project: Project) -> None:
    """--from STEP is refused unless the earlier steps passed in the latest run."""
    project.write("pipeline.yaml", PIPELINE)
    refused = project.runbook("run", "pipeline.yaml", "--from", "deploy")
    assert refused.returncode == 3
    assert project.runbook("run", "pipeline.yaml").returncode == 0
    again = project.runbook("run", "pipeline.yaml", "--from", "deploy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [project.count(s) for s in ("migrate", "backfill", "deploy")] == [1, 1, 2]


def test_rollback_undoes_passed_steps_newest_first(project: Project) -> None:
    """runbook rollback RUN runs the rollbacks of passed steps in reverse order, each recorded."""
    project.write("rb.yaml", """
        name: rb
        steps:
          - id: a
            kind: command
            run: echo a >> counters/order
            rollback: {kind: command, run: echo undo-a >> counters/order}
          - id: b
            kind: command
            run: echo b >> counters/order
            rollback: {kind: command, run: echo undo-b >> counters/order}
          - id: c
            kind: command
            run: "false"
            rollback: {kind: command, run: echo undo-c >> counters/order}
    """)
    assert project.runbook("run", "rb.yaml").returncode == 1
    run_id = project.runbook("history").stdout.splitlines()[1].split()[0]
    preview = project.runbook("rollback", run_id, "--dry-run")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert preview.stdout.index("[b]") < preview.stdout.index("[a]")
    assert "c (it did not pass" in preview.stdout
    unasked = project.runbook("rollback", run_id)
    assert unasked.returncode == 3, unasked.stdout + unasked.stderr
    assert "--yes" in unasked.stderr and "1. [b]" in unasked.stdout
    assert (project.root / "counters" / "order").read_text().split() == ["a", "b"]
    result = project.runbook("rollback", run_id, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "counters" / "order").read_text().split() == ["a", "b", "undo-b", "undo-a"]
    assert "rolled back: b, a" in result.stdout
    history = project.runbook("history").stdout
    assert run_id in history and "failed" in history and "rolled_back" in history
    # The rollback is a run of its own: history and status say which run it undid.
    assert f"rolled_back (rollback of {run_id})" in history, history
    rollback_id = history.splitlines()[1].split()[0]
    assert f"  rollback of {run_id}\n" in project.runbook("show", rollback_id).stdout
    # And the parent names its rollback.
    assert f"failed (rolled back by {rollback_id})" in history, history
    assert f"  rolled back by {rollback_id}: rolled_back\n" in project.runbook("show", run_id).stdout
    assert json.loads(project.runbook("show", run_id, "--format", "json").stdout)["rolled_back_by"] == [rollback_id]
    # The parent is no longer unfinished: a new run may start.
    assert project.runbook("run", "rb.yaml").returncode == 1


def test_on_failure_rollback_runs_failed_then_passed_rollbacks(project: Project) -> None:
    """on_failure: rollback undoes the failed step, then the passed ones, newest first."""
    project.write("rb.yaml", """
        name: rb
        on_failure: rollback
        steps:
          - id: a
            kind: command
            run: echo a >> counters/order
            rollback: {kind: command, run: echo undo-a >> counters/order}
          - id: b
            kind: command
            run: "echo b >> counters/order; false"
            rollback: {kind: command, run: echo undo-b >> counters/order}
    """)
    assert project.runbook("run", "rb.yaml").returncode == 1
    assert (project.root / "counters" / "order").read_text().split() == ["a", "b", "undo-b", "undo-a"]


def test_json_log_format_emits_one_event_per_line(sqlite_project: Project) -> None:
    """--log-format json prints parseable events including each step transition."""
    sqlite_project.write("pipeline.yaml", PIPELINE)
    result = sqlite_project.runbook("run", "pipeline.yaml", "--log-format", "json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert sum(1 for e in events if e["event"] == "step_finished" and e["status"] == "passed") == 3


def test_a_check_that_cannot_look_reports_an_error_not_an_observed_value(sqlite_project: Project) -> None:
    """A gate whose check errors says `error: MESSAGE` in the output, the events and the report."""
    sqlite_project.write(
        "err.yaml",
        """
        name: err
        steps:
          - id: make
            kind: command
            run: "true"
            irreversible: true
            gates:
              - check: alembic_revision
                single_head: true
                config: missing/alembic.ini
        """,
    )
    result = sqlite_project.runbook("run", "err.yaml", "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    message = "alembic config missing/alembic.ini not found: no file "
    assert f"gate ✘ alembic_revision: error: {message}" in result.stdout
    assert f"gate 'alembic_revision' failed: error: {message}" in result.stdout
    assert "observed error" not in result.stdout
    run = result.stdout.split("▶ run ", 1)[1].split(":", 1)[0]
    report = json.loads(sqlite_project.runbook("report", run, "--format", "json").stdout)
    gate = report["steps"][0]["checks"][0]
    assert gate["observed"] is None and gate["error"].startswith(message)
