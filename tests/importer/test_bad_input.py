"""Input import refuses: a clear message, exit 2, no traceback, nothing written; no file overwritten without --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.importer.conftest import CHECKLISTS, Workspace


def _refused(workspace: Workspace, *args: str) -> str:
    result = workspace.runbook("import", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert list((workspace.root / "runbooks").iterdir()) == []
    return result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\n\t\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary file"),
        (b"\xff\xfe#\x00 \x00T\x00", "binary file"),
        ("# Caf\u00e9 plan\n\n1. run `ls -l`\n".encode("latin-1"), "not UTF-8"),
        (b"# Notes about the release\n\nNothing to do yet; we will write the steps next week.\n\n- context\n- links\n", "found no steps"),
    ],
    ids=["empty", "blank", "png", "utf16", "latin1", "no-steps"],
)
def test_unreadable_checklists_are_refused(content: bytes, message: str, workspace: Workspace) -> None:
    checklist = workspace.root / "checklist.md"
    checklist.write_bytes(content)
    assert message in _refused(workspace, str(checklist))


def test_a_50_mb_file_is_refused_without_being_read(workspace: Workspace) -> None:
    checklist = workspace.root / "huge.md"
    with checklist.open("wb") as file:
        file.truncate(50 * 1024 * 1024)  # sparse: refused by its size, before any byte is read
    assert "52,428,800 bytes" in _refused(workspace, str(checklist))


def test_missing_file_and_directory(workspace: Workspace) -> None:
    assert "cannot read" in _refused(workspace, str(workspace.root / "nope.md"))
    assert "is a directory" in _refused(workspace, str(workspace.root / "runbooks"))


def test_an_existing_output_is_not_overwritten_without_force(workspace: Workspace) -> None:
    out = workspace.root / "runbooks" / "mine.yaml"
    out.write_text("# my own runbook\n")
    result = workspace.runbook("import", str(CHECKLISTS / "table-plan.md"), "-o", str(out))
    assert result.exit_code == 2 and "already exists" in result.output and "--force" in result.output
    assert out.read_text() == "# my own runbook\n"
    forced = workspace.runbook("import", str(CHECKLISTS / "table-plan.md"), "-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert out.read_text().startswith("# Imported from table-plan.md")


def test_the_default_output_is_not_overwritten_either(workspace: Workspace) -> None:
    first = workspace.runbook("import", str(CHECKLISTS / "front-matter.md"))
    assert first.exit_code == 0, first.output
    written = workspace.root / "runbooks" / "rotate-payments-database-password.yaml"
    written.write_text("# edited after review\n")
    again = workspace.runbook("import", str(CHECKLISTS / "front-matter.md"))
    assert again.exit_code == 2 and "already exists" in again.output
    assert written.read_text() == "# edited after review\n"


def test_stdout_output_writes_no_file(workspace: Workspace) -> None:
    result = workspace.runbook("import", str(CHECKLISTS / "prose-checkboxes.md"), "-o", "-", "--explain")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Imported from prose-checkboxes.md")
    assert "became" in result.stderr
    assert list((workspace.root / "runbooks").iterdir()) == []


def test_a_link_as_output_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me\n")
    link = workspace.root / "runbooks" / "x.yaml"
    link.symlink_to(target)
    result = workspace.runbook("import", str(CHECKLISTS / "table-plan.md"), "-o", str(link), "--force")
    assert result.exit_code != 0
    assert target.read_text() == "keep me\n"
