"""docs/ci.md, executed: the runbook and the GitHub Actions and GitLab CI jobs are taken from
the page and their shell commands run for real, job after job, each job in a working directory
of its own (a fresh checkout), all against one PostgreSQL store: the run pauses for approval
(exit 4, a green job), a second job approves, a third resumes, and the artifacts exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.docs.test_doc_examples import ROOT, _blocks

DOC = ROOT / "docs" / "ci.md"
BLOCKS = [b for b in _blocks(DOC) if b.lang == "yaml"]
RUNBOOK = next(b.text for b in BLOCKS if b.text.startswith("name: release\n"))
GITHUB = yaml.safe_load(next(b.text for b in BLOCKS if "\njobs:\n" in b.text))
GITLAB = yaml.safe_load(next(b.text for b in BLOCKS if b.text.startswith("stages:")))
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")

pytestmark = pytest.mark.slow


@dataclass
class Job:
    """What a job left: its exit code, the last script's output, its outputs or dotenv."""

    code: int
    output: str
    workdir: Path
    outputs: dict[str, str] = field(default_factory=dict)


def _checkout(root: Path, name: str, runbook: str = RUNBOOK) -> Path:
    """A fresh working directory holding the repository's runbook, as a job's checkout does."""
    workdir = root / name
    (workdir / "runbooks").mkdir(parents=True)
    (workdir / "runbooks" / "release.yaml").write_text(runbook)
    return workdir


def _environment(state_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "GITHUB_", "CI_", "GITLAB_"))}
    # `runbook` and `python3` as installed by the recipe's "Install runbook" step: this venv's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RUNBOOK_STATE_URL"] = state_url
    env.update(extra)
    return env


