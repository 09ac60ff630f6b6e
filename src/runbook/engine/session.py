"""A session: everything that holds an environment while a run or a rollback acts.

One lifecycle for both: the parts a step needs (journal, renderer, checks,
approvals, the step runner, the process supervisor, connections), the lock
with its heartbeat, and the finish (final status, notifications, the next
commands). ``run.py`` and ``rollback.py`` are thin strategies over it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from runbook import identity
from runbook.checks import CheckContext
from runbook.connections import Connections
from runbook.engine import leftovers
from runbook.engine.approvals import Approvals
from runbook.engine.checks import CheckRunner
from runbook.engine.control import RunControl
from runbook.engine.context import Renderer, StepStates
from runbook.engine.journal import Journal
from runbook.engine.lockwait import acquire_waiting
from runbook.engine.naming import runbook_argument, runbook_fingerprint
from runbook.engine.outcome import RunResult, Stop
from runbook.engine.step import StepRunner
from runbook.engine.whereabouts import project_dir
from runbook.fleet.context import fleet_of
from runbook.errors import ExitCode
from runbook.model import Runbook
from runbook.notify import Dispatcher, render_message
from runbook.planner import Plan
from runbook.process import ProcessSupervisor
from runbook.reporting import Event
from runbook.state import StateStore
from runbook.state.locks import Heartbeat
from runbook.status import EventName, RunStatus
from runbook.templating import TemplateFailed


@dataclass
class RunOptions:
    yes: bool = False
    approve: frozenset[str] = frozenset()
    dry_run: bool = False
    resume: bool = False
    resume_run_id: str | None = None
    from_step: str | None = None
    only: tuple[str, ...] = ()
    # --skip: left out of this run; refused while a step that runs needs one (engine/skip.py).
    skip: tuple[str, ...] = ()
    accept_changes: bool = False
    # --lock-timeout: how long to wait for a held lock before refusing (engine/lockwait.py).
    lock_timeout: float = 0.0
    # Asks the operator a yes/no question; None when there is no terminal.
    prompt: Callable[[str], bool] | None = None
    actor: str = ""
    # --var values as given (after a resume replayed the run's own).
    overrides: dict[str, str] = field(default_factory=dict)
    # --wait: poll the store for approvals even without a terminal; --wait-timeout bounds it.
    wait: bool = False
    wait_timeout: float | None = None


class Session:
    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        emit: Callable[[str, Event], None],
        options: RunOptions,
        workdir: Path,
        supervisor: ProcessSupervisor | None = None,
    ) -> None:
        """``supervisor``: the caller's, when its prompt must wake on the same signals
        (``prompt.make_prompt``); the session installs it while it holds the environment."""
        self.plan = plan
        self.store = store
        self.options = options
        self.workdir = workdir
        # What steps' relative paths resolve against (whereabouts.py); logs stay in workdir's .runbook/.
        self.base_dir = project_dir(plan.loaded.path, workdir)
        masker = plan.resolved.masker
        self.journal = Journal(store, masker, emit)
        self.states = StepStates()
        self.renderer = Renderer(plan, self.states, dry_run=options.dry_run)
        self.supervisor = supervisor or ProcessSupervisor()
        self.connections = Connections(dict(plan.runbook.connections), masker, self.renderer.text)
        self.fingerprint = runbook_fingerprint(plan.runbook)
        process_env = command_environment()
        self.checks = CheckRunner(
            self.journal,
            CheckContext(
                workdir=self.base_dir,
                env=process_env,
                masker=masker,
                connections=self.connections,
                state=store,
                runbook=plan.runbook.name,
                fingerprint=self.fingerprint,
                runbook_dir=plan.loaded.path.parent,
                supervisor=self.supervisor,
            ),
            fleet=lambda: fleet_of(plan),
        )
        self.approvals = Approvals(
            self.journal,
            yes=options.yes,
            approve=options.approve,
            prompt=options.prompt,
            actor=options.actor,
            resume_command=lambda: self.command_line(resume=True),
            identity=identity.current(),
            runbook=plan.runbook,
            env=plan.env,
            supervisor=self.supervisor,
            wait=options.wait,
            wait_timeout=options.wait_timeout,
        )
        # Set once a step body is about to act: only then is the run announced, and only
        # a run that acted keeps owning its environment when it stops.
        self.acted = False
        self.steps = StepRunner(
            journal=self.journal,
            renderer=self.renderer,
            checks=self.checks,
            approvals=self.approvals,
            states=self.states,
            supervisor=self.supervisor,
            connections=self.connections,
            workdir=self.base_dir,
            log_root=workdir,
            process_env=process_env,
            dry_run=options.dry_run,
            before_first_action=self._first_action,
        )
        self.dispatcher = Dispatcher(
            masker,
            self.base_dir,
            console=lambda title, body: self.journal.emit(EventName.NOTIFICATION, title=title, body=body, record=False),
            warn=lambda message: self.journal.warning(message),
            runbook_dir=plan.loaded.path.parent,
        )
        self._heartbeat: Heartbeat | None = None
        # Requests from other machines (cancel, pause, set), while the lock is held.
        self.control: RunControl | None = None
        self.started = time.monotonic()

    @property
    def run_id(self) -> str:
        return self.journal.run_id

    def bind(self, run_id: str) -> None:
        self.journal.run_id = run_id
        self.renderer.run_id = run_id

    def _first_action(self) -> None:
        if not self.acted:
            self.acted = True
            self.notify("start")

    # ------------------------------------------------------------ holding the environment

    @contextmanager
    def holding(self, run_id: str, *, claim: Callable[[], None] = lambda: None) -> Iterator[None]:
        """The (runbook, environment) lock with its heartbeat, signal handling and
        connections, for as long as the body runs; all released however it ends.

        Under the lock, before anything else: ``claim`` (refuse when another run owns
        the environment), then what earlier holders left running is settled
        (leftovers.py), so no step of theirs still runs when one of ours starts.
        """
        name, env = self.plan.runbook.name, self.plan.env
        wait = self.options.lock_timeout
        lock = None if self.options.dry_run else acquire_waiting(self.store, name, env, run_id, wait, self.journal.notice)
        heartbeat = None
        try:
            if lock is not None:
                claim()
                leftovers.settle(self.store, lock, notice=self.journal.notice)
            self.supervisor.install()
            if lock is not None:
                self.bind(run_id)
                self.control = RunControl(self.journal, self.supervisor, lambda: self.command_line(resume=True))
                self.steps.control = self.control
                heartbeat = self.store.start_heartbeat(lock, poll=self.control.poll)
            self._heartbeat = heartbeat
            yield
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            self.steps.control = None
            self.supervisor.uninstall()
            self.connections.dispose()
            if lock is not None:
                self.store.release_lock(lock)

    def check_still_holding(self) -> None:
        """Before each step: a signal stops the run; a lost lock stops it before it acts again."""
        if self.supervisor.stop_requested:
            raise Stop(RunStatus.INTERRUPTED, ExitCode.INTERRUPTED)
        if self._heartbeat is not None:
            # The lock was broken (unlock --force) or taken over: another run may hold
            # it now, so not one more step of this one. Asks the store, not the last beat.
            self._heartbeat.check()
        if self.control is not None:
            self.control.hold_if_paused("between steps")

    # ------------------------------------------------------------ the end

    def finish(self, status: RunStatus, *, finished: bool, next_steps: list[str] | None = None) -> RunResult:
        code = _EXIT_CODES[status]
        if status == RunStatus.INTERRUPTED and self.supervisor.signal_received is not None:
            # 128 + the signal's number, as a shell shows for a process the signal killed.
            code = ExitCode.for_signal(self.supervisor.signal_received)
        if status == RunStatus.INTERRUPTED and self.control is not None and self.control.cancelled_by is not None:
            self.journal.emit(EventName.CANCELLED, by=self.control.cancelled_by)
        self.store.set_run_status(self.run_id, str(status), finished=finished or self.options.dry_run)
        self.journal.emit(EventName.RUN_FINISHED, status=status, duration=round(time.monotonic() - self.started, 3), next=next_steps or [])
        notification = _NOTIFICATIONS.get(status)
        # A run refused before it acted announces nothing but its own 'refused' message.
        if notification is not None and (self.acted or status in (RunStatus.PASSED, RunStatus.ROLLED_BACK) or self.options.resume):
            self.notify(notification)
        elif status == RunStatus.REFUSED:
            self.notify("refused")
        self.dispatcher.drain()
        return RunResult(self.run_id, status, int(code))

    def notify(self, event: str) -> None:
        """Send the runbook's message for ``event``; a notification problem is only a warning."""
        message = self.plan.runbook.notifications.messages.get(event)  # type: ignore[call-overload]
        if message is None or self.options.dry_run:
            return
        render = self.renderer.text
        try:
            title, body = render_message(message, render)
            channels = [
                c.model_copy(
                    update={
                        "path": render(c.path) if c.path else None,
                        "url": render(c.url) if c.url else None,
                        # Credentials, as often as not ({{ vars.token }}): masked by the dispatcher, never printed.
                        "headers": {name: render(value) for name, value in c.headers.items()},
                    }
                )
                for c in self.plan.runbook.notifications.channels
            ]
        except TemplateFailed as err:
            self.journal.warning(f"notification {event!r} not sent: {err}")
            return
        self.dispatcher.send(channels, title, body, event)
        self.journal.emit(EventName.NOTIFIED, notification=event, title=title, channels=[c.type for c in channels])

    def command_line(self, *, resume: bool = False) -> str:
        parts = ["runbook", "run", runbook_argument(self.plan.loaded.path)]
        if self.plan.env != "default":
            parts += ["--env", self.plan.env]
        if resume:
            parts.append("--resume")
        return shlex.join(parts)


