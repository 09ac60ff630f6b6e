"""``runbook report`` as Markdown: a table a ticket system renders as written."""

from __future__ import annotations

from tests.experience.conftest import Scratch


def test_markdown_report_keeps_table_cells_whole_and_skips_out_of_problems(scratch: Scratch) -> None:
    scratch.write(
        "ticket.yaml",
        """\
        name: ticket
        steps:
          - id: migrate
            title: Add the column
            kind: command
            run: "true"
            gates:
              - check: command
                name: "subscriber_id | YES | character varying"
                run: "true"
          - id: production_only
            kind: command
            run: "true"
            when: "environment == 'production'"
        """,
    )
    assert scratch.runbook("run", "ticket.yaml").returncode == 0
    result = scratch.runbook("report", scratch.latest_run_id())
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    # Every row has the header's six cells: an unescaped "|" in a gate name would add two.
    assert [row.replace("\\|", "").count("|") for row in rows] == [7, 7]
    assert "subscriber_id \\| YES \\| character varying" in rows[0]
    assert rows[1].startswith("| `production_only`  | skipped |"), "a step without a title is not named twice"
    assert "## Problems" not in result.stdout


def test_a_rolled_back_run_says_so_and_offers_no_stale_commands(scratch: Scratch) -> None:
    """After `runbook rollback`, the failed run's report names the rollback run, drops the resume
    and rollback commands it printed when it failed, and counts no rollback mark as an attempt;
    the rollback run's own report does not list the steps it was not asked to undo as never run."""
    scratch.write(
        "undo.yaml",
        """\
        name: undo
        steps:
          - id: one
            kind: command
            run: echo one
            rollback: {kind: command, run: echo undo-one}
          - id: two
            kind: command
            run: exit 1
            irreversible: true
        """,
    )
    assert scratch.runbook("run", "undo.yaml").returncode == 1
    failed = scratch.latest_run_id()
    assert "## Next" in scratch.runbook("report", failed).stdout
    assert scratch.runbook("rollback", failed, "--yes").returncode == 0
    rollback = scratch.latest_run_id()
    report = scratch.runbook("report", failed).stdout
    assert f"**Failed at step two; rolled back by run {rollback}**" in report
    assert "## Next" not in report and "--resume" not in report
    assert "| `one`  | rolled_back | 1 |" in report
    assert "not run" not in scratch.runbook("report", rollback).stdout
