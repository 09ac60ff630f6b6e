"""The ``runbook`` command line: parse arguments, call ``runbook.commands``.

No business logic lives here. Heavy modules are imported inside each command
so that ``runbook --help`` and ``runbook plan`` stay fast.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from runbook.errors import DISTRIBUTION, ExitCode, RunbookError

# At exit the interpreter's last garbage collections walk every object the imported
# libraries made: 0.5-0.8 s on a loaded machine, after the run was recorded and
# everything closed. Frozen objects are skipped, so the process ends when its work
# does (a signal is answered within 1 s); atexit handlers and stream flushes still run.
atexit.register(gc.freeze)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 a step failed, 2 invalid input, 3 refused, 4 awaiting approval, 5 dry run incomplete, "
    "128+N interrupted by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP, 131 SIGQUIT)."
)


def _call(function: Callable[..., int], **kwargs: Any) -> None:
    """Run a command function; print operator errors as one message, never a traceback."""
    try:
        code = function(**kwargs)
    except RunbookError as err:
        click.echo(f"error: {err}" if "\n" not in err.message else str(err), err=True)
        sys.exit(int(err.exit_code))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as err:
        if isinstance(err, BrokenPipeError):
            from runbook.stdstreams import stdout_reader_left

            if stdout_reader_left():
                # The reader of standard output stopped reading (`runbook unlock ... | head -0`): what it
                # read is what it wanted, and the command had done its work before it printed.
                sys.exit(int(ExitCode.OK))
        if os.environ.get("RUNBOOK_DEBUG"):
            raise
        click.echo(f"internal error (a bug in runbook, please report it): {type(err).__name__}: {err}", err=True)
        click.echo("set RUNBOOK_DEBUG=1 to see the traceback", err=True)
        sys.exit(int(ExitCode.STEP_FAILED))
    sys.exit(int(code))


# validate and plan read input an attacker may write (a pull request, a CI variable):
# past the template bounds, the kernel stops them at this much private memory
# (RLIMIT_DATA: heap and anonymous mappings, not shared libraries), so a bound we
# missed is a clear error instead of a host that swaps or an OOM kill of something else.
PLAN_MEMORY_LIMIT_MB = 1024


def _memory_limited(function: Callable[..., int]) -> Callable[..., int]:
    """``function`` under PLAN_MEMORY_LIMIT_MB (``RUNBOOK_PLAN_MEMORY_MB`` overrides it);
    running out of it is an operator error with exit 2, and the old limit comes back after."""

    def limited(**kwargs: Any) -> int:
        import resource

        # Imported before the limit: Python compiling a module that runs out of memory raises
        # odd errors (ValueError from the AST) instead of MemoryError, and loading an extension
        # module (pydantic_core) an ImportError from the dynamic loader: either would read as a bug.
        import runbook.loader  # noqa: F401
        import runbook.planner  # noqa: F401
        import runbook.templating  # noqa: F401

        limit_mb = int(os.environ.get("RUNBOOK_PLAN_MEMORY_MB") or PLAN_MEMORY_LIMIT_MB)
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        wanted = limit_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)
        if soft == resource.RLIM_INFINITY or soft > wanted:
            resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))
        try:
            return function(**kwargs)
        except Exception as err:
            if not _ran_out_of_memory(err):
                raise
            raise RunbookError(
                f"this needed more than {limit_mb:,} MB of memory and was stopped",
                hint="a template or the runbook itself is far too large; set RUNBOOK_PLAN_MEMORY_MB to allow more if it is legitimate",
            ) from None
        finally:
            resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))

    return limited


def _reader_may_stop(function: Callable[..., int]) -> Callable[..., int]:
    """``function`` prints for a reader that may stop early (``runbook history | head``):
    a broken pipe then ends it quietly, as for any Unix tool that only reads."""

    def reading(**kwargs: Any) -> int:
        from runbook.stdstreams import reader_may_stop_early

        with reader_may_stop_early():
            return function(**kwargs)
        return ExitCode.OK  # the reader stopped reading: what it read is what it wanted

    return reading


def _ran_out_of_memory(err: BaseException) -> bool:
    """A MemoryError, or what C code made of one: under a lowered RLIMIT_DATA an allocation
    failing inside the import system (unmarshalling cached bytecode) surfaces as a
    SystemError or an ImportError with the MemoryError as its context, or none at all; the
    import system listing a directory for its path cache fails with OSError ENOMEM."""
    import errno

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (MemoryError, SystemError)) or (isinstance(seen, OSError) and seen.errno == errno.ENOMEM):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _warn(text: str) -> None:
    click.echo(text, err=True)


class _Runbook(click.Group):
    """The command group; closed standard streams are dealt with before any verb (or --help) runs."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        from runbook.stdstreams import guard_standard_streams

        guard_standard_streams()
        return super().main(*args, **kwargs)


