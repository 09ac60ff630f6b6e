"""`runbook docs`: the documentation an installed user has, from the package itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from runbook.cli import main

from .conftest import Scratch, Terminal
from .test_completion import _complete

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"


def docs(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["docs", *args])
    return result.exit_code, result.output


def test_the_listing_names_every_document_with_its_title() -> None:
    code, out = docs()
    assert code == 0
    for doc in DOCS.glob("*.md"):
        title = doc.read_text().splitlines()[0].removeprefix("# ")
        name = "format" if doc.stem == "runbook-format" else doc.stem
        assert re.search(rf"^{re.escape(name)} +{re.escape(title)}$", out, re.MULTILINE), (doc.name, out)
    assert out.splitlines()[0].split()[0] == "format"


def test_a_topic_prints_the_repositorys_file(scratch: Scratch) -> None:
    """Piped (no terminal): the file as it is, no pager, by its short name or its file name."""
    for name in ("format", "runbook-format"):
        shown = scratch.runbook("docs", name)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == (DOCS / "runbook-format.md").read_text()
    assert scratch.runbook("docs", "fleet").stdout == (DOCS / "fleet.md").read_text()


def test_a_section_prints_only_that_section() -> None:
    code, out = docs("format", "vars")
    assert code == 0
    assert out.startswith("### 4.2 vars\n") and "### 4.3" not in out and "| `env` |" in out
    # Several sections in document order; one inside another is printed once, with it.
    code, out = docs("format", "4.2", "4", "timeout")
    assert code == 0
    assert out.startswith("## 4. Top-level keys\n") and out.count("### 4.2 vars") == 1 and "## 5." not in out
    assert out.index("### 4.8 approvals") < out.index("### `timeout`")


def test_headings_inside_code_blocks_are_not_sections() -> None:
    """docs/runbook-format.md shows a YAML comment `# yaml-language-server: ...` in a code block."""
    code, out = docs("format", "yaml-language-server")
    assert code == 2
    assert "no section of 'format' has 'yaml-language-server' in its heading" in out
    assert "    Resuming: what is carried over and what is re-verified" in out


def test_an_unknown_topic_exits_2_naming_the_known_ones() -> None:
    code, out = docs("formats")
    assert code == 2
    assert "no documentation topic 'formats'" in out and "format, " in out and "tutorial" in out
    assert "Traceback" not in out


def test_on_a_terminal_the_text_goes_through_the_pager(scratch: Scratch, terminal: Callable[..., Terminal], tmp_path: Path) -> None:
    pager = tmp_path / "pager"
    pager.write_text("#!/bin/sh\nsed 's/^/paged: /'\n")
    pager.chmod(0o755)
    term = terminal("docs", "cli", env={"PAGER": str(pager)})
    assert term.finish() == 0
    assert "paged: # Command-line conventions" in term.expect("paged: ")


def test_init_points_at_a_command_that_prints_the_reference(scratch: Scratch) -> None:
    created = scratch.runbook("init", "demo")
    assert "runbook docs format" in created.stdout
    reference = next(line for line in (scratch.root / "runbooks" / "demo.yaml").read_text().splitlines() if "Reference:" in line)
    command = re.search(r"`runbook (docs [^`]+)`", reference)
    assert command, reference
    shown = scratch.runbook(*command.group(1).split())
    assert shown.returncode == 0 and shown.stdout.startswith("# Runbook file format")
    assert os.sep + "docs" + os.sep not in reference


def test_a_reader_that_stops_early_ends_it_quietly(scratch: Scratch) -> None:
    """`runbook docs format | head`, `runbook history | head`: the pipe closes before the text is
    written; the verbs that only print end with no error and no traceback."""
    for args in (["docs", "format"], ["docs", "format", "vars"], ["schema"], ["history"], ["status"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        proc = subprocess.run([sys.executable, "-m", "runbook", *args], cwd=scratch.root, env=scratch.env(), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
        os.close(write_end)
        assert (proc.returncode, proc.stderr) == (0, ""), args


def test_topics_complete_on_tab(scratch: Scratch) -> None:
    assert _complete(scratch, "runbook docs ma") == [("plain", "machine-output")]
    assert ("plain", "format") in _complete(scratch, "runbook docs ")
