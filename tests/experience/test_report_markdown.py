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
