"""Invalid runbooks: ``runbook validate`` rejects each; the schema rejects what JSON Schema can see.

``CAUGHT_BY_BOTH`` are shape errors (unknown keys per kind, required keys per
kind, a missing kind, wrong types, unknown kinds). ``VALIDATE_ONLY`` are what
a JSON Schema cannot express (references between parts of the file, template
names, rules across keys, ordering of a range): the schema accepts them, and
the test says so, so that one the schema learns to catch moves to the first list.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from runbook.errors import InvalidRunbook
from runbook.loader import load_runbook
from tests.schema.oracle import editor_errors, schema_errors

HEAD = "name: broken\nconnections: {app: 'sqlite:///x.db'}\nvars: {who: me}\nsteps:\n"
MANUAL = "  - id: a\n    kind: manual\n    instruction: do it\n"

CAUGHT_BY_BOTH = {
    "unknown key of a step kind": "  - id: a\n    kind: manual\n    instructions: do it\n",
    "key of another kind": "  - id: a\n    kind: manual\n    instruction: do it\n    run: echo\n",
    "missing required key of a step kind": "  - id: a\n    kind: command\n    irreversible: true\n",
    "missing required key of a sql step": "  - id: a\n    kind: sql\n    sql: select 1\n    irreversible: true\n",
    "missing kind": "  - id: a\n    instruction: do it\n",
    "missing id": "  - kind: manual\n    instruction: do it\n",
    "unknown step kind": "  - id: a\n    kind: shell\n    run: echo\n",
    "unknown common step key": MANUAL + "    retry: 3\n",
    "with without uses": MANUAL + "    with: {x: 1}\n",
    "bad step id": "  - id: Step-A\n    kind: manual\n    instruction: do it\n",
    "wrong type of a common key": MANUAL + "    irreversible: maybe\n",
    "wrong type of a kind key": "  - id: a\n    kind: backfill\n    connection: app\n    table: t\n    key: id\n    where: x IS NULL\n"
    "    update: UPDATE t SET x = 1 WHERE id BETWEEN :lo AND :hi\n    batch_size: many\n    irreversible: true\n",
    "template in a common key": MANUAL + "    timeout: '{{ vars.who }}'\n",
    "not a duration": MANUAL + "    timeout: 5 minutes\n",
    "negative retries": MANUAL + "    retries: -1\n",
    "unknown retries key": MANUAL + "    retries: {count: 2, wait: 5s}\n",
    "unknown on_failure": MANUAL + "    on_failure: retry\n",
    "unknown check kind": MANUAL + "    gates:\n      - check: file_present\n        path: x\n",
    "check without check": MANUAL + "    gates:\n      - path: x\n",
    "unknown key of a check kind": MANUAL + "    gates:\n      - check: file_exists\n        path: x\n        size: 1\n",
    "missing required key of a check kind": MANUAL + "    gates:\n      - check: file_fresh\n        path: x\n",
    "unknown on_fail": MANUAL + "    gates:\n      - check: file_exists\n        path: x\n        on_fail: ignore\n",
    "common step key in a rollback body": "  - id: a\n    kind: command\n    run: echo\n    rollback:\n      kind: command\n      run: echo undo\n      confirm: sure?\n",
    "rollback body without kind": "  - id: a\n    kind: command\n    run: echo\n    rollback:\n      run: echo undo\n",
    "unknown dry_run word": MANUAL + "    dry_run: preview\n",
    "unknown top-level key": MANUAL + "owner: me\n",
    "unknown key of an environment": MANUAL + "environments:\n  prod: {protected: yes, owner: me}\n",
    "unknown key of a var": HEAD.replace("vars: {who: me}", "vars: {who: {defualt: me}}") + MANUAL,
    "unknown metadata key": MANUAL + "metadata: {owners: me}\n",
    "not an estimate": MANUAL + "    estimate: soon\n",
    "unknown key of a success criterion check": MANUAL + "success_criteria:\n  - description: ok\n    check: {check: value, value: 1, expect: '== 1', extra: 2}\n",
    "unknown notification channel type": MANUAL + "notifications:\n  channels: [{type: slack}]\n",
    "steps not a list": "  a: 1\n",
    "sql and file both given": "  - id: a\n    kind: sql\n    connection: app\n    sql: select 1\n    file: x.sql\n    irreversible: true\n",
    "neither update nor resolve": "  - id: a\n    kind: backfill\n    connection: app\n    table: t\n    key: id\n    where: x IS NULL\n    irreversible: true\n",
    "row_count with table and query": MANUAL + "    gates:\n      - {check: row_count, connection: app, table: t, query: select 1}\n",
}

VALIDATE_ONLY = {
    # References between parts of the file.
    "needs an unknown step": MANUAL + "    needs: b\n",
    "needs a later step": "  - id: a\n    kind: manual\n    instruction: x\n    needs: b\n  - id: b\n    kind: manual\n    instruction: y\n",
    "duplicate step id": MANUAL + MANUAL,
    "unknown connection": "  - id: a\n    kind: sql\n    connection: other\n    sql: select 1\n    irreversible: true\n",
    "undefined var in a template": "  - id: a\n    kind: manual\n    instruction: '{{ vars.nobody }}'\n",
    "environment sets an undeclared var": MANUAL + "environments:\n  prod: {vars: {nobody: 1}}\n",
    "uses an unknown definition": "  - id: a\n    uses: no-such-definition\n",
    # Rules across keys of one kind (pydantic model validators) beyond "exactly one of".
    "set_column missing with resolve": "  - id: a\n    kind: backfill\n    connection: app\n    table: t\n    key: id\n    where: x IS NULL\n"
    "    resolve: SELECT id, 1, 1 FROM t WHERE id BETWEEN :lo AND :hi\n    irreversible: true\n",
    "a var default outside its choices": HEAD.replace("vars: {who: me}", "vars: {who: {default: me, choices: [you]}}") + MANUAL,
    # Values a pattern cannot judge.
    "an estimate range running backwards": MANUAL + "    estimate: 5m-1m\n",
    "a template that does not parse": "  - id: a\n    kind: manual\n    instruction: '{{ vars.who '\n",
}


def _text(name: str, body: str) -> str:
    """A whole runbook: ``body`` is its steps, or the whole file when it starts with ``name:``."""
    return body if body.startswith("name:") else HEAD + body


def _validate_rejects(text: str, tmp_path: Path) -> None:
    path = tmp_path / "runbooks" / "broken.yaml"
    path.parent.mkdir(exist_ok=True)
    (tmp_path / "steps").mkdir(exist_ok=True)
    path.write_text(text)
    with pytest.raises(InvalidRunbook):
        load_runbook(path)


@pytest.mark.parametrize("name", CAUGHT_BY_BOTH)
def test_caught_by_validate_and_schema(name: str, tmp_path: Path) -> None:
    text = _text(name, CAUGHT_BY_BOTH[name])
    _validate_rejects(text, tmp_path)
    assert schema_errors(yaml.safe_load(text)), f"the schema accepts: {name}\n{text}"
    assert editor_errors(yaml.safe_load(text)), f"the schema's draft-7 view (VS Code) accepts: {name}\n{text}"


@pytest.mark.parametrize("name", VALIDATE_ONLY)
def test_caught_by_validate_only(name: str, tmp_path: Path) -> None:
    text = _text(name, VALIDATE_ONLY[name])
    _validate_rejects(text, tmp_path)
    assert schema_errors(yaml.safe_load(text)) == [], f"the schema now catches {name!r}: move it to CAUGHT_BY_BOTH"


def test_the_valid_base_is_valid(tmp_path: Path) -> None:
    """The invalid runbooks differ from this valid one only by what their name says."""
    path = tmp_path / "ok.yaml"
    path.write_text(HEAD + MANUAL)
    load_runbook(path)
    assert schema_errors(yaml.safe_load(textwrap.dedent(HEAD + MANUAL))) == []
