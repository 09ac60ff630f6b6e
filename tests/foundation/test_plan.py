"""``runbook plan``: golden plans in text, JSON and Markdown, var and environment
resolution, finding runbooks by bare name, and that planning touches no state.

Regenerate the goldens after an intended change of output with
``RUNBOOK_UPDATE_GOLDEN=1 pytest tests/foundation/test_plan.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from runbook import commands

DATA = Path(__file__).resolve().parent.parent / "data"
FIXTURE = DATA / "deploy-billing.yaml"
GOLDEN = DATA / "golden"
SECRET = "s3cr3t-Passw0rd"
UPDATE = os.environ.get("RUNBOOK_UPDATE_GOLDEN") == "1"


def plan_ok(cli, *args: str, env: dict[str, str] | None = None):
    out = cli("plan", *args, env=env)
    out.assert_clean()
    assert out.exit_code == 0, out.stderr
    return out


def plan_json(cli, *args: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(plan_ok(cli, str(FIXTURE), "--format", "json", *args, env=env).stdout)


def plan_fails(cli, *args: str) -> str:
    out = cli("plan", *args)
    out.assert_clean()
    assert out.exit_code == 2, (out.stdout, out.stderr)
    assert out.stdout == ""
    return out.stderr


# ---------------------------------------------------------------- goldens


@pytest.mark.parametrize(("fmt", "golden"), [("text", "deploy-billing.txt"), ("json", "deploy-billing.json"), ("markdown", "deploy-billing.md")])
def test_golden_plan(cli, fmt, golden):
    """The fixture's plan in each format matches its reviewed golden file byte for byte."""
    out = plan_ok(cli, str(FIXTURE), "--format", fmt)
    path = GOLDEN / golden
    if UPDATE:
        path.write_text(out.stdout, encoding="utf-8")
    assert out.stdout == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_plan_masks_secret_var(cli, fmt):
    """A secret var's value (here its default) never appears in a plan; *** does."""
    out = plan_ok(cli, str(FIXTURE), "--format", fmt)
    assert SECRET not in out.stdout + out.stderr
    assert "PGPASSWORD=*** ./migrate.sh up --target 2.4.1" in out.stdout


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_plan_shows_step_outputs_symbolically(cli, fmt):
    """A later step's reference to an earlier step's output shows as <steps.x.outputs.y>."""
    out = plan_ok(cli, str(FIXTURE), "--format", fmt)
    assert "--restore-point <steps.backup.outputs.dump>" in out.stdout
    assert "{{" not in out.stdout


def test_plan_json_contract():
    """The JSON plan has the documented keys, and estimates sum to estimate_total_s."""
    echoed: list[str] = []
    assert commands.plan(str(FIXTURE), fmt="json", echo=echoed.append) == 0
    data = json.loads("".join(echoed))
    assert {"runbook", "env", "steps", "estimate_total_s"} <= set(data)
    assert (data["runbook"], data["env"]) == ("deploy-billing", "default")
    step_keys = {"id", "title", "kind", "needs", "preconditions", "gates", "confirm", "rollback", "estimate"}
    for step in data["steps"]:
        assert step_keys <= set(step), step_keys - set(step)
    assert [s["id"] for s in data["steps"]] == ["preflight", "backup", "migrate", "deploy", "smoke-test"]
    assert [s["estimate"] for s in data["steps"]] == [30, 600, 120, 180, 300]
    assert data["estimate_total_s"] == sum(s["estimate"] for s in data["steps"]) == 1230
    assert data["estimate_total_min_s"] == 30 + 300 + 120 + 180 + 300
    migrate = data["steps"][2]
    assert migrate["needs"] == ["backup"]
    assert migrate["confirm"] == "Migrate billing in default to 2.4.1?"
    assert migrate["rollback"] == {"kind": "command", "what": "./migrate.sh down --to-previous"}
    assert migrate["gates"][0]["name"] == "schema at target"
    assert data["steps"][0]["preconditions"][1]["on_fail"] == "warn"


def test_text_plan_sums_estimates(cli):
    """The text plan states the summed estimate range of all steps."""
    out = plan_ok(cli, str(FIXTURE))
    assert out.stdout.splitlines()[-4] == "Total estimate: 15m30s-20m30s over 5 steps"


# ---------------------------------------------------------------- vars and environments


