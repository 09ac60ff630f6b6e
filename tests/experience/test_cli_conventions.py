"""Conventions users bring from terraform and Ansible: saved plans, --lock-timeout, var files,
--skip, plain output under CI, and failures at level error in the JSON log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.experience.conftest import Scratch, Terminal

RUNBOOK = """\
name: conv
vars:
  greeting: {default: hello}
  count: {default: 1}
  token: {default: "", secret: true}
steps:
  - id: backup
    kind: command
    run: echo "backup {{ vars.greeting }}"
    irreversible: true
  - id: migrate
    kind: command
    run: echo "migrate {{ vars.count }}"
    needs: [backup]
    irreversible: true
  - id: verify
    kind: command
    run: echo verify
    needs: [migrate]
    irreversible: true
  - id: announce
    kind: command
    run: echo "announce {{ vars.greeting }}"
    irreversible: true
"""


# ---------------------------------------------------------------- plan -o / run --plan


def test_saved_plan_runs_when_nothing_changed(scratch: Scratch) -> None:
    scratch.write("conv.yaml", RUNBOOK)
    planned = scratch.runbook("plan", "conv.yaml", "--var", "greeting=hi", "--var", "token=s3cr3t-value", "-o", "plan.json")
    assert planned.returncode == 0, planned.stderr
    assert "runbook run --plan plan.json" in planned.stdout
    saved = (scratch.root / "plan.json").read_text()
    assert "s3cr3t-value" not in saved  # a secret is kept only as a salted hash
    assert json.loads(saved)["plan"]["steps"][0]["id"] == "backup"
    # The plan's --var values are replayed; the secret must be given again.
    missing = scratch.runbook("run", "--plan", "plan.json")
    assert missing.returncode == 2 and "secret values are never stored" in missing.stderr
    ran = scratch.runbook("run", "--plan", "plan.json", "--var", "token=s3cr3t-value")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "backup hi" in ran.stdout


def test_saved_plan_refused_when_the_runbook_changed(scratch: Scratch) -> None:
    path = scratch.write("conv.yaml", RUNBOOK)
    assert scratch.runbook("plan", "conv.yaml", "-o", "plan.json").returncode == 0
    path.write_text(path.read_text().replace('echo "migrate', 'echo "MIGRATE'))
    result = scratch.runbook("run", "--plan", "plan.json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the runbook or its values changed since plan.json was saved: step migrate changed" in result.stderr
    assert "runbook plan" in result.stderr and "-o plan.json" in result.stderr
    assert "migrate" not in result.stdout.replace("conv", "")  # nothing ran


def test_saved_plan_refused_when_a_var_or_the_environment_differs(scratch: Scratch) -> None:
    scratch.write("conv.yaml", RUNBOOK)
    assert scratch.runbook("plan", "conv.yaml", "--var", "count=2", "-o", "plan.json").returncode == 0
    result = scratch.runbook("run", "--plan", "plan.json", "--var", "count=3")
    assert result.returncode == 3
    assert "step migrate changed" in result.stderr and "var count differs" in result.stderr
    other_env = scratch.runbook("run", "--plan", "plan.json", "--env", "production")
    assert other_env.returncode == 3 and "planned for environment 'default', not 'production'" in other_env.stderr
    garbage = scratch.root / "garbage.json"
    garbage.write_text("{}")
    assert scratch.runbook("run", "--plan", "garbage.json").returncode == 2


def test_saved_plan_whose_shown_part_was_spliced_is_refused(scratch: Scratch) -> None:
    """The fingerprints of one plan copied into another: the part a reviewer read (echo benign)
    is not what the run would do (echo rm-rf-prod), so it is refused and nothing runs."""
    scratch.write("conv.yaml", RUNBOOK)
    assert scratch.runbook("plan", "conv.yaml", "--var", "greeting=benign", "-o", "a.json").returncode == 0
    assert scratch.runbook("plan", "conv.yaml", "--var", "greeting=rm-rf-prod", "-o", "b.json").returncode == 0
    reviewed, other = (json.loads((scratch.root / n).read_text()) for n in ("a.json", "b.json"))
    spliced = {**other, "plan": reviewed["plan"]}
    (scratch.root / "spliced.json").write_text(json.dumps(spliced))
    result = scratch.runbook("run", "--plan", "spliced.json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the plan shown in the file is not what this run would do" in result.stderr
    assert "rm-rf-prod" not in result.stdout


# ---------------------------------------------------------------- var files


def test_var_files_and_extra_vars_in_precedence(scratch: Scratch) -> None:
    scratch.write("conv.yaml", RUNBOOK)
    (scratch.root / "base.yaml").write_text("greeting: from-yaml\ncount: 5\n")
    (scratch.root / "over.json").write_text('{"count": 7}')
    result = scratch.runbook("run", "conv.yaml", "--var-file", "base.yaml", "-e", "@over.json", "--plain")
    assert result.returncode == 0, result.stderr
    assert "backup from-yaml" in result.stdout and "migrate 7" in result.stdout
    result = scratch.runbook("run", "conv.yaml", "--var-file", "base.yaml", "-e", "count=8", "--var", "greeting=cli")
    assert result.returncode == 0, result.stderr
    assert "backup cli" in result.stdout and "migrate 8" in result.stdout


def test_bad_var_files_are_usage_errors(scratch: Scratch) -> None:
    scratch.write("conv.yaml", RUNBOOK)
    (scratch.root / "list.yaml").write_text("- a\n- b\n")
    (scratch.root / "unknown.yaml").write_text("nosuch: 1\n")
    # The wrong file (a symlink to a shadow-like file): refused without printing its lines.
    (scratch.root / "shadow").write_text("root:$y$j9T$secrethash: x\n")
    (scratch.root / "vars.yaml").symlink_to(scratch.root / "shadow")
    for args, message in (
        (["--var-file", "missing.yaml"], "--var-file missing.yaml: no such file"),
        (["-e", "@list.yaml"], "expected a mapping of var names to values"),
        (["--var-file", "unknown.yaml"], "declares no var 'nosuch'"),
        (["--var-file", "vars.yaml"], "1 key(s) are not var names"),
    ):
        result = scratch.runbook("plan", "conv.yaml", *args)
        assert result.returncode == 2, args
        assert message in result.stderr, result.stderr
        assert "secrethash" not in result.stdout + result.stderr


# ---------------------------------------------------------------- --skip


def test_skip_leaves_a_step_out(scratch: Scratch) -> None:
    scratch.write("conv.yaml", RUNBOOK)
    result = scratch.runbook("run", "conv.yaml", "--skip", "announce")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify" in result.stdout and "announce hello" not in result.stdout
    assert "skipped in this run (--skip): announce" in result.stdout


def test_skip_refused_while_a_later_step_needs_it_unless_that_is_skipped_too(scratch: Scratch) -> None:
    scratch.write("conv.yaml", RUNBOOK)
    refused = scratch.runbook("run", "conv.yaml", "--skip", "backup")
    assert refused.returncode == 3
    assert "--skip: migrate needs backup" in refused.stderr and "--skip migrate" in refused.stderr
    assert "backup hello" not in refused.stdout
    chained = scratch.runbook("run", "conv.yaml", "--skip", "backup", "--skip", "migrate")
    assert chained.returncode == 3 and "verify needs migrate" in chained.stderr
    ok = scratch.runbook("run", "conv.yaml", "--skip", "backup", "--skip", "migrate", "--skip", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "announce hello" in ok.stdout
    unknown = scratch.runbook("run", "conv.yaml", "--skip", "bakup")
    assert unknown.returncode == 2 and "did you mean 'backup'" in unknown.stderr


# ---------------------------------------------------------------- --lock-timeout


WAITS = """\
name: waits
steps:
  - id: hold
    kind: command
    run: "while [ ! -f go ]; do sleep 0.1; done; echo released"
    irreversible: true