def _bash(script: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Both CI systems run a script with errexit (GitHub: bash -e -o pipefail; GitLab: set -eo pipefail).
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------- GitHub Actions


def _github_job(name: str, workdir: Path, state_url: str, context: dict[str, str]) -> Job:
    """Run the job's `run:` steps in order; `uses:` steps are GitHub's own (checkout, setup-python,
    upload-artifact) and stand for themselves, "Install runbook" is this venv already."""
    job = GITHUB["jobs"][name]
    github_output = workdir / ".github_output"
    step_outputs: dict[str, dict[str, str]] = {}
    last = subprocess.CompletedProcess[str]([], 0, "", "")
    for step in job["steps"]:
        if "uses" in step:
            if step["uses"].startswith("actions/upload-artifact"):
                _uploaded(step, workdir)
            continue
        if step.get("name") == "Install runbook":
            assert "pip install" in step["run"]
            continue
        github_output.write_text("")
        expand = _github_expressions(context, step_outputs)
        env = {**{k: expand(str(v)) for k, v in GITHUB.get("env", {}).items()}, **{k: expand(str(v)) for k, v in step.get("env", {}).items()}}
        env["GITHUB_OUTPUT"] = str(github_output)
        last = _bash(step["run"], workdir, _environment(state_url, env))
        if "id" in step:
            step_outputs[step["id"]] = dict(line.split("=", 1) for line in github_output.read_text().splitlines())
        if last.returncode != 0:
            return Job(last.returncode, last.stdout + last.stderr, workdir)
    expand = _github_expressions(context, step_outputs)
    outputs = {key: expand(str(value)) for key, value in job.get("outputs", {}).items()}
    return Job(0, last.stdout + last.stderr, workdir, outputs)


def _github_expressions(context: dict[str, str], step_outputs: dict[str, dict[str, str]]) -> Callable[[str], str]:
    """``${{ ... }}`` as GitHub expands it, for the names the recipe uses; any other is an error."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name.startswith("steps."):
            _, step_id, _, key = name.split(".")
            return step_outputs.get(step_id, {}).get(key, "")
        assert name in context, f"docs/ci.md uses ${{{{ {name} }}}}, which this test does not know"
        return context[name]

    return lambda text: EXPRESSION.sub(value, text)


def _github_condition(job: dict[str, Any], context: dict[str, str]) -> bool:
    condition = job.get("if")
    if condition is None:
        return True
    name, _, wanted = (part.strip() for part in condition.partition("=="))
    return context[name] == wanted.strip("'")


def _uploaded(step: dict[str, Any], workdir: Path) -> None:
    """Every path an upload-artifact step names exists: the report, the JSON log, the step logs."""
    assert step.get("if") == "always()", "artifacts are kept whatever the outcome"
    assert step["with"].get("include-hidden-files") is True, ".runbook/logs/ is a hidden path"
    for path in step["with"]["path"].split():
        assert (workdir / path).exists(), f"{path} was not made in the job"


def _github_context(state_url: str, run: Job | None = None) -> dict[str, str]:
    context = {"secrets.RUNBOOK_STATE_URL": state_url, "github.actor": "octocat"}
    if run is not None:
        context.update({f"needs.run.outputs.{k}": v for k, v in run.outputs.items()})
    return context


def _status(state_url: str, run_id: str, workdir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "runbook", "report", run_id, "--format", "json"],
        cwd=workdir, env=_environment(state_url, {}), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_github_recipe_pauses_approves_and_resumes(pg_url: str, tmp_path: Path) -> None:
    """run exits 0 with status=paused (runbook said 4), approve records the approval, resume
    finishes the run: three working directories, one PostgreSQL store."""
    state_url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    run = _github_job("run", _checkout(tmp_path, "run"), state_url, _github_context(state_url))
    assert run.code == 0, run.output
    assert run.outputs["status"] == "paused" and run.outputs["run_id"], run.outputs
    assert "::notice::run" in run.output
    context = _github_context(state_url, run)
    assert _github_condition(GITHUB["jobs"]["approve"], context)
    approved = _github_job("approve", _checkout(tmp_path, "approve"), state_url, context)
    assert approved.code == 0, approved.output
    assert f"approved deploy of run {run.outputs['run_id']} by octocat" in approved.output
    resumed = _github_job("resume", _checkout(tmp_path, "resume"), state_url, context)
    assert resumed.code == 0, resumed.output
    report = _status(state_url, run.outputs["run_id"], tmp_path / "resume")
    assert report["run"]["status"] == "passed"
    assert [(s["id"], s["status"]) for s in report["steps"]] == [("migrate", "passed"), ("deploy", "passed")]
    assert report["approvals"][0]["by"] == "octocat"


def test_github_recipe_fails_the_job_on_a_failed_step_and_keeps_the_report(pg_url: str, tmp_path: Path) -> None:
    """A failed step is a red job (exit 1), with the report and logs still written for the artifact."""
    state_url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    failing = RUNBOOK.replace('run: echo "migrating"', 'run: echo "migration failed" >&2; exit 1')
    assert failing != RUNBOOK
    run = _github_job("run", _checkout(tmp_path, "run", failing), state_url, _github_context(state_url))
    assert run.code == 1, run.output
    assert (run.workdir / "report.html").is_file() and list((run.workdir / ".runbook" / "logs").glob("*/migrate.1.log"))
    assert "Failed at step migrate" in (run.workdir / "report.html").read_text()


# ---------------------------------------------------------------- GitLab CI


def _gitlab_job(name: str, workdir: Path, state_url: str, variables: dict[str, str]) -> Job:
    """The job's before_script (less the install: this venv is it) and script, in one shell as the
    runner does; its dotenv report becomes the variables of the jobs that need it."""
    job = GITLAB[name]
    before = [line for line in GITLAB["default"]["before_script"] if "pip install" not in line]
    env = {**{k: str(v) for k, v in GITLAB.get("variables", {}).items()}, **variables}
    result = _bash("\n".join([*before, *job["script"]]), workdir, _environment(state_url, env))
    artifacts = job.get("artifacts", {})
    if artifacts:
        assert artifacts.get("when") == "always", "artifacts are kept whatever the outcome"
        for path in artifacts["paths"]:
            assert (workdir / path).exists(), f"{path} was not made in the job"
    dotenv = artifacts.get("reports", {}).get("dotenv")
    outputs = dict(line.split("=", 1) for line in (workdir / dotenv).read_text().splitlines()) if dotenv else {}
    return Job(result.returncode, result.stdout + result.stderr, workdir, outputs)


def test_gitlab_recipe_pauses_approves_and_resumes(pg_url: str, tmp_path: Path) -> None:
    """The three stages in order, the manual approve job started by a person (GITLAB_USER_LOGIN)."""
    state_url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    assert GITLAB["stages"] == ["run", "approve", "resume"]
    assert GITLAB["approve"]["when"] == "manual" and GITLAB["approve"]["allow_failure"] is False
    run = _gitlab_job("run", _checkout(tmp_path, "run"), state_url, {})
    assert run.code == 0, run.output
    assert run.outputs["RUN_STATUS"] == "paused" and run.outputs["RUN_ID"], run.outputs
    later = {**run.outputs, "GITLAB_USER_LOGIN": "maria"}
    approved = _gitlab_job("approve", _checkout(tmp_path, "approve"), state_url, later)
    assert approved.code == 0, approved.output
    resumed = _gitlab_job("resume", _checkout(tmp_path, "resume"), state_url, later)
    assert resumed.code == 0, resumed.output
    report = _status(state_url, run.outputs["RUN_ID"], tmp_path / "resume")
    assert report["run"]["status"] == "passed" and report["approvals"][0]["by"] == "maria"


def test_doc_blocks_found() -> None:
    """The extraction sees the runbook and both pipelines (a moved block must not make the tests vacuous)."""
    assert set(GITHUB["jobs"]) == {"run", "approve", "resume"}
    assert {"run", "approve", "resume"} <= set(GITLAB)
    assert shutil.which("bash")
