"""Approvals with identity: policies, the starter excluded, delegation refused, rejections,
and a run that waits (--wait) and goes on by itself once the approvals arrive from
another checkout, given by other real OS users."""

from __future__ import annotations

import pytest

from runbook import identity
from runbook.state import StateStore
from tests.team.conftest import Checkout, needs_other_users, only_run, run_status, wait_for, write_both

TEAM = """
name: team
approvals:
  groups:
    dba: [alice, bob]
steps:
  - id: prepare
    kind: command
    run: echo prepared
    irreversible: true
  - id: deploy
    kind: command
    run: echo deployed > deployed.txt
    irreversible: true
    confirm: Deploy version 2?
    approval: {required: 2, approvers: ["group:dba", carol], not_by: starter}
"""

SIMPLE = """
name: simple
steps:
  - id: deploy
    kind: command
    run: echo deployed >> deployed.txt
    irreversible: true
    confirm: Deploy?
"""


@pytest.mark.slow
@needs_other_users
def test_two_approvers_from_another_checkout_and_the_waiting_run_goes_on(checkouts: tuple[Checkout, Checkout], people: tuple[str, ...]) -> None:
    a, b = checkouts
    write_both(checkouts, "team.yaml", TEAM)
    with a.running("run", "team.yaml", "--wait") as (proc, out):
        wait_for(lambda: "waiting for 2 approval(s) of 'deploy'" in out.read_text(), "the run to wait for approvals")
        run_id = only_run(a.state_url, "team")
        me = identity.current().user

        # The starter may not approve its own run: not_by: starter.
        own = b.runbook("approve", run_id, "deploy")
        assert own.returncode == 3, own.stdout + own.stderr
        assert f"{me} started this run" in own.stderr and "not_by: starter" in own.stderr

        # alice may not approve in bob's name: the runbook does not allow delegation.
        posing = b.runbook("approve", run_id, "deploy", "--by", "bob", user="alice")
        assert posing.returncode == 2, posing.stdout + posing.stderr
        assert "you are alice" in posing.stderr and "allow_delegation: true" in posing.stderr

        first = b.runbook("approve", run_id, "deploy", "--comment", "LGTM", user="alice")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "1 more approval(s) needed" in first.stdout and "goes on by itself" in first.stdout
        wait_for(lambda: "'deploy' approved by alice; 1 more needed" in out.read_text(), "the run to see alice's approval")
        assert proc.poll() is None  # one approval of two: still waiting

        second = b.runbook("approve", run_id, "deploy", user="bob")
        assert second.returncode == 0, second.stdout + second.stderr
        assert proc.wait(timeout=60) == 0, out.read_text()
    text = out.read_text()
    assert "'deploy' approved by bob" in text
    assert (a.root / "deployed.txt").read_text() == "deployed\n"
    with StateStore.open(a.state_url) as store:
        decisions = store.decisions(run_id, "deploy")
        assert [(d.by, d.os_user, d.decision) for d in decisions] == [("alice", "alice", "approved"), ("bob", "bob", "approved")]
        recorded = [e.detail for e in store.events(run_id) if e.event == "approval_recorded"]
        assert [(d["by"], d["os_user"]) for d in recorded] == [("alice", "alice"), ("bob", "bob")]
        assert store.get_run(run_id).params["starter"]["user"] == me  # type: ignore[union-attr]
    report = a.runbook("report", run_id)
    assert report.returncode == 0, report.stderr
    assert "alice" in report.stdout and "bob" in report.stdout