"""


def test_lock_timeout_waits_for_the_holder(scratch: Scratch) -> None:
    scratch.write("waits.yaml", WAITS)
    first = subprocess.Popen([sys.executable, "-m", "runbook", "run", "waits.yaml"], cwd=scratch.root, env=scratch.env(), stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        while "→ [hold]" not in first.stdout.readline():
            pass
        refused = scratch.runbook("run", "waits.yaml")
        assert refused.returncode == 3 and "lock" in refused.stderr
        waiting = subprocess.Popen(
            [sys.executable, "-m", "runbook", "run", "waits.yaml", "--lock-timeout", "2m"], cwd=scratch.root, env=scratch.env(), stdout=subprocess.PIPE, text=True
        )
        assert waiting.stdout is not None
        line = waiting.stdout.readline()
        assert "waiting up to 120s for it (--lock-timeout)" in line, line
        (scratch.root / "go").touch()
        assert first.wait(60) == 0
        rest = waiting.stdout.read()
        assert waiting.wait(60) == 0, rest
        assert "released" in rest
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()


@pytest.mark.slow
def test_lock_timeout_gives_up_with_the_holder_named(scratch: Scratch) -> None:
    scratch.write("waits.yaml", WAITS)
    first = subprocess.Popen([sys.executable, "-m", "runbook", "run", "waits.yaml"], cwd=scratch.root, env=scratch.env(), stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        while "→ [hold]" not in first.stdout.readline():
            pass
        result = scratch.runbook("run", "waits.yaml", "--lock-timeout", "1s")
        assert result.returncode == 3
        assert "(waited 1s for it: --lock-timeout)" in result.stderr
        bad = scratch.runbook("run", "waits.yaml", "--lock-timeout", "soon")
        assert bad.returncode == 2 and "--lock-timeout soon" in bad.stderr
    finally:
        (scratch.root / "go").touch()
        first.wait(60)


# ---------------------------------------------------------------- plain output


ONE = "name: one\nsteps:\n  - id: only\n    kind: command\n    run: echo hello\n"
_LIVE = "\x1b[?25l"  # rich hides the cursor while it redraws the table


def test_ci_true_on_a_pty_gets_plain_lines(scratch: Scratch, terminal: Callable[..., Terminal]) -> None:
    scratch.write("one.yaml", ONE)
    term = terminal("run", "one.yaml", env={"CI": "true"})
    assert term.finish() == 0
    assert "→ [only]" in term.text and _LIVE not in term.text


def test_plain_flag_on_a_pty_gets_plain_lines_and_the_default_is_live(scratch: Scratch, terminal: Callable[..., Terminal]) -> None:
    scratch.write("one.yaml", ONE)
    term = terminal("run", "one.yaml", "--plain")
    assert term.finish() == 0
    assert "→ [only]" in term.text and _LIVE not in term.text
    live = terminal("run", "one.yaml", env={"CI": "false"})
    assert live.finish() == 0
    assert _LIVE in live.text


# ---------------------------------------------------------------- JSON log levels


def test_failed_step_logged_at_level_error(scratch: Scratch) -> None:
    scratch.write("fails.yaml", "name: fails\nsteps:\n  - id: boom\n    kind: command\n    run: exit 3\n    irreversible: true\n")
    result = scratch.runbook("run", "fails.yaml", "--log-format", "json")
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    finished = next(e for e in events if e["event"] == "step_finished")
    assert finished["status"] == "failed" and finished["level"] == "error"
    assert next(e for e in events if e["event"] == "run_finished")["level"] == "error"
    assert next(e for e in events if e["event"] == "run_started")["level"] == "info"


def test_saved_plan_runs_in_another_checkout(scratch: Scratch) -> None:
    """CI plans in one job and runs in the next, in another directory: the plan names the runbook as found from there."""
    import shutil

    scratch.write("conv.yaml", RUNBOOK)
    assert scratch.runbook("plan", "conv.yaml", "-o", "plan.json").returncode == 0
    other = Scratch(scratch.root.parent / "other-checkout")
    shutil.copytree(scratch.root / "runbooks", other.root / "runbooks")
    shutil.copy(scratch.root / "plan.json", other.root / "plan.json")
    result = other.runbook("run", "--plan", "plan.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_who_ran_it_is_the_os_user_not_the_environment(scratch: Scratch) -> None:
    """History and events name the OS user (real uid): USER and LOGNAME are anyone's to set."""
    import pwd

    scratch.write("conv.yaml", RUNBOOK)
    result = scratch.runbook("run", "conv.yaml", "--plain", env={"USER": "mallory", "LOGNAME": "mallory"})
    assert result.returncode == 0, result.stdout + result.stderr
    runs = json.loads(scratch.runbook("history", "--format", "json").stdout)["runs"]
    me = pwd.getpwuid(os.getuid()).pw_name
    assert runs[0]["actor"].split("@")[0] == me
    shown = scratch.runbook("show", runs[0]["id"], "--events")
    assert "mallory" not in shown.stdout
