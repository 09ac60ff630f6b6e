"""Every runbook ``runbook validate`` accepts is valid against ``runbook schema``.

The corpus: every YAML file of the project that loads as a runbook (runbooks/,
examples/ with the checklists' drafts, tests/ data), and every runbook example
that tests/docs/test_doc_examples.py extracts from README.md and docs/*.md.
The oracle is the ``jsonschema`` package (what check-jsonschema runs), Draft 2020-12.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from runbook.errors import RunbookError
from runbook.loader import load_runbook
from tests.docs.test_doc_examples import BLOCKS, _wrap
from runbook.yamlsource import load_yaml
from tests.schema.oracle import editor_errors, schema_errors


def _read_yaml(text: str) -> object:
    # As an editor's YAML 1.2 server reads it: PyYAML (YAML 1.1) reads the key on: as true.
    return load_yaml(text, "<runbook>").data

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".venv", ".runbook", "node_modules", ".git"}


def _project_yaml() -> list[Path]:
    found = []
    for top in ("runbooks", "examples", "tests"):
        for path in sorted((ROOT / top).rglob("*.y*ml")):
            if not SKIPPED_DIRS & set(path.parts) and path.parent.name != "steps":
                found.append(path)
    return found


def _accepted(path: Path) -> bool:
    try:
        load_runbook(path)
    except RunbookError:
        return False
    return True


PROJECT_RUNBOOKS = [p for p in _project_yaml() if _accepted(p)]


def test_the_corpus_holds_the_project_runbooks() -> None:
    """The search found them (a broken glob must not make the test vacuous)."""
    names = {p.relative_to(ROOT).as_posix() for p in PROJECT_RUNBOOKS}
    for expected in (
        "runbooks/subscriber-fk.yaml",
        "runbooks/orders-customer-fk.yaml",
        "examples/checklists/subscriber-fk-imported.yaml",
        "tests/data/deploy-billing.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", PROJECT_RUNBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in PROJECT_RUNBOOKS])
def test_project_runbook_is_schema_valid(path: Path) -> None:
    data = _read_yaml(path.read_text())
    assert schema_errors(data) == []
    assert editor_errors(data) == []


DOC_RUNBOOKS = [b for b in BLOCKS if b.lang == "yaml" and b.annotation in (None, "fragment")]


def test_the_corpus_holds_the_doc_examples() -> None:
    assert len(DOC_RUNBOOKS) >= 10


@pytest.mark.parametrize("block", DOC_RUNBOOKS, ids=[b.where for b in DOC_RUNBOOKS])
def test_doc_example_is_schema_valid(block, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """As test_doc_examples validates it (a fragment wrapped in its minimal runbook)."""
    text = _wrap(block) if block.annotation == "fragment" else block.text
    shutil.copytree(ROOT / "steps", tmp_path / "steps")
    path = tmp_path / "runbooks" / "example.yaml"
    path.parent.mkdir()
    path.write_text(text)
    load_runbook(path)  # the premise: runbook validate accepts it
    data = _read_yaml(textwrap.dedent(text))
    assert schema_errors(data) == []
    assert editor_errors(data) == []
