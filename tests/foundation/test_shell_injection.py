"""Command injection through templated values in ``run:`` strings (issue 11, item 1).

Each script below once made ``/bin/sh`` execute a ``--var`` value: the shell-quoting
scanner misread a construct and quoted the value for the wrong place. The scanner
now fails closed: where it is not certain how the shell reads a value, the runbook
is invalid (exit 2, ``FILE:LINE:COL: key.path``), and the message says how to pass
the value instead. Nothing runs, whatever the value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

Outcome = Any  # conftest.Outcome

PAYLOADS = ["x; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", '"; touch PWNED; "']

ATTACKS = {
    # ``<<`` of an arithmetic shift was taken for a here-document: the next line became its body.
    "arithmetic-shift": "echo size=$(( 1 << 20 ))\necho value={{ vars.v }}\n",
    # Quotes nested inside ${...} are a new quoting level; the scanner thought they closed the outer "...".
    "nested-parameter-quotes": 'echo "${UNSET:-"{{ vars.v }}"}"\n',
    # The ) of a case pattern was taken for the end of $( ... ).
    "case-in-substitution": 'echo "$(case a in a) echo {{ vars.v }};; esac)"\n',
    # A backslash at the end of a here-document line joins the delimiter line to it: the body goes on.
    "heredoc-continuation": "cat <<EOF\na line \\\nEOF\necho {{ vars.v }}\nEOF\n",
}


def _runbook(run: str, *, from_output: bool = False) -> str:
    steps: list[dict[str, Any]] = []
    if from_output:
        # The value comes from an earlier step's stdout instead of a --var.
        steps.append({"id": "source", "kind": "command", "run": ["printf", "%s", "{{ vars.v }}"], "irreversible": True})
        run = run.replace("vars.v", "steps.source.outputs.stdout")
    steps.append({"id": "target", "kind": "command", "run": run, "irreversible": True})
    return yaml.safe_dump({"name": "attack", "vars": {"v": {"default": "x"}}, "steps": steps}, sort_keys=False)


@pytest.mark.parametrize("from_output", [False, True], ids=["var", "step-output"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_refused_at_validation(cli: Callable[..., Outcome], write: Callable[..., Path], attack: str, from_output: bool) -> None:
    """``runbook validate`` refuses the script with a located error that says what to do instead."""
    write("rb.yaml", _runbook(ATTACKS[attack], from_output=from_output))
    outcome = cli("validate", "rb.yaml")
    outcome.assert_clean()
    assert outcome.exit_code == 2, outcome.stdout + outcome.stderr
    step = 1 if from_output else 0
    diagnostic = next(d for d in outcome.diagnostics if d["path"] == f"steps[{step}].run")
    assert diagnostic["file"] == "rb.yaml"
    assert "env:" in diagnostic["message"] and "argv" in diagnostic["message"], diagnostic


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("from_output", [False, True], ids=["var", "step-output"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_runs_nothing(cli: Callable[..., Outcome], write: Callable[..., Path], tmp_path: Path, attack: str, from_output: bool, payload: str) -> None:
    """``runbook run`` with a hostile value stops at validation (exit 2); no payload runs."""
    write("rb.yaml", _runbook(ATTACKS[attack], from_output=from_output))
    outcome = cli("run", "rb.yaml", "--var", f"v={payload}")
    assert not (tmp_path / "PWNED").exists(), "the payload ran"
    outcome.assert_clean()
    assert outcome.exit_code == 2, outcome.stdout + outcome.stderr


@pytest.mark.parametrize("command", ["plan", "run"])
def test_refusal_is_located_for_plan_and_run(cli: Callable[..., Outcome], write: Callable[..., Path], command: str) -> None:
    """``plan`` and ``run`` report the same located diagnostic as ``validate``."""
    write("rb.yaml", _runbook(ATTACKS["arithmetic-shift"]))
    outcome = cli(command, "rb.yaml")
    outcome.assert_clean()
    assert outcome.exit_code == 2
    assert any(d["path"] == "steps[0].run" and d["line"] == "8" for d in outcome.diagnostics), outcome.stderr


# ---------------------------------------------------------------- the argv form

ARGV_RUNBOOK = """
name: argv
vars:
  v: {default: x}