_EXIT_CODES = {
    RunStatus.PASSED: ExitCode.OK,
    RunStatus.ROLLED_BACK: ExitCode.OK,
    RunStatus.FAILED: ExitCode.STEP_FAILED,
    RunStatus.ROLLBACK_FAILED: ExitCode.STEP_FAILED,
    RunStatus.REFUSED: ExitCode.REFUSED,
    RunStatus.AWAITING_APPROVAL: ExitCode.AWAITING_APPROVAL,
    RunStatus.INTERRUPTED: ExitCode.INTERRUPTED,
    RunStatus.RUNNING: ExitCode.STEP_FAILED,
    RunStatus.ABANDONED: ExitCode.OK,
}
_NOTIFICATIONS = {
    RunStatus.PASSED: "success",
    RunStatus.AWAITING_APPROVAL: "awaiting_approval",
    RunStatus.ROLLED_BACK: "rollback",
    RunStatus.FAILED: "failure",
    RunStatus.INTERRUPTED: "failure",
    RunStatus.ROLLBACK_FAILED: "failure",
}


def command_environment() -> dict[str, str]:
    """The environment of the commands steps and checks run: runbook's own, with the
    directory of the interpreter running runbook first on PATH when that is a
    virtualenv, as activating it would. ``python3`` in a step then has runbook's
    dependencies (alembic, the database drivers) whether or not the operator
    activated the venv (``.venv/bin/runbook run ...``)."""
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        bindir = str(Path(sys.executable).parent)
        path = env.get("PATH", "")
        if path.split(os.pathsep)[0] != bindir:
            env["PATH"] = bindir + (os.pathsep + path if path else "")
    return env


