"""Every fenced example in README.md and docs/*.md is checked against the code, or visibly exempted.

The convention (docs/runbook-format.md §19): a ```yaml block with ``name:`` and
``steps:`` is a whole runbook, loaded with the real loader; any other ```yaml
block needs an HTML comment right before it, either ``<!-- fragment: KIND;
OPTION: a, b -->`` (wrapped in a minimal runbook, then loaded), ``<!-- quote:
PATH -->`` (a verbatim excerpt of a file of the project, which is loaded
itself when it is a runbook) or ``<!-- not-validated: REASON -->``. ```sh and
```bash blocks run each ``runbook ...`` line in a scratch copy of the project.
Everything happens in process (the loader and the CLI through click's runner).
"""

from __future__ import annotations

import re
import shlex
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner

from runbook.cli import main
from runbook.errors import RunbookError
from runbook.loader import load_runbook

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
ANNOTATION = re.compile(r"^<!--\s*(?P<what>fragment|quote|not-validated):\s*(?P<rest>.*?)\s*-->\s*$")
CHECKED_LANGUAGES = {"yaml", "sh", "bash"}
FRAGMENT_KINDS = {"step", "step-keys", "checks", "runbook-keys"}


@dataclass
class Block:
    document: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    annotation: str | None = None  # fragment | quote | not-validated
    argument: str = ""
    options: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def _blocks(document: Path) -> Iterator[Block]:
    lines = document.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        block = Block(document, i + 1, opening["lang"], "\n".join(lines[i + 1 : end]) + "\n")
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        note = ANNOTATION.match(previous.strip())
        if note is not None:
            block.annotation = note["what"]
            # A reason is free text; a fragment's or quote's argument may be followed by "; OPTION: values".
            parts = [note["rest"]] if note["what"] == "not-validated" else note["rest"].split(";")
            argument, *options = [part.strip() for part in parts]
            block.argument = argument
            for option in options:
                name, _, values = option.partition(":")
                block.options[name.strip()] = [v.strip() for v in values.split(",") if v.strip()]
        yield block
        i = end + 1


BLOCKS = [b for document in DOCUMENTS for b in _blocks(document) if b.lang in CHECKED_LANGUAGES]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of the project's runbooks and step definitions (the examples' `uses:` need them),
    and of the checklists docs/import.md imports."""
    root = tmp_path_factory.mktemp("doc-examples")
    shutil.copytree(ROOT / "runbooks", root / "runbooks")
    shutil.copytree(ROOT / "steps", root / "steps")
    shutil.copytree(ROOT / "examples" / "checklists", root / "examples" / "checklists")
    return root


def test_every_checked_language_block_was_found() -> None:
    """The extraction sees the examples (a broken fence pattern must not make the test vacuous)."""
    assert sum(b.lang == "yaml" for b in BLOCKS) >= 20
    assert any(b.lang in ("sh", "bash") for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_example(block: Block, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example is valid as the code reads it today, or exempted with a stated reason."""
    if block.annotation == "not-validated":
        assert block.argument, f"{block.where}: <!-- not-validated: ... --> needs a reason"
        pytest.skip(f"{block.where}: not validated: {block.argument}")
    monkeypatch.delenv("RUNBOOK_STEPS_DIR", raising=False)
    monkeypatch.delenv("RUNBOOK_PATH", raising=False)
    if block.lang in ("sh", "bash"):
        _run_shell(block, project, monkeypatch)
    elif block.annotation == "quote":
        _check_quote(block)
    elif block.annotation == "fragment":
        _validate(block, _wrap(block), project)
    else:
        data = _parse(block)
        assert isinstance(data, dict) and "name" in data and "steps" in data, (
            f"{block.where}: a yaml example that is not a whole runbook (name: and steps:) needs "
            "<!-- fragment: KIND -->, <!-- quote: PATH --> or <!-- not-validated: REASON --> right before it"
        )
        _validate(block, block.text, project)