steps:
  - id: a
    kind: command
    run: [sh, -c, 'printf "%s|" "$@" > out', sh, "{{ vars.v }}", "<{{ vars.v }}>"]
    irreversible: true
    gates:
      - check: command
        run: [test, "{{ vars.v }}", "=", "{{ vars.v }}"]
"""


@pytest.mark.parametrize("payload", [*PAYLOADS, "a\\nb", "", "*", "~"])
def test_argv_form_passes_each_element_as_one_argument(cli: Callable[..., Outcome], write: Callable[..., Path], tmp_path: Path, payload: str) -> None:
    """``run: [prog, ...]`` (step and ``check: command``) runs with no shell: each element is
    exactly one argument, whatever it holds."""
    write("rb.yaml", ARGV_RUNBOOK)
    outcome = cli("run", "rb.yaml", "--var", f"v={payload}")
    outcome.assert_clean()
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    assert (tmp_path / "out").read_text() == f"{payload}|<{payload}>|"
    assert not (tmp_path / "PWNED").exists()


def test_plan_marks_the_argv_form(cli: Callable[..., Outcome], write: Callable[..., Path]) -> None:
    """The plan shows an argv list as the words it is, marked as run with no shell."""
    write("rb.yaml", ARGV_RUNBOOK)
    outcome = cli("plan", "rb.yaml", "--var", "v=a b")
    assert outcome.exit_code == 0, outcome.stderr
    assert "run: sh -c 'printf \"%s|\" \"$@\" > out' sh 'a b' '<a b>'  (argv, no shell)" in outcome.stdout
    assert "gate: command: test 'a b' = 'a b'  (argv, no shell)" in outcome.stdout


def test_schema_accepts_the_argv_form(cli: Callable[..., Outcome]) -> None:
    """``runbook schema`` allows a list of strings for the ``run`` of a command step and check."""
    import json

    schema = json.loads(cli("schema").stdout)
    for model, key in (("Step", "kind"), ("Check", "check")):
        variant = next(v for v in schema["$defs"][model]["allOf"] if v["if"]["properties"][key]["const"] == "command")
        assert {"items": {"type": "string"}, "type": "array"} in variant["then"]["properties"]["run"]["anyOf"]


# ---------------------------------------------------------------- uses: parameters

DEFINITION = """
params:
  text: {type: string}
  flags: {type: string, default: ""}
step:
  kind: command
  run: printf '%s|' {{ params.flags | unquoted }} {{ params.text }} "{{ params.text }}" > out
  irreversible: true
"""


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("through", ["with", "var"])
def test_uses_parameters_are_quoted_in_shell_strings(cli: Callable[..., Outcome], write: Callable[..., Path], tmp_path: Path, payload: str, through: str) -> None:
    """A ``with:`` value in a definition's shell ``run`` is one literal word, whether written in the
    runbook or passed as ``{{ vars.v }}``; ``| unquoted`` splices shell words on purpose."""
    write("steps/say.yaml", DEFINITION)
    text = payload if through == "with" else "{{ vars.v }}"
    doc = {"name": "u", "vars": {"v": {"default": "x"}}, "steps": [{"id": "a", "uses": "say", "with": {"text": text, "flags": "a b"}}]}
    write("rb.yaml", yaml.safe_dump(doc))
    outcome = cli("run", "rb.yaml", "--var", f"v={payload}")
    assert not (tmp_path / "PWNED").exists(), "the payload ran"
    outcome.assert_clean()
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    assert (tmp_path / "out").read_text() == f"a|b|{payload}|{payload}|"


def test_uses_parameter_in_an_uncertain_place_is_refused_in_the_definition(cli: Callable[..., Outcome], write: Callable[..., Path], tmp_path: Path) -> None:
    """A parameter where quoting is not certain is a validation error located in the definition file."""
    write("steps/bad.yaml", "params:\n  text: {type: string}\nstep:\n  kind: command\n  run: echo $(( 1 << 2 )) {{ params.text }}\n  irreversible: true\n")
    write("rb.yaml", yaml.safe_dump({"name": "u", "steps": [{"id": "a", "uses": "bad", "with": {"text": "$(touch PWNED)"}}]}))
    outcome = cli("run", "rb.yaml")
    outcome.assert_clean()
    assert outcome.exit_code == 2
    assert any(d["file"].endswith("bad.yaml") and d["path"] == "step.run" and "env:" in d["message"] for d in outcome.diagnostics), outcome.stderr
    assert not (tmp_path / "PWNED").exists()