@pytest.mark.slow
@needs_other_users
def test_rejection_fails_the_waiting_run_and_resume_needs_a_new_approval(checkouts: tuple[Checkout, Checkout], people: tuple[str, ...]) -> None:
    a, b = checkouts
    write_both(checkouts, "simple.yaml", SIMPLE)
    with a.running("run", "simple.yaml", "--wait") as (proc, out):
        wait_for(lambda: "waiting for 1 approval(s)" in out.read_text(), "the run to wait for an approval")
        run_id = only_run(a.state_url, "simple")
        rejected = b.runbook("reject", run_id, "deploy", "--reason", "not during the sale", user="carol")
        assert rejected.returncode == 0, rejected.stdout + rejected.stderr
        assert proc.wait(timeout=60) == 1, out.read_text()
    assert "rejected by carol: not during the sale" in out.read_text()
    assert not (a.root / "deployed.txt").exists()

    refused = a.runbook("run", "simple.yaml", "--resume")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "was rejected by carol" in refused.stderr and f"runbook approve {run_id} deploy" in refused.stderr

    assert b.runbook("approve", run_id, "deploy", user="carol").returncode == 0
    resumed = a.runbook("run", "simple.yaml", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (a.root / "deployed.txt").read_text() == "deployed\n"
    with StateStore.open(a.state_url) as store:
        events = [e.event for e in store.events(run_id)]
        assert "rejected" in events and events.count("approval_recorded") == 1
    report = a.runbook("report", run_id)
    assert "rejected" in report.stdout and "not during the sale" in report.stdout


@pytest.mark.slow
def test_a_rejection_while_nobody_waits_fails_the_run(checkouts: tuple[Checkout, Checkout]) -> None:
    """Without --wait and a terminal the run stops awaiting approval (exit 4), as before; a
    rejection then fails it, and only a new approval lets it resume."""
    a, b = checkouts
    write_both(checkouts, "simple.yaml", SIMPLE)
    assert a.runbook("run", "simple.yaml").returncode == 4
    run_id = only_run(a.state_url, "simple")
    assert b.runbook("reject", run_id, "deploy", "--reason", "wrong window").returncode == 0
    assert run_status(a.state_url, run_id) == "failed"
    assert a.runbook("run", "simple.yaml", "--resume").returncode == 3
    resumed = a.runbook("run", "simple.yaml", "--resume", "--approve", "deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_policies_are_checked_where_they_are_written(checkouts: tuple[Checkout, Checkout]) -> None:
    a, _b = checkouts
    a.write(
        "bad.yaml",
        """
        name: bad
        approvals:
          groups:
            dba: [alice]
        steps:
          - id: deploy
            kind: command
            run: "true"
            irreversible: true
            approval: {required: 2, approvers: ["group:dba"]}
          - id: other
            kind: command
            run: "true"
            irreversible: true
            approval: {approvers: ["group:ops"]}
        """,
    )
    out = a.runbook("validate", "bad.yaml")
    assert out.returncode == 2, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "bad.yaml:11:16: steps[0].approval.required: requires 2 approvals but only 1 may approve: alice" in text
    assert "bad.yaml:16:28: steps[1].approval.approvers[0]: unknown approver group 'ops' (approvals.groups: dba)" in text
    assert "2 error(s)" in text


def test_wait_timeout_stops_awaiting_approval_as_without_wait(checkouts: tuple[Checkout, Checkout]) -> None:
    a, _b = checkouts
    a.write("simple.yaml", SIMPLE)
    out = a.runbook("run", "simple.yaml", "--wait-timeout", "1s")
    assert out.returncode == 4, out.stdout + out.stderr
    assert "waiting for 1 approval(s) of 'deploy'" in out.stdout and "awaiting approval" in out.stdout
    bad = a.runbook("run", "simple.yaml", "--wait-timeout", "soon")
    assert bad.returncode == 2 and "--wait-timeout" in bad.stderr


DELEGATION = """
name: delegated
approvals: {groups: {dba: [alice]}}
steps:
  - id: deploy
    kind: command
    run: echo deployed >> deployed.txt
    irreversible: true
    confirm: Deploy?
    approval: {required: 1, approvers: ["group:dba"], not_by: starter}
"""


@pytest.mark.slow
@needs_other_users
def test_an_approval_in_another_name_counts_only_where_the_run_allows_delegation(checkouts: tuple[Checkout, Checkout]) -> None:
    """`approve` judges --by against its user's copy of the runbook; a copy that allows
    delegation lets bob record an approval as alice, but the run (whose runbook does not
    allow it) does not count it: the engine judges every decision again."""
    a, b = checkouts
    write_both(checkouts, "delegated.yaml", DELEGATION)
    paused = a.runbook("run", "delegated.yaml")
    assert paused.returncode == 4, paused.stdout + paused.stderr
    run_id = only_run(a.state_url, "delegated")
    # What `runbook approve --by alice` run by bob records from a copy allowing delegation
    # (here bob could read a's copy, which refuses it: the record is written as that copy would).
    with StateStore.open(a.state_url) as store:
        fingerprint = store.step_states(run_id)["deploy"].fingerprint
        store.record_approval(run_id, "deploy", by="alice", comment=None, fingerprint=fingerprint, os_user="bob")
    still = a.runbook("run", "delegated.yaml", "--resume")
    assert still.returncode == 4, still.stdout + still.stderr
    assert not (a.root / "deployed.txt").exists()
    real = b.runbook("approve", run_id, "deploy", user="alice")
    assert real.returncode == 0, real.stdout + real.stderr
    done = a.runbook("run", "delegated.yaml", "--resume")
    assert done.returncode == 0, done.stdout + done.stderr


PINNED = """
name: pinned
environments:
  production:
    approval: {required: 2, approvers: [alice, bob], not_by: starter}
steps:
  - id: deploy
    kind: command
    run: echo deployed >> deployed.txt
    irreversible: true
    confirm: Deploy?
"""


def test_the_policy_a_run_started_with_holds_to_its_end(checkouts: tuple[Checkout, Checkout]) -> None:
    """A policy edited out of the file (or the confirmation removed) before a resume does not
    approve the step: the run pinned its policies when it started."""
    a, _ = checkouts
    a.write("pinned.yaml", PINNED)
    paused = a.runbook("run", "pinned.yaml", "--env", "production", "--yes")
    assert paused.returncode == 4, paused.stdout + paused.stderr
    a.write("pinned.yaml", PINNED.replace("    approval: {required: 2, approvers: [alice, bob], not_by: starter}\n", "    description: prod\n").replace("    confirm: Deploy?\n", ""))
    resumed = a.runbook("run", "pinned.yaml", "--env", "production", "--resume", "--yes", "--accept-changes")
    assert resumed.returncode == 4, resumed.stdout + resumed.stderr
    assert not (a.root / "deployed.txt").exists()
