"""One plain function per CLI verb; ``cli.py`` only parses arguments and calls these.

Each function takes plain values, writes its output through ``echo`` and
returns an exit code, so tests call them directly without a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from runbook.errors import ExitCode
from runbook.stdstreams import is_terminal

Echo = Callable[[str], None]


def _echo(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _load(name: str, *, strict: bool = False):  # type: ignore[no-untyped-def]
    from runbook.loader import find_runbook, load_runbook

    return load_runbook(find_runbook(name), strict=strict)


def validate(name: str, *, strict: bool = False, echo: Echo = _echo, warn: Echo | None = None) -> int:
    loaded = _load(name, strict=strict)
    for warning in loaded.warnings:
        (warn or echo)(str(warning))
    steps = len(loaded.runbook.steps)
    echo(f"{loaded.path}: valid ({steps} steps, {len(loaded.warnings)} warning(s))")
    return ExitCode.OK


def plan(name: str, *, env: str | None = None, var_items: Sequence[str] = (), fmt: str = "text", echo: Echo = _echo) -> int:
    from runbook.planner import build_plan, parse_var_overrides
    from runbook.render.plan import RENDERERS

    built = build_plan(_load(name), env, parse_var_overrides(list(var_items)))
    echo(RENDERERS[fmt](built))
    return ExitCode.OK


def schema(*, echo: Echo = _echo) -> int:
    from runbook.schema import runbook_json_schema

    echo(json.dumps(runbook_json_schema(), indent=2))
    return ExitCode.OK


def list_steps(*, directory: Path | None = None, echo: Echo = _echo) -> int:
    """The reusable step definitions in steps/ and their parameters."""
    from runbook.errors import InvalidRunbook, UsageError
    from runbook.yamlsource import load_yaml, read_file

    directory = directory or Path(os.environ.get("RUNBOOK_STEPS_DIR") or Path.cwd() / "steps")
    if not directory.is_dir():
        raise UsageError(f"no step definitions directory {directory}")
    for path in sorted(directory.glob("*.y*ml")):
        try:
            definition = load_yaml(read_file(path), str(path)).data
        except InvalidRunbook as err:
            echo(f"{path.stem}: (invalid) {err.diagnostics[0]}")
            continue
        step = definition.get("step") if isinstance(definition, dict) else None
        if not isinstance(step, dict) or not isinstance(definition.get("params") or {}, dict):
            echo(f"{path.stem}: (invalid) run `runbook validate` on a runbook that uses it for details")
            continue
        kind = step.get("kind", "?")
        echo(f"{path.stem} [{kind}]: {definition.get('description', '')}")
        for name, spec in (definition.get("params") or {}).items():
            spec = spec if isinstance(spec, dict) else {}
            default = f" = {spec['default']!r}" if "default" in spec else " (required)"
            echo(f"    {name}: {spec.get('type', 'string')}{default}  {spec.get('description', '')}".rstrip())
    return ExitCode.OK


INIT_TEMPLATE = """\
# {name}: a runbook. Plan it with `runbook plan {name}`, check it with
# `runbook validate runbooks/{name}.yaml --strict`, run it with `runbook run {name}`.
# Reference: docs/runbook-format.md (or `runbook schema` for your editor).
name: {name}
description: What this change does and why it must follow this order.

metadata:
  owner: your-team
  risk: medium            # what happens if it is done wrong
  estimate: 10m
  escalation:
    - {{role: On-call engineer, contact: "#ops"}}

vars:
  db_url:
    env: DATABASE_URL     # read from this environment variable
    secret: true          # masked as *** in every output, log and record
    required: true
    description: SQLAlchemy URL of the database

environments:
  staging: {{}}
  production:
    protected: true

connections:
  db: "{{{{ vars.db_url }}}}"

steps:
  - id: backup
    title: Take a backup
    kind: command
    run: echo "replace with your backup command"
    dry_run: safe          # harmless: also runs under --dry-run
    estimate: 1m

  - id: migrate
    title: Apply the schema change
    kind: command
    run: echo "replace with e.g. alembic upgrade head"
    needs: [backup]        # refused until backup passed
    preconditions:
      - check: sql
        name: database answers
        connection: db
        query: SELECT 1
        expect: "== 1"
    confirm: Apply the migration now?
    rollback:
      kind: command
      run: echo "replace with the downgrade"
    estimate: 30s
    hints:
      "lock timeout": A long transaction holds a lock; find it, then resume.

  - id: verify
    title: Verify
    kind: command
    run: "true"
    needs: [migrate]
    irreversible: true     # nothing to undo
    gates:
      - check: sql
        name: the change is visible
        connection: db
        query: SELECT 1
        expect: "== 1"

success_criteria:
  - Describe what must be true when the change is done
