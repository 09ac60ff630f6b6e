"""``runbook history``: one aligned row per run with its status symbol and duration."""

from __future__ import annotations

import re
import unicodedata

from tests.experience.conftest import Scratch

PIPELINE = """\
name: pipeline
vars:
  fail: {default: "no"}
steps:
  - id: migrate
    kind: command
    run: "test {{ vars.fail }} = no"
  - id: deploy
    kind: command
    run: echo deploy
    needs: [migrate]
"""


def test_history_is_an_aligned_table_with_symbols_and_durations(scratch: Scratch) -> None:
    scratch.write("pipeline.yaml", PIPELINE)
    assert scratch.runbook("run", "pipeline.yaml").returncode == 0
    assert scratch.runbook("run", "pipeline.yaml", "--var", "fail=yes").returncode == 1
    # The failed run owns the environment until it is abandoned; then --only deploy is
    # refused because migrate's newest attempt (in the abandoned run) failed.
    assert scratch.runbook("abandon", scratch.latest_run_id(), "--reason", "trying again").returncode == 0
    assert scratch.runbook("run", "pipeline.yaml", "--only", "deploy").returncode == 3
    assert scratch.runbook("run", "pipeline.yaml", "--dry-run").returncode == 0
    result = scratch.runbook("history")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["run", "runbook", "env", "status", "started", "took", "by"]
    row = re.compile(
        r"(?P<run>\S+) +(?P<runbook>\S+) +(?P<env>\S+) +(?P<status>\S \w+(?: \(dry run\))?) +"
        r"(?P<started>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) +(?P<took>\d+\.\ds|-) +(?P<by>\S+)"
    )
    table = [row.fullmatch(line) for line in rows]
    assert all(table), rows
    assert [m["status"] for m in table] == ["✔ passed (dry run)", "⛔ refused", "⊘ abandoned", "✔ passed"]  # type: ignore[index]
    # Every one of these runs is finished (a refusal before anything acted, an abandoned run).
    assert [m["took"] != "-" for m in table] == [True, True, True, True]  # type: ignore[index]
    assert table[0]["run"] == scratch.latest_run_id()  # type: ignore[index]
    # Aligned as a terminal draws it (⛔ is two columns wide): each value starts where
    # its column's name starts; "took" is right-aligned under its name.
    for m in table:
        assert m is not None
        line = m.string
        for name in ("runbook", "env", "status", "started", "by"):
            assert _columns(line[: m.start(name)]) == _columns(header[: header.index(name)]), (name, line)
        assert _columns(line[: m.end("took")]) == _columns(header[: header.index("took") + 4]), line


def _columns(text: str) -> int:
    """Terminal columns, as a terminal draws them: ⛔ and ⚡ take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def test_a_runbook_name_where_a_run_id_goes_names_its_latest_run(scratch: Scratch) -> None:
    """`runbook status pipeline` (a runbook, not a run id): exit 2, saying so, with the
    latest run's id and the history command; an unknown word keeps the plain hint."""
    scratch.write("pipeline.yaml", PIPELINE)
    assert scratch.runbook("run", "pipeline.yaml").returncode == 0
    run_id = scratch.latest_run_id()
    for verb in ("status", "show", "pause"):
        result = scratch.runbook(verb, "pipeline")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "'pipeline' is a runbook, not a run id" in result.stderr, result.stderr
        assert f"runbook status {run_id}" in result.stderr and "runbook history pipeline" in result.stderr
    unknown = scratch.runbook("show", "nothing-like-it")
    assert unknown.returncode == 2 and "runbook history lists the runs" in unknown.stderr
