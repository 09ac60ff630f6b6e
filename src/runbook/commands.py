"""One plain function per CLI verb; ``cli.py`` only parses arguments and calls these.

Each function takes plain values, writes its output through ``echo`` and
returns an exit code, so tests call them directly without a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runbook.errors import ExitCode, Refused, UsageError
from runbook.prompt import Prompt, make_prompt
from runbook.stdstreams import is_terminal

if TYPE_CHECKING:
    from runbook.loader import LoadedRunbook
    from runbook.masking import Masker
    from runbook.planner import Plan
    from runbook.state import StateStore
    from runbook.state.store import RunRecord

if TYPE_CHECKING:
    from runbook.state import RunRecord, StateStore
    from runbook.state.liveness import ShownStatus

Echo = Callable[[str], None]


def _echo(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _load(name: str, *, strict: bool = False):  # type: ignore[no-untyped-def]
    from runbook.loader import find_runbook, load_runbook

    return load_runbook(find_runbook(name), strict=strict)


def validate(name: str, *, strict: bool = False, echo: Echo = _echo, warn: Echo | None = None) -> int:
    from runbook.definition_check import check_definition, is_step_definition
    from runbook.loader import find_runbook

    path = find_runbook(name)
    if is_step_definition(path):
        # A steps/NAME.yaml file, checked as a runbook step using it would check it.
        warnings = check_definition(path, strict=strict)
        for warning in warnings:
            (warn or echo)(str(warning))
        echo(f"{path}: valid step definition ({len(warnings)} warning(s))")
        return ExitCode.OK
    loaded = _load(name, strict=strict)
    for warning in loaded.warnings:
        (warn or echo)(str(warning))
    steps = len(loaded.runbook.steps)
    echo(f"{loaded.path}: valid ({steps} steps, {len(loaded.warnings)} warning(s))")
    return ExitCode.OK


def plan(
    name: str,
    *,
    env: str | None = None,
    var_items: Sequence[str] = (),
    var_files: Sequence[str] = (),
    extra_vars: Sequence[str] = (),
    fmt: str = "text",
    output: Path | None = None,
    echo: Echo = _echo,
) -> int:
    from runbook.planner import build_plan
    from runbook.render.plan import RENDERERS, render_json
    from runbook.varfiles import collect_overrides

    given = collect_overrides(var_items, var_files, extra_vars)
    built = build_plan(_load(name), env, given)
    echo(RENDERERS[fmt](built))
    if output is not None:
        from runbook.saved_plan import document

        _write(output, document(built, render_json(built), given), what="the plan")
        echo(f"saved the plan to {output}; carry it out with: runbook run --plan {output}")
    return ExitCode.OK


def schema(*, definition: bool = False, echo: Echo = _echo) -> int:
    from runbook.schema import schema_document

    echo(json.dumps(schema_document(definition=definition), indent=2))
    return ExitCode.OK


def list_steps(*, directory: Path | None = None, echo: Echo = _echo) -> int:
    """The reusable step definitions in steps/ and their parameters."""
    from runbook.errors import InvalidRunbook, UsageError
    from runbook.yamlsource import load_yaml, read_file

    directory = directory or Path(os.environ.get("RUNBOOK_STEPS_DIR") or Path.cwd() / "steps")
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is not a directory; step definitions live in a steps/ directory")
    definitions = sorted(directory.glob("*.y*ml")) if directory.is_dir() else []
    if not definitions:
        # A new project (`runbook init`) has none yet: nothing to list is no error.
        echo(f"no step definitions in {directory} (a definition is a YAML file there; see `runbook schema`)")
    for path in definitions:
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
# Reference: `runbook docs format` (or `runbook schema` for your editor).
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
    echo("the format: runbook docs format (one section: runbook docs format vars)")
    echo(f"next: runbook plan {name} --var db_url=sqlite:///{name}.db")
    return ExitCode.OK


def docs(topic: str | None, sections: Sequence[str] = (), *, echo: Echo = _echo, page: Echo | None = None) -> int:
    """List the shipped documents, or print one (``page`` shows a long text, e.g. through a pager)."""
    from runbook import doc_topics

    if topic is None:
        text = "\n".join([*doc_topics.listing(), "print one with: runbook docs TOPIC [SECTION...]"])
    else:
        found = doc_topics.find_topic(topic)
        text = doc_topics.matching_sections(found, tuple(sections)) if sections else found.text()
        echo = page or echo
    echo(text)
    return ExitCode.OK


def import_checklist(
    checklist: Path, *, output: Path | None = None, force: bool = False, explain: bool = False, echo: Echo = _echo, warn: Echo | None = None
) -> int:
    """A Markdown checklist -> a draft runbook in runbooks/NAME.yaml (or ``output``; ``-`` is stdout)."""
    from runbook.errors import InvalidRunbook
    from runbook.importer import import_checklist as translate
    from runbook.importer import read_checklist
    from runbook.loader import load_runbook

    to_stdout = output is not None and str(output) == "-"
    if output is not None and not to_stdout:
        _refuse_overwrite(output, force)
    imported = translate(read_checklist(checklist), source_name=checklist.name, name=None if output is None or to_stdout else output.stem)
    target = Path("-") if to_stdout else output or Path("runbooks") / f"{imported.name}.yaml"
    if not to_stdout:
        _refuse_overwrite(target, force)
    try:
        loaded = load_runbook(target.resolve() if not to_stdout else Path.cwd() / "import.yaml", text=imported.yaml, display=str(target))
    except InvalidRunbook as err:
        # The importer writes only what the loader accepts; anything else is its bug, not the checklist's.
        raise RuntimeError(f"the draft runbook import made does not validate:\n{err}") from err
    summary = (
        f"{imported.steps} steps, {imported.options} rollback options, {imported.todos} {'TODO(import)' if imported.todos else 'TODOs'} to review"
        f"{f', {len(loaded.warnings) - imported.todos} other warning(s)' if len(loaded.warnings) > imported.todos else ''}"
    )
    if to_stdout:
        echo(imported.yaml.rstrip("\n"))
        (warn or echo)(f"imported {checklist}: {summary}")
        if explain:
            (warn or echo)(imported.explain)
        return ExitCode.OK
    _write(target, imported.yaml, what="the runbook")
    echo(f"wrote {target}: {summary}")
    echo(f"next: review it, then `runbook validate --strict {target}` and `runbook plan {target}`")
    if explain:
        echo(imported.explain)
    return ExitCode.OK


def _refuse_overwrite(path: Path, force: bool) -> None:
    from runbook.errors import UsageError

    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"{path} already exists; nothing was written", hint="pass --force to overwrite it, or -o another file")


# ---------------------------------------------------------------- running


def _actor() -> str:
    """Who runs this command, by the OS (real uid), never by $USER or $LOGNAME, which anyone sets."""
    from runbook.identity import current

    return str(current())


def _terminal_to_ask() -> bool:
    """Whether a question can be asked and answered: stdin and stdout both terminals."""
    return is_terminal(sys.stdin) and is_terminal(sys.stdout)


def _reporters(  # type: ignore[no-untyped-def]
    log_format: str, stream: TextIO | None = None, *, steps: list[tuple[str, str, float | None]] | None = None, masker: Masker | None = None, plain: bool = False
):
    """JSON lines, the live view (given the plan's ``steps``, when render/choice.py says so), or plain lines."""
    from runbook.render.choice import wants_live_view
    from runbook.reporting import ConsoleReporter, fan_out

    if log_format == "json":
        from runbook.eventlog import JsonLog  # imports structlog: only for a JSON log

        return fan_out(JsonLog(stream, masker=masker))
    if steps is not None and stream is None and wants_live_view(plain=plain):
        from runbook.render.live import LiveReporter

        return LiveReporter(steps)
    return fan_out(ConsoleReporter(stream))


def run(
    name: str | None,
    *,
    env: str | None = None,
    var_items: Sequence[str] = (),
    var_files: Sequence[str] = (),
    extra_vars: Sequence[str] = (),
    plan_file: Path | None = None,
    skip: Sequence[str] = (),
    lock_timeout: str | None = None,
    plain: bool = False,
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
    wait: bool = False,
    wait_timeout: float | None = None,
    echo: Echo = _echo,
) -> int:
    from runbook import saved_plan
    from runbook.planner import DEFAULT_ENV, build_plan
    from runbook.varfiles import collect_overrides

    workdir = workdir or Path.cwd()
    lock_wait = _seconds(lock_timeout, "--lock-timeout")
    resuming = resume or resume_run_id is not None
    if name is None and plan_file is None and resume_run_id is not None:
        name, env = _runbook_of_run(state_url, workdir, resume_run_id, env)
    name, env, given, saved = saved_plan.for_run(plan_file, name, env, collect_overrides(var_items, var_files, extra_vars), resuming=resuming)
    loaded = _load(name)
    early = None
    if not (dry_run or resuming or from_step or only) and any(step.on is not None for step in loaded.runbook.steps):
        from runbook.fleet.context import connect_early

        # The ssh handshakes of a first step on hosts overlap what follows (the engine's and the
        # state store's imports, the store, the lock); fleet/context.py says what that may do.
        early = connect_early(loaded, env or DEFAULT_ENV, skip)
    from runbook.engine import RunOptions, Session
    from runbook.engine.run import run_plan
    from runbook.extras import check_plan as check_extras
    from runbook.process import ProcessSupervisor

    with _open_store(state_url, workdir) as store:
        record = _run_to_resume(store, loaded.runbook.name, env, resume_run_id) if resuming else None
        if record is not None and record.status == "paused" and not dry_run:
            from runbook.control_commands import continue_paused

            if continue_paused(store, record, echo):
                return ExitCode.OK
        overrides = _replayed_values(record, given) if record is not None else given
        built = build_plan(loaded, env, overrides)
        if early is not None:
            from runbook.fleet.context import adopt

            adopt(built, early)
        if saved is not None:
            saved_plan.verify(saved, built, given)
        check_extras(built)
        if record is not None:
            _check_values(record, built, given, accept_changes)
        if interactive is None:
            interactive = _terminal_to_ask()
        steps = [(p.id, p.title, p.estimate.high if p.estimate else None) for p in built.steps]
        emit = _reporters(log_format, stream, steps=steps, masker=built.resolved.masker, plain=plain)
        # _reporters imports the live view (and rich) only when it chose it; its table must be
        # off screen while a question is asked, and closed however the run ends.
        live_view = sys.modules.get("runbook.render.live")
        live = emit if live_view is not None and isinstance(emit, live_view.LiveReporter) else None
        # One supervisor for the run's commands and its questions: a signal ends either wait.
        supervisor = ProcessSupervisor()
        prompt = make_prompt(supervisor)
        if live is not None:
            prompt = live.prompting(prompt)
        options = RunOptions(
            yes=yes,
            approve=frozenset(approve),
            dry_run=dry_run,
            resume=resuming,
            resume_run_id=record.run_id if record is not None else None,
            from_step=from_step,
            only=tuple(only),
            skip=tuple(skip),
            lock_timeout=lock_wait,
            accept_changes=accept_changes,
            prompt=prompt if interactive else None,
            actor=_actor(),
            overrides=overrides,
            wait=wait or wait_timeout is not None,
            wait_timeout=wait_timeout,
        )
        try:
            result = run_plan(Session(built, store, emit, options, workdir, supervisor))
        finally:
            if live is not None:
                live.close()
    return result.exit_code


def _seconds(duration: str | None, flag: str) -> float:
    from runbook.model import parse_duration

    try:
        return parse_duration(duration) if duration else 0.0
    except ValueError as err:
        raise UsageError(f"{flag} {duration}: {err}") from None


@contextlib.contextmanager
def _open_store(state_url: str | None, workdir: Path) -> Iterator[StateStore]:
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=workdir)
    try:
        yield store
    finally:
        store.close()


