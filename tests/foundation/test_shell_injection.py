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