def _parse(block: Block) -> Any:
    # runbook's own reader: PyYAML's YAML 1.1 would read the key ``on:`` as true.
    from runbook.errors import InvalidRunbook
    from runbook.yamlsource import load_yaml

    try:
        return load_yaml(textwrap.dedent(block.text), block.where).data
    except InvalidRunbook as err:
        raise AssertionError(f"{block.where}: not YAML: {err}") from err


def _validate(block: Block, text: str, project: Path) -> None:
    path = project / "runbooks" / f"doc-example-{block.document.stem}-{block.line}.yaml"
    path.write_text(text)
    try:
        load_runbook(path)
    except RunbookError as err:
        raise AssertionError(f"{block.where}: the example does not validate:\n{err}\n--- as validated:\n{text}") from err


def _wrap(block: Block) -> str:
    """A minimal runbook around a fragment; its options declare the vars, connections and
    earlier steps it refers to."""
    kind = block.argument
    assert kind in FRAGMENT_KINDS, f"{block.where}: fragment kind {kind!r} is not one of {sorted(FRAGMENT_KINDS)}"
    unknown = set(block.options) - {"vars", "connections", "earlier", "id"}
    assert not unknown, f"{block.where}: unknown fragment option(s) {sorted(unknown)}"
    data = _parse(block)
    runbook: dict[str, Any] = {"name": "doc-example"}
    if block.options.get("vars"):
        runbook["vars"] = {name: "example" for name in block.options["vars"]}
    if block.options.get("connections"):
        runbook["connections"] = {name: "sqlite:///example.db" for name in block.options["connections"]}
    steps = [_trivial_step(name) for name in block.options.get("earlier", [])]
    step_id = (block.options.get("id") or ["example"])[0]
    if kind == "runbook-keys":
        assert isinstance(data, dict), f"{block.where}: a runbook-keys fragment is a mapping"
        for key, value in data.items():
            runbook[key] = {**runbook[key], **value} if isinstance(runbook.get(key), dict) else value
        runbook.setdefault("steps", [_trivial_step(step_id)])
    elif kind == "step":
        runbook["steps"] = steps + (data if isinstance(data, list) else [data])
    elif kind == "step-keys":
        assert isinstance(data, dict), f"{block.where}: a step-keys fragment is a mapping of step keys"
        runbook["steps"] = [*steps, {**_trivial_step(step_id), **data}]
    else:  # checks: a list of checks, made the gates of a step
        assert isinstance(data, list), f"{block.where}: a checks fragment is a list of checks"
        runbook["steps"] = [*steps, {**_trivial_step(step_id), "gates": data}]
    return yaml.safe_dump(runbook, sort_keys=False, allow_unicode=True)


def _trivial_step(step_id: str) -> dict[str, Any]:
    return {"id": step_id, "kind": "command", "run": "true", "irreversible": True}


def _check_quote(block: Block) -> None:
    """The block is a verbatim run of lines of the file (blank lines and indentation aside)."""
    path = ROOT / block.argument
    assert path.is_file(), f"{block.where}: quotes {block.argument}, which does not exist"
    wanted = [line.strip() for line in block.text.splitlines() if line.strip()]
    have = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    found = any(have[i : i + len(wanted)] == wanted for i in range(len(have) - len(wanted) + 1))
    assert found, f"{block.where}: the example is no longer a verbatim excerpt of {block.argument}"
    if path.parent.name == "runbooks":
        load_runbook(path)


def _run_shell(block: Block, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    lines = [line.strip() for line in block.text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines, f"{block.where}: an empty shell example"
    for line in lines:
        words = shlex.split(line)
        assert words[0] == "runbook", f"{block.where}: {line!r} is not a runbook command; exempt the block with a reason"
        output: Path | None = None
        if ">" in words:
            at = words.index(">")
            assert at == len(words) - 2, f"{block.where}: only a final '> FILE' redirection is understood: {line!r}"
            output, words = project / words[-1], words[:at]
        result = CliRunner().invoke(main, words[1:], catch_exceptions=False)
        assert result.exit_code == 0, f"{block.where}: {line!r} exited {result.exit_code}:\n{result.output}"
        if output is not None:
            output.write_text(result.output)