"""


def init(name: str, *, directory: Path | None = None, force: bool = False, echo: Echo = _echo) -> int:
    """Scaffold a commented runbook in runbooks/NAME.yaml."""
    import re

    from runbook.errors import UsageError

    if not re.fullmatch(r"[a-z0-9_-]{1,64}", name):
        raise UsageError(f"runbook name {name!r} must match [a-z0-9_-]+ (it becomes the file name and the lock key)")
    directory = directory or Path.cwd() / "runbooks"
    path = directory / f"{name}.yaml"
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="choose another name or pass --force")
    _write(path, INIT_TEMPLATE.format(name=name), what="the runbook")
    echo(f"created {path}")
    echo(f"next: runbook plan {name}")
    return ExitCode.OK


# ---------------------------------------------------------------- running


def _actor() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _terminal_to_ask() -> bool:
    """Whether a question can be asked and answered: stdin and stdout both terminals."""
    return is_terminal(sys.stdin) and is_terminal(sys.stdout)


def _reporters(log_format: str, stream: TextIO | None = None, *, steps: list[tuple[str, str, float | None]] | None = None):  # type: ignore[no-untyped-def]
    """JSON lines, the live view (given the plan's ``steps``, on a terminal), or plain lines."""
    from runbook.reporting import ConsoleReporter, JsonReporter, fan_out

    if log_format == "json":
        return fan_out(JsonReporter(stream))
    # A dumb terminal cannot redraw in place; it gets the lines a log file would.
    if steps is not None and stream is None and is_terminal(sys.stdout) and os.environ.get("TERM") != "dumb":
        from runbook.render.live import LiveReporter

        return LiveReporter(steps)
    return fan_out(ConsoleReporter(stream))


def run(
    name: str,
    *,
    env: str | None = None,
    var_items: Sequence[str] = (),
    yes: bool = False,
    approve: Sequence[str] = (),
    dry_run: bool = False,
    resume: bool = False,
    resume_run_id: str | None = None,
    from_step: str | None = None,
    only: Sequence[str] = (),
    state_url: str | None = None,
    accept_changes: bool = False,
    log_format: str = "console",
    interactive: bool | None = None,
    workdir: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    from runbook.engine import Engine, RunOptions, stdin_prompt
    from runbook.planner import build_plan, parse_var_overrides
    from runbook.state import StateStore

    workdir = workdir or Path.cwd()
    loaded = _load(name)
    overrides = parse_var_overrides(list(var_items))
    store = StateStore.open(state_url, workdir=workdir)
    try:
        if resume or resume_run_id is not None:
            # A resumed run keeps the --var values it started with; new ones win.
            overrides = {**_recorded_overrides(store, loaded.runbook.name, env, resume_run_id), **overrides}
        built = build_plan(loaded, env, overrides)
    except BaseException:
        store.close()
        raise
    if interactive is None:
        interactive = _terminal_to_ask()
    emit = _reporters(log_format, stream, steps=[(p.id, p.title, p.estimate.high if p.estimate else None) for p in built.steps])
    # _reporters imports the live view (and rich) only when it chose it; its table must be
    # off screen while a question is asked, and closed however the run ends.
    live_view = sys.modules.get("runbook.render.live")
    live = emit if live_view is not None and isinstance(emit, live_view.LiveReporter) else None
    prompt = stdin_prompt if live is None else live.prompting(stdin_prompt)
    options = RunOptions(
        yes=yes,
        approve=frozenset(approve),
        dry_run=dry_run,
        resume=resume or resume_run_id is not None,
        resume_run_id=resume_run_id,
        from_step=from_step,
        only=tuple(only),
        accept_changes=accept_changes,
        prompt=prompt if interactive else None,
        actor=_actor(),
        overrides=overrides,
    )
    try:
        result = Engine(built, store, emit, options, workdir).run()
    finally:
        if live is not None:
            live.close()
        store.close()
    return result.exit_code


def _recorded_overrides(store, runbook: str, env: str | None, run_id: str | None) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from runbook.planner import DEFAULT_ENV

    record = store.get_run(run_id) if run_id else store.latest_run(runbook, env or DEFAULT_ENV, unfinished=True)
    if record is None or not isinstance(record.params, dict):
        return {}
    recorded = record.params.get("overrides") or {}
    return {str(k): str(v) for k, v in recorded.items()}


def rollback(
    run_id: str,
    *,
    to_step: str | None = None,
    option: str | None = None,
    var_items: Sequence[str] = (),
    yes: bool = False,
    state_url: str | None = None,
    log_format: str = "console",
    workdir: Path | None = None,
) -> int:
    from runbook.engine import Engine, RunOptions, stdin_prompt
    from runbook.loader import load_runbook
    from runbook.planner import build_plan, parse_var_overrides
    from runbook.state import StateStore

    workdir = workdir or Path.cwd()
    store = StateStore.open(state_url, workdir=workdir)
    try:
        record = _run_record(store, run_id)
        overrides = {**_recorded_overrides(store, record.runbook, record.env, run_id), **parse_var_overrides(list(var_items))}
        built = build_plan(load_runbook(Path(record.path)), None if record.env == "default" else record.env, overrides)
        interactive = _terminal_to_ask()
        options = RunOptions(yes=yes, prompt=stdin_prompt if interactive else None, actor=_actor())
        engine = Engine(built, store, _reporters(log_format), options, workdir)
        engine.run_id = record.run_id
        return engine.rollback_run(to_step=to_step, option=option).exit_code
    finally:
        store.close()


def _run_record(store, run_id: str):  # type: ignore[no-untyped-def]
    from runbook.errors import UsageError

    record = store.get_run(run_id)
    if record is None:
        raise UsageError(f"no run {run_id!r} in the state store {store.url_for_display}", hint="runbook history lists the runs")
    return record


def approve(run_id: str, step_id: str, *, by: str, comment: str | None = None, state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.errors import UsageError
    from runbook.loader import load_runbook
    from runbook.planner import build_plan
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        record = _run_record(store, run_id)
        built = build_plan(load_runbook(Path(record.path)), None if record.env == "default" else record.env, _recorded_overrides(store, record.runbook, record.env, run_id))
        try:
            planned = built.step(step_id)
        except KeyError:
            raise UsageError(f"runbook {record.runbook} has no step {step_id!r}") from None
        store.record_approval(run_id, step_id, by=by, comment=comment, fingerprint=planned.fingerprint)
        store.append_event(run_id, "approval_recorded", step_id=step_id, detail={"by": by, "comment": comment, "fingerprint": planned.fingerprint})
        echo(f"approved {step_id} of run {run_id} by {by} (fingerprint {planned.fingerprint})")
        env_flag = f" --env {record.env}" if record.env != "default" else ""
        echo(f"continue with: runbook run {Path(record.path).name}{env_flag} --resume")
        return ExitCode.OK
    finally:
        store.close()


def unlock(name: str, *, env: str | None, force: bool, state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.errors import UsageError
    from runbook.state import StateStore

    if not force:
        raise UsageError("unlock breaks another run's lock; add --force if you are sure its holder is gone")
    runbook_name = _runbook_name(name)
    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        holder = store.force_unlock(runbook_name, env or "default", by=_actor())
    finally:
        store.close()
    if holder is None:
        echo(f"no lock held on {runbook_name} in {env or 'default'}")
    else:
        echo(f"lock on {runbook_name} in {env or 'default'} broken (was held by run {holder.run_id}, {holder.actor} pid {holder.pid}); recorded")
    return ExitCode.OK


def _runbook_name(name: str) -> str:
    """A runbook's declared name from a file or bare name, else the name as given."""
    from runbook.errors import RunbookError

    try:
        return _load(name).runbook.name
    except RunbookError:
        return Path(name).stem


# ---------------------------------------------------------------- inspecting


def status(run_id: str | None = None, *, state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.render.runs import render_status
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        if run_id is None:
            runs = store.list_runs(limit=1)
            if not runs:
                echo("no runs recorded yet")
                return ExitCode.OK
            run_id = runs[0].run_id
        record = _run_record(store, run_id)
        echo(render_status(record, store.attempts(run_id), store.approvals(run_id)))
    finally:
        store.close()
    return ExitCode.OK


def history(name: str | None = None, *, env: str | None = None, limit: int = 20, state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.render.runs import render_history
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        runs = store.list_runs(_runbook_name(name) if name else None, env, limit=limit)
    finally:
        store.close()
    echo(render_history(runs))
    return ExitCode.OK


def show(run_id: str, *, events: bool = False, state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.render.runs import render_events, render_status
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        record = _run_record(store, run_id)
        echo(render_status(record, store.attempts(run_id), store.approvals(run_id)))
        if events:
            echo(render_events(store.events(run_id)))
    finally:
        store.close()
    return ExitCode.OK


def report(run_id: str, *, fmt: str = "md", output: Path | None = None, state_url: str | None = None, echo: Echo = _echo) -> int:
    """A change report of one run, as Markdown, JSON or HTML."""
    from runbook.errors import RunbookError
    from runbook.loader import load_runbook
    from runbook.render.report import RENDERERS, build_report
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        record = _run_record(store, run_id)
        estimates: dict[str, tuple[str, float | None]] = {}
        try:
            runbook = load_runbook(Path(record.path)).runbook
            estimates = {s.id: (s.title or s.id, s.estimate.high if s.estimate else None) for s in runbook.steps}
        except RunbookError:
            pass  # the file moved or changed shape since; the report still stands on the store
        built = build_report(record, store.attempts(run_id), store.approvals(run_id), store.events(run_id), estimates)
    finally:
        store.close()
    text = RENDERERS[fmt](built)
    if output is None:
        echo(text)
    else:
        _write(output, text, what="the report")
        echo(f"wrote {output}")
    return ExitCode.OK


def _write(path: Path, text: str, *, what: str) -> None:
    """Write a file the operator asked for, under the working directory, never through a link."""
    from runbook.safefile import write_text

    write_text(path, Path.cwd(), text, what=what)