def _runbook_of_run(state_url: str | None, workdir: Path, run_id: str, env: str | None) -> tuple[str, str | None]:
    """``runbook run --resume RUN`` without a RUNBOOK (as ``pause``, ``cancel`` and ``status``
    print it): the runbook that run was started from (or its copy here) and its environment."""
    from runbook.planner import DEFAULT_ENV

    with _open_store(state_url, workdir) as store:
        record = _run_record(store, run_id)
    if env is None and record.env != DEFAULT_ENV:
        env = record.env
    return str(_runbook_of(record).path), env


def _run_to_resume(store: StateStore, runbook: str, env: str | None, run_id: str | None) -> RunRecord | None:
    """The run --resume continues: the one given, else the one owning the environment.
    None when there is none (the engine then refuses with the command to start one)."""
    from runbook.planner import DEFAULT_ENV

    return store.get_run(run_id) if run_id else store.owner_run(runbook, env or DEFAULT_ENV)


def _replayed_values(record: RunRecord, given: dict[str, str]) -> dict[str, str]:
    from runbook.engine import values

    params = record.params if isinstance(record.params, dict) else {}
    if "values" in params:
        return values.replay(params["values"], given)
    # A run recorded before values were kept: its non-secret --var values, as stored.
    recorded = params.get("overrides") or {}
    return {**{str(k): str(v) for k, v in recorded.items()}, **given}


