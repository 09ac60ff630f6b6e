"""Step definitions (steps/NAME.yaml): ``runbook schema --definition`` and ``runbook validate`` on the file alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner

from runbook.cli import main
from tests.schema.oracle import schema_errors

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = sorted((ROOT / "steps").glob("*.y*ml"))


def _validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(path)])
    return result.exit_code, result.output


def _validate_text(tmp_path: Path, name: str, text: str) -> tuple[int, str]:
    """Validate ``text`` as the definition steps/NAME of a project in ``tmp_path``."""
    path = tmp_path / "steps" / name
    path.parent.mkdir()
    path.write_text(text)
    return _validate(path)


def test_the_project_has_definitions() -> None:
    assert len(DEFINITIONS) >= 2


@pytest.mark.parametrize("path", DEFINITIONS, ids=[p.name for p in DEFINITIONS])
def test_project_definition_is_valid_alone_and_against_the_schema(path: Path) -> None:
    code, output = _validate(path)
    assert code == 0, output
    assert "valid step definition" in output
    assert schema_errors(yaml.safe_load(path.read_text()), definition=True) == []


def test_schema_command_prints_the_definition_schema() -> None:
    result = CliRunner().invoke(main, ["schema", "--definition"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["$id"].endswith("step-definition")
    assert set(schema["properties"]) == {"description", "params", "step"}


GOOD = """
params:
  conn: {type: string, description: the connection}
  limit: {type: integer, default: 100}
  wait: {type: duration}
step:
  kind: sql
  connection: "{{ params.conn }}"
  sql: "DELETE FROM t WHERE id IN (SELECT id FROM t LIMIT {{ params.limit }})"
  timeout: "{{ params.wait }}"
  retries: "{{ params.limit }}"
  irreversible: true
  gates:
    - check: row_count
      connection: "{{ params.conn }}"
      table: t
      expect: "{{ '== 0' }}"
"""


def test_templated_common_keys_and_missing_id_are_fine(tmp_path: Path) -> None:
    """A definition fills its common keys from parameters, and the runbook step gives the id."""
    code, output = _validate_text(tmp_path, "purge.yaml", GOOD.replace('retries: "{{ params.limit }}"', "retries: 2"))
    assert code == 0, output
    assert schema_errors(yaml.safe_load(GOOD), definition=True) == []


INVALID = {
    "unknown top-level key": ("params: {}\nstep: {kind: manual, instruction: x}\nname: x-def\n", "unknown key 'name'"),
    "no step": ("params: {a: {type: string}}\n", "needs a 'step' mapping"),
    "unknown parameter type": ("params: {a: {type: str}}\nstep: {kind: manual, instruction: '{{ params.a }}'}\n", "unknown type 'str'"),
    "unknown parameter key": ("params: {a: {kind: string}}\nstep: {kind: manual, instruction: '{{ params.a }}'}\n", "unknown key 'kind'"),
    "unknown key of the step's kind": ("step: {kind: manual, instructions: x}\n", "unknown key 'instructions'"),
    "unknown step kind": ("step: {kind: shell, run: x}\n", "unknown step kind 'shell'"),
    "unknown check kind": ("step: {kind: manual, instruction: x, gates: [{check: nope}]}\n", "unknown check kind 'nope'"),
}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_definition_is_rejected_by_validate_and_schema(name: str, tmp_path: Path) -> None:
    text, message = INVALID[name]
    code, output = _validate_text(tmp_path, "bad.yaml", text)
    assert code == 2 and message in output, output
    assert schema_errors(yaml.safe_load(text), definition=True)


def test_validate_only_an_undeclared_parameter(tmp_path: Path) -> None:
    """A template reading a parameter the definition does not declare: a reference the schema cannot see."""
    text = "step: {kind: manual, instruction: '{{ params.missing }}'}\n"
    code, output = _validate_text(tmp_path, "bad.yaml", text)
    assert code == 2 and "undeclared parameter 'missing'" in output, output
    assert schema_errors(yaml.safe_load(text), definition=True) == []


def test_a_definition_reading_runbook_vars_and_connections_is_valid(tmp_path: Path) -> None:
    """What it reads of the runbook using it (vars, a named connection, an earlier step) is that runbook's to declare."""
    text = (
        "step:\n  kind: sql\n  connection: app\n  sql: SELECT :region, :summary\n"
        "  params: {region: \"{{ vars.region }}\", summary: \"{{ steps.prep.outputs.summary }}\"}\n  irreversible: true\n"
    )
    code, output = _validate_text(tmp_path, "reads.yaml", text)
    assert code == 0, output


def test_plan_and_validate_of_a_runbook_do_not_load_the_schema_code() -> None:
    """`runbook plan` start-up stays light: neither the schema builder, the definition check nor jsonschema is imported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from runbook.cli import main\n"
        "for verb in ('plan', 'validate'):\n"
        "    try:\n"
        f"        main([verb, {str(ROOT / 'runbooks' / 'subscriber-fk.yaml')!r}])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print('loaded:', sorted(m for m in sys.modules if m in ('runbook.schema', 'runbook.reference', 'jsonschema')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    loaded = [line for line in done.stdout.splitlines() if line.startswith("loaded:")]
    assert loaded == ["loaded: []", "loaded: []"], done.stdout + done.stderr
