"""Hostile Markdown: YAML-special characters, template syntax, tabs, unicode, control characters.
Whatever the checklist says comes out of the runbook as the same text, and nothing in it is executed as a template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.importer.conftest import Workspace, load
from runbook.importer.yamltext import dump, escape_rendered, escape_shown
from runbook.loader import load_runbook
from runbook.templating import is_template, render

HOSTILE = Path(__file__).resolve().parent / "hostile" / "hostile.md"


def test_hostile_markdown_imports_validates_and_runs_as_written(workspace: Workspace) -> None:
    path, _ = workspace.imported(HOSTILE)
    assert workspace.runbook("validate", str(path)).exit_code == 0
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workspace.root / 'h.db'}"}
    plan = json.loads(workspace.runbook("plan", str(path), "--format", "json", env={"DATABASE_URL": env["DATABASE_URL"]}).stdout)
    titles = [s["title"] for s in plan["steps"]]
    assert titles[0] == "echo {{ user }} and {% if x %} \"quotes\" 'single' \\backslash : colon - dash"
    assert titles[1].startswith("Check {{ x }} and :colon")
    assert titles[2:6] == ["yes", "null", "0123", "~"]  # YAML's other readings of these words stay text
    assert titles[7] == "{% endraw %}{{ 1 + 1 }}"
    assert plan["rollback_options"][0]["use_when"] is None
    result = subprocess.run(
        [sys.executable, "-m", "runbook", "run", str(path), "--yes"], cwd=workspace.root, env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "{{ literal }} {% endraw %} {#comment#} --yes: no" in result.stdout
    assert "tab\there" in result.stdout and "{{{{ 4 }}}}" in result.stdout


def test_control_and_direction_characters_do_not_reach_the_runbook(workspace: Workspace) -> None:
    path, _ = workspace.imported(HOSTILE)
    text = path.read_text()
    assert "\x1b" not in text and "\u202e" not in text and "\ufffd[31mred" in text
    assert load(path)["steps"][0]["run"].count("\t") == 1  # a tab in a command stays a tab


# Text YAML can hold: no C0/C1 controls but tab and newline (the loader refuses the rest, written or escaped).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))))


@settings(max_examples=300, deadline=None)
@given(TEXT, st.lists(TEXT, max_size=3))
def test_any_text_is_written_so_that_yaml_reads_it_back(text: str, more: list[str]) -> None:
    """Scalars of every shape (plain words, quoted, literal blocks; keys; nested in lists and maps)."""
    document = dump({"name": text, "metadata": {"links": {text or "k": text}, "escalation": [{"role": t, "name": text} for t in more], "tags": more}})
    assert yaml.safe_load(document) == {
        "name": text,
        "metadata": {"links": {text or "k": text}, "escalation": [{"role": t, "name": text} for t in more], "tags": more},
    }


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_rendered_text_renders_back_to_itself_and_shown_text_is_no_template(text: str) -> None:
    assert render(escape_rendered(text), {}) == text
    assert not is_template(escape_shown(text))


@settings(max_examples=60, deadline=None)
@given(TEXT.filter(lambda t: t.strip()), TEXT)
def test_any_text_in_a_command_and_a_description_validates(tmp_path_factory: object, run: str, description: str) -> None:
    document = dump(
        {"name": "t", "steps": [{"id": "a", "title": run, "kind": "command", "run": run, "irreversible": True, "description": description}]}
    )
    path = Path(str(tmp_path_factory.mktemp("h"))) / "t.yaml"  # type: ignore[attr-defined]
    loaded = load_runbook(path, text=document)
    assert loaded.runbook.steps[0].title == escape_rendered(run)


SHELL_PLACES = [
    "echo $(( {{ x }} ))",
    "cat <<EOF\n{{ x }}\nEOF",
    "echo hi # {{ x }}\necho two",
    "echo `{{x}}`",
    "echo ${X:-{{ y }}}",
    "echo $'{{ a }}'",
    "echo ${{ secrets.X }}",
    "[[ {{ x }} ]] && cat <<< {{ x }}",
    "echo $(echo {{ x }} # c\n)",
]


def test_template_syntax_anywhere_in_a_shell_block_is_text(tmp_path: Path) -> None:
    """Where runbook refuses a templated value in a shell string, an escaped brace is no value: it validates."""
    for script in SHELL_PLACES:
        document = dump({"name": "t", "steps": [{"id": "a", "kind": "command", "run": script, "irreversible": True}]})
        assert load_runbook(tmp_path / "t.yaml", text=document).runbook.steps[0].params["run"] == escape_rendered(script)