def _check_values(
    record: RunRecord, built: Plan, given: dict[str, str], accept_changes: bool, may_differ: Collection[str] = ()
) -> None:
    """A resume runs with exactly the values its run started with, or refuses; names in
    ``may_differ`` are exempt."""
    from runbook.engine import values

    params = record.params if isinstance(record.params, dict) else {}
    if "values" not in params:
        return
    differs = [name for name in values.changes(params["values"], built.resolved, given, record.run_id) if name not in may_differ]
    if differs and not accept_changes:
        raise values.refuse_changes(differs, record.run_id, built.resolved.masker)


def rollback(
    run_id: str,
    *,
    to_step: str | None = None,
    option: str | None = None,
    var_items: Sequence[str] = (),
    yes: bool = False,
    dry_run: bool = False,
    state_url: str | None = None,
    log_format: str = "console",
    workdir: Path | None = None,
    accept_changes: bool = False,
) -> int:
    """Undo a run (or run a named rollback option) as a run of its own, linked to it."""
    from runbook.engine import RunOptions, Session
    from runbook.engine.rollback import rollback_run
    from runbook.extras import check_plan as check_extras
    from runbook.planner import build_plan, parse_var_overrides
    from runbook.process import ProcessSupervisor

    workdir = workdir or Path.cwd()
    with _open_store(state_url, workdir) as store:
        record = _run_record(store, run_id)
        parent = (record.params or {}).get("rollback_of")
        if parent:
            raise UsageError(f"run {run_id} is itself a rollback (of run {parent})", hint=f"runbook rollback {parent}")
        given = parse_var_overrides(list(var_items))
        built = build_plan(_runbook_of(record), None if record.env == "default" else record.env, _replayed_values(record, given))
        check_extras(built)  # an alembic downgrade needs alembic as much as the upgrade did
        # A named option is new work the operator asks for now: what they pass with --var
        # parameterizes it (fix_data's ids). Undoing the run's steps keeps the run's values.
        _check_values(record, built, given, accept_changes=False, may_differ=given if option else ())
        interactive = _terminal_to_ask()
        supervisor = ProcessSupervisor()
        prompt: Prompt | None = make_prompt(supervisor) if interactive else None
        options = RunOptions(yes=yes, prompt=prompt, actor=_actor(), accept_changes=accept_changes)
        session = Session(built, store, _reporters(log_format, masker=built.resolved.masker), options, workdir, supervisor)
        return rollback_run(session, record, to_step=to_step, option=option, preview=dry_run).exit_code