@click.group(cls=_Runbook, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name=DISTRIBUTION)
def main() -> None:
    """Run deployment runbooks: ordered, gated, resumable, recorded."""


# ---------------------------------------------------------------- shell completion
# Activated with: eval "$(_RUNBOOK_COMPLETE=bash_source runbook)" (zsh_source, fish_source).
# Each runs on every Tab, so each reads only what it needs and never creates a file.


def _complete_runbook(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Runbook files by the bare names ``find_runbook`` accepts; a path falls back to the shell's file completion."""
    if "/" in incomplete or incomplete.startswith("."):
        return [CompletionItem(incomplete, type="file")]
    directories = [Path.cwd() / "runbooks", *(Path(p) for p in os.environ.get("RUNBOOK_PATH", "").split(os.pathsep) if p)]
    names = sorted(
        {f.name for d in directories if d.is_dir() for f in d.iterdir() if f.suffix in (".yaml", ".yml") and f.name.startswith(incomplete)}
    )
    return [CompletionItem(name) for name in names] or [CompletionItem(incomplete, type="file")]


def _complete_step(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Step ids of the runbook named earlier on the line, when it loads."""
    # Completing an option's value, click stops parsing at that option: the positional
    # RUNBOOK before it is left unassigned, in ctx.args.
    name = ctx.params.get("runbook_file") or next(iter(ctx.args), None)
    if not name:
        return []
    from runbook.loader import find_runbook, load_runbook

    try:
        steps = load_runbook(find_runbook(name)).runbook.steps
    except RunbookError:
        return []
    return [CompletionItem(s.id, help=s.title) for s in steps if s.id.startswith(incomplete)]


def _complete_run_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Recent run ids, newest first, from the state store the command would use."""
    url = ctx.params.get("state_url") or os.environ.get("RUNBOOK_STATE_URL")
    if not url and not (Path.cwd() / ".runbook" / "state.db").is_file():
        return []  # opening the default store would create it
    from runbook.state import StateStore

    try:
        store = StateStore.open(url)
        try:
            runs = store.list_runs(limit=50)
        finally:
            store.close()
    except RunbookError:
        return []
    return [CompletionItem(r.run_id, help=f"{r.runbook} ({r.env}) {r.status}") for r in runs if r.run_id.startswith(incomplete)]


def _complete_topic(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`runbook docs` topics, with their titles."""
    from runbook.doc_topics import topics

    return [CompletionItem(t.name, help=t.title) for t in topics() if t.name.startswith(incomplete)]


RUNBOOK_ARG = click.argument("runbook_file", metavar="RUNBOOK", shell_complete=_complete_runbook)
RUN_ID_ARG = click.argument("run_id", shell_complete=_complete_run_id)
ENV_OPT = click.option("--env", "env", metavar="NAME", help="Apply this environment's overrides.")
VAR_OPT = click.option("--var", "var_items", multiple=True, metavar="NAME=VALUE", help="Set a var (overrides everything else).")
VAR_FILE_OPT = click.option(
    "--var-file", "var_files", multiple=True, metavar="FILE", help="Var values from a YAML or JSON mapping (repeatable; later files win)."
)
EXTRA_VARS_OPT = click.option(
    "-e", "--extra-vars", "extra_vars", multiple=True, metavar="@FILE|NAME=VALUE", help="As in Ansible: a var file (@FILE) or one value; over --var-file, under --var."
)


@main.command()
@RUNBOOK_ARG
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(runbook_file: str, strict: bool) -> None:
    """Check a runbook file and report every problem at once (exit 2 if any)."""
    from runbook import commands

    _call(_reader_may_stop(_memory_limited(commands.validate)), name=runbook_file, strict=strict, warn=_warn)


@main.command()
@RUNBOOK_ARG
@ENV_OPT
@VAR_OPT
@VAR_FILE_OPT
@EXTRA_VARS_OPT
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Also save the plan, for `runbook run --plan FILE`.")
def plan(runbook_file: str, env: str | None, var_items: tuple[str, ...], var_files: tuple[str, ...], extra_vars: tuple[str, ...], fmt: str, output: Path | None) -> None:
    """Print what a run would do, without executing anything."""
    from runbook import commands

    _call(
        _reader_may_stop(_memory_limited(commands.plan)), name=runbook_file, env=env, var_items=var_items, var_files=var_files, extra_vars=extra_vars, fmt=fmt, output=output
    )


@main.command()
@click.option("--definition", is_flag=True, help="The schema of a step definition (steps/NAME.yaml) instead.")
def schema(definition: bool) -> None:
    """Print the JSON Schema of the runbook format (for editors and linters)."""
    from runbook import commands

    _call(_reader_may_stop(commands.schema), definition=definition)


@main.command("steps")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help="Definitions directory (default ./steps).")
def steps_command(directory: Path | None) -> None:
    """List the reusable step definitions (for `uses:`) and their parameters."""
    from runbook import commands

    _call(_reader_may_stop(commands.list_steps), directory=directory)


@main.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(name: str, force: bool) -> None:
    """Create a commented starter runbook in runbooks/NAME.yaml."""
    from runbook import commands

    _call(commands.init, name=name, force=force)


@main.command("docs")
@click.argument("topic", required=False, shell_complete=_complete_topic)
@click.argument("sections", nargs=-1, metavar="[SECTION]...")
def docs_command(topic: str | None, sections: tuple[str, ...]) -> None:
    """The documentation, shipped with runbook: list the topics, or print TOPIC
    (only the sections whose heading names SECTION, e.g. `runbook docs format rollback`)."""
    from runbook import commands
    from runbook.stdstreams import is_terminal

    # A long text through the pager on a terminal; plain when piped.
    page = click.echo_via_pager if is_terminal(sys.stdout) else None
    _call(_reader_may_stop(commands.docs), topic=topic, sections=sections, page=page)


@main.command("import")
@click.argument("checklist", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="FILE", help="Where to write the runbook (default runbooks/NAME.yaml; - for stdout).")
@click.option("--explain", is_flag=True, help="Also print, per range of source lines, what it became.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def import_command(checklist: Path, output: Path | None, explain: bool, force: bool) -> None:
    """Turn a Markdown deployment checklist into a draft runbook to review."""
    from runbook import commands

    _call(_reader_may_stop(_memory_limited(commands.import_checklist)), checklist=checklist, output=output, explain=explain, force=force, warn=_warn)


STATE_OPT = click.option("--state", "state_url", metavar="URL", envvar="RUNBOOK_STATE_URL", help="State store URL (default: sqlite .runbook/state.db).")


@main.command()
@click.argument("runbook_file", metavar="[RUNBOOK]", required=False, shell_complete=_complete_runbook)
@ENV_OPT
@VAR_OPT
@VAR_FILE_OPT
@EXTRA_VARS_OPT
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="Run a plan saved by `plan -o FILE`; refused if anything changed since.")
@click.option("--yes", is_flag=True, help="Approve every confirmation.")
@click.option("--approve", "approve", multiple=True, metavar="STEP", help="Approve this step's confirmation.", shell_complete=_complete_step)
@click.option("--dry-run", is_flag=True, help="Run only what reads; report what would run.")
@click.option(
    "--resume", "resume", is_flag=False, flag_value="", default=None, metavar="[RUN_ID]", help="Continue the latest unfinished run (or RUN_ID).", shell_complete=_complete_run_id
)
@click.option("--from", "from_step", metavar="STEP", help="Start at STEP; earlier steps must have passed in the latest run.", shell_complete=_complete_step)
@click.option("--only", "only", multiple=True, metavar="STEP", help="Run only these steps (their needs must have passed).", shell_complete=_complete_step)
@click.option("--skip", "skip", multiple=True, metavar="STEP", help="Leave this step out (refused while a step that runs needs it).", shell_complete=_complete_step)
@click.option("--lock-timeout", metavar="DURATION", help="Wait this long (30s, 5m) for a held lock instead of refusing at once.")
@click.option("--plain", is_flag=True, help="Plain lines instead of the live view (automatic without a terminal or with CI=true).")
@STATE_OPT
@click.option("--accept-changes", is_flag=True, help="On resume, re-run passed steps whose definition changed.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
@click.option("--wait", is_flag=True, help="Awaiting approval without a terminal: poll the state store until the approvals arrive.")
@click.option("--wait-timeout", metavar="DURATION", help="Wait at most this long for approvals (e.g. 30m), then stop awaiting approval (exit 4). Implies --wait.")
def run(
    runbook_file: str | None,
    env: str | None,
    var_items: tuple[str, ...],
    var_files: tuple[str, ...],
    extra_vars: tuple[str, ...],
    plan_file: Path | None,
    yes: bool,
    approve: tuple[str, ...],
    dry_run: bool,
    resume: str | None,
    from_step: str | None,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    lock_timeout: str | None,
    plain: bool,
    state_url: str | None,
    accept_changes: bool,
    log_format: str,
    wait: bool,
    wait_timeout: str | None,
) -> None:
    """Execute a runbook in enforced order, recording every transition."""
    from runbook import commands
    from runbook.stdstreams import keep_going_without_reader

    keep_going_without_reader()
    _call(
        commands.run,
        name=runbook_file,
        env=env,
        var_items=var_items,
        var_files=var_files,
        extra_vars=extra_vars,
        plan_file=plan_file,
        yes=yes,
        approve=approve,
        dry_run=dry_run,
        resume=resume is not None,
        resume_run_id=resume or None,
        from_step=from_step,
        only=only,
        skip=skip,
        lock_timeout=lock_timeout,
        plain=plain,
        state_url=state_url,
        accept_changes=accept_changes,
        log_format=log_format,
        wait=wait,
        wait_timeout=_duration("--wait-timeout", wait_timeout),
    )


def _duration(flag: str, value: str | None) -> float | None:
    from runbook.model import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint=flag) from None


@main.command()
@RUN_ID_ARG
@click.option("--to", "to_step", metavar="STEP", help="Undo the steps after STEP (STEP stays).")
@click.option("--option", "option", metavar="ID", help="Run one of the runbook's named rollback options instead.")
@VAR_OPT
@click.option("--yes", is_flag=True, help="Roll back without asking (the rollback steps are still printed first).")
@click.option("--dry-run", is_flag=True, help="Print the rollback steps in the order they would run; run nothing.")
@STATE_OPT
@click.option("--accept-changes", is_flag=True, help="Roll back steps whose definition changed since the run ran them.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
def rollback(
    run_id: str,
    to_step: str | None,
    option: str | None,
    var_items: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    state_url: str | None,
    accept_changes: bool,
    log_format: str,
) -> None:
    """Undo a run: rollbacks of its passed steps, newest first, as a run of its own.

    Prints the rendered rollback steps in the order they will run, then asks
    (or takes --yes)."""
    from runbook import commands
    from runbook.stdstreams import keep_going_without_reader

    keep_going_without_reader()
    _call(
        commands.rollback,
        run_id=run_id,
        to_step=to_step,
        option=option,
        var_items=var_items,
        yes=yes,
        dry_run=dry_run,
        state_url=state_url,
        log_format=log_format,
        accept_changes=accept_changes,
    )


@main.command()
@RUN_ID_ARG
@click.option("--reason", required=True, metavar="TEXT", help="Why the run is given up (recorded).")
@click.option("--by", metavar="NAME", help="Who abandons it (default: user@host).")
@STATE_OPT
def abandon(run_id: str, reason: str, by: str | None, state_url: str | None) -> None:
    """Give up on an unfinished run so that its environment is free for a new run."""
    from runbook import commands

    _call(commands.abandon, run_id=run_id, reason=reason, by=by, state_url=state_url)


@main.command()
@RUN_ID_ARG
@click.argument("step_id")
@click.option("--by", metavar="NAME", help="Approve in someone else's name (only when the runbook allows delegation); default: your OS user.")
@click.option("--comment", metavar="TEXT")
@STATE_OPT
def approve(run_id: str, step_id: str, by: str | None, comment: str | None, state_url: str | None) -> None:
    """Approve a step that is awaiting approval, as your OS user on this host."""
    from runbook import commands

    _call(commands.approve, run_id=run_id, step_id=step_id, by=by, comment=comment, state_url=state_url)


@main.command()
@RUN_ID_ARG
@click.argument("step_id")
@click.option("--reason", required=True, metavar="TEXT", help="Why (recorded).")
@STATE_OPT
def reject(run_id: str, step_id: str, reason: str, state_url: str | None) -> None:
    """Reject a step awaiting approval: the run fails (exit 1) and resumes only after a new approval."""
    from runbook import commands, control_commands

    _call(control_commands.reject, run_id=run_id, step_id=step_id, reason=reason, state_url=state_url, echo=commands._echo)


@main.command()
@RUN_ID_ARG
@STATE_OPT
def cancel(run_id: str, state_url: str | None) -> None:
    """Stop a running run from any machine: its step is stopped, the run is interrupted (resumable)."""
    from runbook import commands, control_commands

    _call(control_commands.cancel, run_id=run_id, state_url=state_url, echo=commands._echo)


@main.command()
@RUN_ID_ARG
@STATE_OPT
def pause(run_id: str, state_url: str | None) -> None:
    """Pause a running run at its next safe point; `run --resume` continues it."""
    from runbook import commands, control_commands

    _call(control_commands.pause, run_id=run_id, state_url=state_url, echo=commands._echo)


@main.command(name="set")
@RUN_ID_ARG
@click.argument("step_id")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@STATE_OPT
def set_(run_id: str, step_id: str, assignments: tuple[str, ...], state_url: str | None) -> None:
    """Change a running backfill's throttle or max_batch (e.g. throttle=200ms max_batch=500)."""
    from runbook import commands, control_commands

    _call(control_commands.set_values, run_id=run_id, step_id=step_id, assignments=assignments, state_url=state_url, echo=commands._echo)


@main.command()
@RUNBOOK_ARG
@ENV_OPT
@click.option("--force", is_flag=True, help="Required: confirms you are breaking another run's lock.")
@STATE_OPT
def unlock(runbook_file: str, env: str | None, force: bool, state_url: str | None) -> None:
    """Break the lock of a runbook and environment (audited)."""
    from runbook import commands

    _call(commands.unlock, name=runbook_file, env=env, force=force, state_url=state_url)


FORMAT_OPT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: see docs/machine-output.md.")


@main.command()
@click.argument("run_id", required=False, shell_complete=_complete_run_id)
@FORMAT_OPT
@STATE_OPT
def status(run_id: str | None, fmt: str, state_url: str | None) -> None:
    """Each step of a run (the latest by default): state, duration, attempts, checks."""
    from runbook import commands

    _call(_reader_may_stop(commands.status), run_id=run_id, fmt=fmt, state_url=state_url)


@main.command()
@click.argument("runbook_file", metavar="[RUNBOOK]", required=False, shell_complete=_complete_runbook)
@ENV_OPT
@click.option("--limit", default=20, show_default=True)
@FORMAT_OPT
@STATE_OPT
def history(runbook_file: str | None, env: str | None, limit: int, fmt: str, state_url: str | None) -> None:
    """Recorded runs, newest first."""
    from runbook import commands

    _call(_reader_may_stop(commands.history), name=runbook_file, env=env, limit=limit, fmt=fmt, state_url=state_url)


@main.command()
@RUN_ID_ARG
@click.option("--events", is_flag=True, help="Also print the event log.")
@FORMAT_OPT
@STATE_OPT
def show(run_id: str, events: bool, fmt: str, state_url: str | None) -> None:
    """One run in detail."""
    from runbook import commands

    _call(_reader_may_stop(commands.show), run_id=run_id, events=events, fmt=fmt, state_url=state_url)


@main.command()
@RUN_ID_ARG
@click.argument("step_id", metavar="[STEP]", required=False)
@click.option("--attempt", type=click.IntRange(min=1), metavar="N", help="Only this attempt of STEP (default: every attempt).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the run (or the attempt) ends.")
@FORMAT_OPT
@STATE_OPT
def logs(run_id: str, step_id: str | None, attempt: int | None, follow: bool, fmt: str, state_url: str | None) -> None:
    """A run's step output, from the state store (works on any machine sharing it)."""
    from runbook import commands

    _call(_reader_may_stop(commands.logs), run_id=run_id, step_id=step_id, attempt=attempt, follow=follow, fmt=fmt, state_url=state_url, warn=_warn)


@main.command()
@RUN_ID_ARG
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@STATE_OPT
def report(run_id: str, fmt: str, output: Path | None, state_url: str | None) -> None:
    """A change report of one run: steps, timings, gates, approvals, criteria."""
    from runbook import commands

    _call(_reader_may_stop(commands.report), run_id=run_id, fmt=fmt, output=output, state_url=state_url)


if __name__ == "__main__":  # pragma: no cover
    main()