def test_env_applies_overrides(cli):
    """``--env staging`` applies that environment's var overrides."""
    data = plan_json(cli, "--env", "staging")
    assert data["env"] == "staging"
    steps = {s["id"]: s for s in data["steps"]}
    assert steps["preflight"]["what"] == "./preflight.sh --region us-east-1"
    assert steps["backup"]["what"] == "pg_dump --host db.staging.internal --file backups/pre-2.4.1.dump billing"
    assert steps["migrate"]["confirm"] == "Migrate billing in staging to 2.4.1?"
    assert plan_json(cli, "--env", "production")["steps"][3]["title"] == "Deploy 6 replicas"


def test_var_overrides_last(cli):
    """``--var`` beats the OS environment variable, which beats the environment's override."""
    assert plan_json(cli, "--env", "staging")["steps"][0]["what"].endswith("--region us-east-1")
    from_os = plan_json(cli, "--env", "staging", env={"RB_FIXTURE_REGION": "os-region"})
    assert from_os["steps"][0]["what"].endswith("--region os-region")
    from_cli = plan_json(cli, "--env", "staging", "--var", "region=ap-south-1", env={"RB_FIXTURE_REGION": "os-region"})
    assert from_cli["steps"][0]["what"].endswith("--region ap-south-1")
    assert plan_json(cli, "--var", "replicas=9", "--env", "production")["steps"][3]["title"] == "Deploy 9 replicas"


def test_var_override_of_secret_is_masked(cli):
    """A secret given with ``--var`` is masked in the plan."""
    out = plan_ok(cli, str(FIXTURE), "--var", "db_password=fresh-pw-123")
    assert "fresh-pw-123" not in out.stdout
    assert "PGPASSWORD=***" in out.stdout


def test_unknown_var_name(cli):
    """An unknown ``--var`` name exits 2 and suggests the declared var."""
    err = plan_fails(cli, str(FIXTURE), "--var", "regoin=x")
    assert err.strip() == (
        "error: --var regoin: runbook 'deploy-billing' declares no var 'regoin'; did you mean 'region'?\n"
        "  hint: its vars: version, region, replicas, db_host, db_password"
    )


def test_malformed_var(cli):
    """A ``--var`` without ``=`` exits 2 naming the expected form."""
    err = plan_fails(cli, str(FIXTURE), "--var", "region")
    assert "--var 'region' is not of the form NAME=VALUE" in err


def test_unknown_env(cli):
    """An unknown ``--env`` exits 2, listing the environments and suggesting one."""
    err = plan_fails(cli, str(FIXTURE), "--env", "stagign")
    assert err.strip() == (
        "error: runbook 'deploy-billing' has no environment 'stagign' (it has: staging, production); did you mean 'staging'?"
    )


def test_required_var_missing_names_env_var(cli, write):
    """A required var with no value exits 2 and names the OS variable to set."""
    path = write(
        "needs-token.yaml",
        """
        name: needs-token
        vars:
          token:
            env: DEPLOY_TOKEN
            required: true
            secret: true
            description: API token for the deploy API
        steps:
          - id: a
            kind: manual
            instruction: "use {{ vars.token }}"
        """,
    )
    err = plan_fails(cli, str(path))
    assert "var 'token' is required: API token for the deploy API" in err
    assert "set DEPLOY_TOKEN in the environment or pass --var token=VALUE" in err
    out = plan_ok(cli, str(path), env={"DEPLOY_TOKEN": "tok-abcdef"})
    assert "use ***" in out.stdout and "tok-abcdef" not in out.stdout


# ---------------------------------------------------------------- finding runbooks


def test_bare_name_found_in_runbooks_dir(cli, tmp_path):
    """A bare name is looked up as ./runbooks/NAME.yaml."""
    (tmp_path / "runbooks").mkdir()
    shutil.copy(FIXTURE, tmp_path / "runbooks" / "x.yaml")
    out = plan_ok(cli, "x")
    assert out.stdout.startswith("Plan: deploy-billing (env: default)")


def test_bare_name_found_via_runbook_path(cli, tmp_path):
    """A bare name is looked up in each directory of RUNBOOK_PATH (.yml too)."""
    first, second = tmp_path / "empty", tmp_path / "shared"
    first.mkdir()
    second.mkdir()
    shutil.copy(FIXTURE, second / "billing.yml")
    out = plan_ok(cli, "billing", env={"RUNBOOK_PATH": os.pathsep.join([str(first), str(second)])})
    assert out.stdout.startswith("Plan: deploy-billing (env: default)")