def abandon(run_id: str, *, reason: str, by: str | None = None, state_url: str | None = None, echo: Echo = _echo) -> int:
    """Give up on an unfinished run: it stops owning its environment; recorded with who, when and why."""
    from runbook.state.locks import stale_reason
    from runbook.status import EventName, RunStatus

    if not reason.strip():
        raise UsageError("--reason must say why the run is abandoned (it is recorded)")
    with _open_store(state_url, Path.cwd()) as store:
        record = _run_record(store, run_id)
        if record.finished_at is not None:
            raise UsageError(f"run {run_id} is already finished ({record.status}); nothing to abandon")
        holder = store.lock_holder(record.runbook, record.env)
        if holder is not None and holder.run_id == run_id and stale_reason(holder, host=store.host, now=store.database_now()) is None:
            raise Refused(f"run {run_id} is running now ({holder.describe()})", hint="stop it first (Ctrl-C where it runs), then abandon it")
        who = by or _actor()
        store.set_run_status(run_id, str(RunStatus.ABANDONED), finished=True)
        store.append_event(run_id, str(EventName.ABANDONED), detail={"by": who, "reason": reason})
    echo(f"run {run_id} abandoned by {who}: {reason}")
    echo(f"{record.runbook} in {record.env} is free: a new run may start")
    return ExitCode.OK


