"""A plan saved for later (``runbook plan -o plan.json``), and the run that must match it
(``runbook run --plan plan.json``), as with terraform's saved plans.

The file is the JSON plan a reviewer reads, plus what makes it checkable:

- the runbook's fingerprint (its whole definition as written) and each step's
  fingerprint (``fingerprint.py``: its definition, the values it reads, the
  databases it uses);
- the environment and the var values, recorded as a run records them
  (``engine/values.py``): plain values as they are, a secret only as a salted
  hash, so the file holds nothing a reviewer may not read.

``run --plan`` replays the environment and the ``--var`` values of the plan,
plans again and refuses (exit 3) when anything differs, saying what: a step
whose fingerprint changed, a step added or removed, a var with another value.
It then runs that plan, exactly as ``run`` with the same arguments would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.errors import Refused, UsageError
from runbook.planner import Plan

FORMAT = "runbook-saved-plan/1"
# A plan of the largest runbook is far below this; anything bigger is not one of ours.
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SavedPlan:
    path: Path
    runbook: str
    runbook_path: str
    env: str
    runbook_fingerprint: str
    steps: dict[str, str]
    values: dict[str, Any]
    plan: Any = None  # the plan as shown (``plan --format json``): what a reviewer read

    def env_option(self) -> str | None:
        from runbook.planner import DEFAULT_ENV

        return None if self.env == DEFAULT_ENV else self.env


def document(built: Plan, plan_json: str, given: dict[str, str]) -> str:
    """The saved plan's text: the JSON plan under ``plan``, and what ``run --plan`` checks."""
    from runbook.engine import values
    from runbook.engine.naming import runbook_argument, runbook_fingerprint

    saved = {
        "format": FORMAT,
        "runbook": built.runbook.name,
        # As a command line names it here (a bare name found in ./runbooks/, else a relative
        # path), so that a plan saved in one checkout runs in another (CI's next job).
        "path": runbook_argument(built.loaded.path),
        "env": built.env,
        "runbook_fingerprint": runbook_fingerprint(built.runbook),
        "steps": {step.id: step.fingerprint for step in built.steps},
        "values": values.record(built.resolved, given),
        "plan": json.loads(plan_json),
    }
    return json.dumps(saved, indent=2, default=str) + "\n"


def load(path: Path) -> SavedPlan:
    """The saved plan at ``path``; a UsageError (exit 2) for anything that is not one."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"--plan {path}: cannot read it: {err.strerror or err}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"--plan {path}: larger than {MAX_BYTES:,} bytes; not a saved plan")
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"--plan {path}: not a plan saved by `runbook plan -o FILE`")
    try:
        return SavedPlan(
            path,
            str(data["runbook"]),
            str(data["path"]),
            str(data["env"]),
            str(data["runbook_fingerprint"]),
            dict(data["steps"]),
            dict(data["values"]),
            data["plan"],
        )
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"--plan {path}: incomplete; save it again with `runbook plan -o {path}`") from None


def replayed_overrides(saved: SavedPlan, given: dict[str, str]) -> dict[str, str]:
    """The --var values of the plan, then the ones given now (a secret must be given again)."""
    from runbook.engine import values

    return values.replay(saved.values, given)


def check_env(saved: SavedPlan, env: str | None) -> str | None:
    """The environment to run in: the plan's; another one given with --env is refused."""
    if env is not None and env != saved.env:
        raise Refused(f"{saved.path} was planned for environment {saved.env!r}, not {env!r}", hint=f"plan it again: runbook plan --env {env} -o {saved.path}")
    return saved.env_option()


def verify(saved: SavedPlan, built: Plan, given: dict[str, str]) -> None:
    """Refuse (exit 3) when the runbook or its values changed since the plan was saved."""
    from runbook.engine import values
    from runbook.engine.naming import runbook_fingerprint
    from runbook.render.plan import render_json

    if built.runbook.name != saved.runbook:
        raise Refused(f"{saved.path} is a plan of runbook {saved.runbook!r}, not {built.runbook.name!r}")
    changed: list[str] = []
    now = {step.id: step.fingerprint for step in built.steps}
    changed += [f"step {sid} changed" for sid, fp in now.items() if sid in saved.steps and saved.steps[sid] != fp]
    changed += [f"step {sid} is new" for sid in now if sid not in saved.steps]
    changed += [f"step {sid} was removed" for sid in saved.steps if sid not in now]
    changed += [f"var {name} differs" for name in values.changes(saved.values, built.resolved, given, f"planned in {saved.path}")]
    if not changed and runbook_fingerprint(built.runbook) != saved.runbook_fingerprint:
        changed.append("the runbook's definition changed (outside its steps: vars, notifications, rollback options or criteria)")
    if not changed and json.loads(render_json(built)) != saved.plan:
        # The fingerprints may be copied from another saved plan; the part a reviewer reads must
        # be what this run does, or the review approved something else.
        changed.append("the plan shown in the file is not what this run would do (was it edited?)")
    if changed:
        raise Refused(
            built.resolved.masker.mask(f"the runbook or its values changed since {saved.path} was saved: {'; '.join(changed)}"),
            hint=f"review the new plan and save it again: runbook plan {saved.runbook_path} -o {saved.path}",
        )


def for_run(plan_file: Path | None, name: str | None, env: str | None, given: dict[str, str], *, resuming: bool) -> tuple[str, str | None, dict[str, str], SavedPlan | None]:
    """What ``run`` starts from: (runbook name, env, --var values, the saved plan or None).
    With ``--plan``, the runbook, environment and values of the plan, unless given again."""
    if plan_file is None:
        if name is None:
            raise UsageError("run needs a RUNBOOK (or --plan FILE saved by `runbook plan -o FILE`)")
        return name, env, given, None
    if resuming:
        raise UsageError("--plan starts a new run; --resume continues one with the values it started with", hint="drop one of them")
    saved = load(plan_file)
    return name or saved.runbook_path, check_env(saved, env), replayed_overrides(saved, given), saved