def test_runbook_not_found(cli):
    """A name found nowhere exits 2 saying where it looked."""
    err = plan_fails(cli, "nosuch")
    assert "runbook 'nosuch' not found" in err
    assert "RUNBOOK_PATH" in err


def test_runbook_not_found_lists_each_place_once(cli, tmp_path):
    """The 'not found' message names each searched directory once."""
    err = plan_fails(cli, "nosuch")
    assert err.count(str(tmp_path / "runbooks")) == 1, err


# ---------------------------------------------------------------- no state


def test_plan_touches_no_state(cli_subprocess, tmp_path):
    """Planning (as a real process) creates no .runbook/ directory or any other file."""
    work = tmp_path / "work"
    work.mkdir()
    runbook = work / "deploy.yaml"
    shutil.copy(FIXTURE, runbook)
    for fmt in ("text", "json", "markdown"):
        out = cli_subprocess("plan", "deploy.yaml", "--format", fmt, "--env", "staging", cwd=work)
        out.assert_clean()
        assert out.exit_code == 0, out.stderr
    assert not (work / ".runbook").exists()
    assert sorted(p.name for p in work.iterdir()) == ["deploy.yaml"]
    assert not (DATA / ".runbook").exists()


# ---------------------------------------------------------------- schema


def test_schema_command_prints_json_schema(cli):
    """``runbook schema`` prints a JSON Schema whose properties include steps."""
    out = cli("schema")
    out.assert_clean()
    assert out.exit_code == 0, out.stderr
    schema = json.loads(out.stdout)
    assert "steps" in schema["properties"]
    assert "name" in schema["properties"]


def test_var_value_with_template_syntax_is_data(cli):
    """A --var value is never rendered as a template, however it looks: it plans as given."""
    plan_ok(cli, str(FIXTURE), "--var", "region=" + "{{" * 300)


def test_markdown_plan_has_single_blank_lines(cli):
    """Steps without checklist items get no doubled blank line after "Requires:"."""
    out = plan_ok(cli, str(FIXTURE), "--format", "markdown")
    assert "\n\n\n" not in out.stdout


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_plan_with_blank_description(cli, write, fmt):
    """A description of only whitespace plans like no description."""
    path = write("blank.yaml", "name: blank\ndescription: '  '\nsteps:\n  - id: a\n    kind: manual\n    instruction: hi\n")
    plan_ok(cli, str(path), "--format", fmt)


def test_recursive_template_fails_cleanly(cli, write):
    """A macro calling itself forever is a template error with exit 2, not a crash."""
    path = write(
        "loop.yaml",
        """
        name: loop
        steps:
          - id: a
            kind: manual
            instruction: "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
        """,
    )
    assert "nested or recursing too deeply" in plan_fails(cli, str(path))


WHEN = """\
name: when
environments: {production: {}}
steps:
  - {id: build, kind: command, run: "true", irreversible: true, estimate: 1m}
  - {id: prod_only, kind: command, run: "true", irreversible: true, estimate: 10m, when: "environment == 'production'"}
  - {id: after_build, kind: command, run: "true", irreversible: true, estimate: 5m, when: "steps.build.status == 'passed'"}
"""


def test_a_when_known_before_the_run_leaves_the_estimate(cli, tmp_path):
    """A ``when:`` on the environment is decided in the plan; one on a step's status is not
    (the run decides it), so that step still counts."""
    path = tmp_path / "when.yaml"
    path.write_text(WHEN)
    default = plan_ok(cli, str(path)).stdout
    assert "when: environment == 'production'  (false here: the run skips this step)" in default
    assert "when: steps.build.status == 'passed'\n" in default
    assert "Total estimate: 6m over 2 steps (1 skipped here by when:)" in default
    production = plan_ok(cli, str(path), "--env", "production").stdout
    assert "false here" not in production and "Total estimate: 16m over 3 steps" in production
    steps = json.loads(plan_ok(cli, str(path), "--format", "json").stdout)["steps"]
    assert [s["skipped_by_when"] for s in steps] == [False, True, False]