def _run_record(store, run_id: str):  # type: ignore[no-untyped-def]
    from runbook.errors import UsageError

    record = store.get_run(run_id)
    if record is None:
        raise no_such_run(store, run_id)
    return record


def no_such_run(store: StateStore, run_id: str) -> UsageError:
    """The error for a run id the store does not know. ``status deploy`` (a runbook's
    name where a run id goes) is a natural slip: then say which run it meant."""
    from runbook.errors import UsageError

    message = f"no run {run_id!r} in the state store {store.url_for_display}"
    name = run_id.removesuffix(".yaml").removesuffix(".yml")
    runs = store.list_runs(name, limit=1) if name else []
    if runs:
        return UsageError(
            message + f": {name!r} is a runbook, not a run id",
            hint=f"its latest run is {runs[0].run_id} (runbook status {runs[0].run_id}); its runs: runbook history {name}",
        )
    return UsageError(message, hint="runbook history lists the runs")


def _runbook_of(record: RunRecord) -> LoadedRunbook:
    """The runbook a recorded run was started from. From another working directory or
    host, where that path does not exist, the runbook of the same name found from here
    (./runbooks/, RUNBOOK_PATH), as `run --resume` there finds it."""
    from runbook.loader import find_runbook, load_runbook

    recorded = Path(record.path)
    try:
        here = recorded.is_file()
    except OSError:  # a directory this user may not enter (another person's checkout): not here
        here = False
    if here:
        return load_runbook(recorded)
    try:
        found = find_runbook(recorded.name)
    except UsageError as err:
        raise UsageError(
            f"run {record.run_id} was started from {recorded}, which is not here, and {err.message}",
            hint=f"run this in a checkout that has runbooks/{recorded.name}, or name its directory in RUNBOOK_PATH",
        ) from None
    loaded = load_runbook(found)
    if loaded.runbook.name != record.runbook:
        raise UsageError(f"{found} is runbook {loaded.runbook.name!r}, but run {record.run_id} is of {record.runbook!r}")
    return loaded


def approve(run_id: str, step_id: str, *, by: str | None = None, comment: str | None = None, state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook import control_commands

    return control_commands.approve(run_id, step_id, by=by, comment=comment, state_url=state_url, echo=echo)


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


def status(run_id: str | None = None, *, fmt: str = "text", state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        if run_id is None:
            runs = store.list_runs(limit=1)
            if not runs:
                echo('{"format": 1, "run": null}' if fmt == "json" else "no runs recorded yet")
                return ExitCode.OK
            run_id = runs[0].run_id
        echo(_status_view(store, _run_record(store, run_id), fmt=fmt))
    finally:
        store.close()
    return ExitCode.OK


def _status_view(store: StateStore, record: RunRecord, *, fmt: str = "text", events: bool = False) -> str:
    """``status``/``show`` of one run: a run whose process is gone shows as interrupted, and a
    step that saved progress (a backfill) shows how far it got. Reads only; writes nothing."""
    from runbook.logs import failed_tails
    from runbook.render.machine import status_json
    from runbook.render.runs import render_events, render_status
    from runbook.state.liveness import observe

    record, shown = observe(store, record)
    attempts = store.attempts(record.run_id)
    latest = {a.step_id: a.status for a in attempts}
    progress: dict[str, str] = {}
    for step_id, state in latest.items():
        if state in ("running", "interrupted", "failed"):
            checkpoint = store.load_checkpoint(record.run_id, step_id)
            if checkpoint is not None:
                from runbook.steps.backfill import checkpoint_progress  # ~30 ms of imports, only for a backfill's progress

                progress[step_id] = checkpoint_progress(checkpoint)
    approvals = store.approvals(record.run_id)
    # A rollback is a run of its own, started soon after its parent: among the runbook's recent runs.
    rollbacks = [r for r in store.list_runs(record.runbook, record.env) if (r.params or {}).get("rollback_of") == record.run_id]
    if fmt == "json":
        return status_json(record, shown, attempts, approvals, progress, store.events(record.run_id) if events else None, rollbacks)
    text = render_status(
        record, attempts, approvals, shown=shown, progress=progress, tails=failed_tails(store, record.run_id, attempts), rolled_back_by=rollbacks
    )
    return text + ("\n" + render_events(store.events(record.run_id)) if events else "")


def history(name: str | None = None, *, env: str | None = None, limit: int = 20, fmt: str = "text", state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.render.machine import history_json
    from runbook.render.runs import render_history
    from runbook.state.liveness import HELD_BY_A_PROCESS, observe
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        runs = store.list_runs(_runbook_name(name) if name else None, env, limit=limit)
        shown: dict[str, ShownStatus] = {}
        for i, run in enumerate(runs):
            if run.status in HELD_BY_A_PROCESS:  # only these can be dead without saying so
                runs[i], shown[run.run_id] = observe(store, run)
    finally:
        store.close()
    echo(history_json(runs, shown) if fmt == "json" else render_history(runs, shown))
    return ExitCode.OK


def show(run_id: str, *, events: bool = False, fmt: str = "text", state_url: str | None = None, echo: Echo = _echo) -> int:
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        echo(_status_view(store, _run_record(store, run_id), fmt=fmt, events=events))
    finally:
        store.close()
    return ExitCode.OK


def logs(
    run_id: str, step_id: str | None = None, *, attempt: int | None = None, follow: bool = False, fmt: str = "text",
    state_url: str | None = None, echo: Echo = _echo, warn: Echo | None = None,
) -> int:  # fmt: skip
    """A run's stored step output, from the state store only (runbook/logs.py)."""
    from runbook.logs import logs as show_logs
    from runbook.state import StateStore

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        record = _run_record(store, run_id)
        return show_logs(store, record, step_id=step_id, attempt=attempt, follow=follow, fmt=fmt, echo=echo, warn=warn or echo)
    finally:
        store.close()


def report(run_id: str, *, fmt: str = "md", output: Path | None = None, state_url: str | None = None, echo: Echo = _echo) -> int:
    """A change report of one run, as Markdown, JSON or HTML."""
    from runbook.errors import RunbookError
    from runbook.logs import failed_tails
    from runbook.render.machine import next_commands
    from runbook.render.report import RENDERERS, build_report
    from runbook.state import StateStore
    from runbook.state.liveness import observe

    store = StateStore.open(state_url, workdir=Path.cwd())
    try:
        record, shown = observe(store, _run_record(store, run_id))
        estimates: dict[str, tuple[str, float | None]] = {}
        try:
            runbook = _runbook_of(record).runbook
            estimates = {s.id: (s.title or s.id, s.estimate.high if s.estimate else None) for s in runbook.steps}
        except RunbookError:
            pass  # the file moved or changed shape since; the report still stands on the store
        attempts = store.attempts(run_id)
        tails = failed_tails(store, run_id, attempts)
        built = build_report(
            record, attempts, store.approvals(run_id), store.events(run_id), estimates, status=shown.status, tails=tails, commands=next_commands(record, attempts)
        )
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
