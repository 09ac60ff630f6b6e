"""The live terminal view of a run: one table redrawn in place while it runs.

Used by ``runbook run`` only when stdout is a terminal; CI logs and pipes get
the plain ``ConsoleReporter`` lines instead. The table shows every planned
step with its status, its elapsed time against its estimate, the running
step's last output lines, the backfill's progress bar and the checks as they
are evaluated. Messages meant to stay on screen (notices, warnings,
notifications, failure help) are printed above the table in the same words
as the plain reporter; at the end the table is printed once more in its
final state, followed by the commands to resume or roll back.

rich is imported here, and this module only on that path, so that
``runbook plan`` and ``runbook --help`` stay fast.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from runbook.checks.base import result_text
from runbook.model import format_duration
from runbook.reporting import SYMBOLS, ConsoleReporter, Event

# (step id, title, upper estimate in seconds or None), in plan order.
StepSpec = tuple[str, str, float | None]

OUTPUT_LINES = 5
PENDING = "pending"
RUNNING = "running"
CHECKING = "checking"
ROLLING_BACK = "rolling_back"
# Drawn as they happen rather than at the next tick: each passes by in milliseconds,
# and a check or a step's end missed by every frame would never be seen.
_REDRAW_AT_ONCE = frozenset({"step_started", "check", "step_finished", "would_run", "rollback_step_started"})

_STYLES = {
    "passed": "green",
    "failed": "bold red",
    "refused": "bold red",
    "interrupted": "yellow",
    "awaiting_approval": "bold yellow",
    "skipped": "dim",
    "dry_run": "cyan",
    "rolled_back": "magenta",
    PENDING: "dim",
}


@dataclass
class _Row:
    step_id: str
    title: str
    estimate: float | None
    status: str = PENDING
    attempt: int = 1
    started: float | None = None
    duration: float | None = None
    reason: str | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES))
    progress: dict[str, Any] | None = None
    # A step on hosts (runbook.fleet): host -> its state and last output line, one live line each.
    hosts: dict[str, str] = field(default_factory=dict)
    # (mark, text) of each precondition and gate, in the order they were checked.
    checks: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def elapsed(self, now: float) -> float | None:
        if self.duration is not None:
            return self.duration
        return None if self.started is None else now - self.started


class _ConsolePrinter:
    """A text stream for ``ConsoleReporter`` that prints whole lines through the
    rich console, so that while the table is live they appear above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._pending = ""
        # Webhook threads report their warnings while the engine's thread reports the run.
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self.console.print(Text(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


class LiveReporter:
    """A reporter (``__call__(name, event)``) that keeps a live table of the plan's steps."""

    def __init__(self, steps: list[StepSpec], *, console: Console | None = None, refresh_per_second: float = 4) -> None:
        self.console = console or Console(highlight=False)
        self.refresh_per_second = refresh_per_second
        self.rows: dict[str, _Row] = {step_id: _Row(step_id, title, estimate) for step_id, title, estimate in steps}
        self.criteria: list[tuple[bool | None, str]] = []
        self.current: str | None = None
        # Set once the run is over: nothing is live any more, nothing spins.
        self.done = False
        # Events arrive on the engine's thread while rich redraws on its own.
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._spinner = Spinner("dots", style="bold blue")
        self._plain = ConsoleReporter(_ConsolePrinter(self.console), show_output=False)

    # ------------------------------------------------------------ display lifecycle

    def resume(self) -> None:
        """Show (again) the live table; a fresh Live each time, since a stopped one keeps its final overflow mode."""
        with self._lock:
            if self._live is not None or self.done:
                return
            live = self._live = Live(
                console=self.console,
                get_renderable=self._render,
                refresh_per_second=self.refresh_per_second,
                # Erased when paused or done: the final state is printed once, for the scrollback.
                transient=True,
                redirect_stdout=True,
                redirect_stderr=True,
            )
        live.start(refresh=True)

    def pause(self) -> None:
        """Take the table off the screen so that something else may use the terminal."""
        with self._lock:
            live, self._live = self._live, None
        if live is not None:
            live.stop()

    def prompting(self, prompt: Callable[[str], bool]) -> Callable[[str], bool]:
        """``prompt`` with the table paused while the operator reads and answers:
        a redraw would overwrite the question and the typed answer."""

        def ask(question: str) -> bool:
            self.pause()
            try:
                return prompt(question)
            finally:
                self.resume()

        return ask

    def close(self) -> None:
        """Stop redrawing for good. Called however the run ended: when it ended by an
        exception (no run_finished), the table's last state is printed so it stays on screen."""
        was_live = self._live is not None
        self.pause()
        with self._lock:
            if self.done:
                return
            self.done, self.current = True, None
        if was_live:
            self.console.print(self._render())

    # ------------------------------------------------------------ events

    def __call__(self, name: str, event: Event) -> None:
        # State changes under the lock; anything that calls into rich outside it, since
        # rich's refresh thread holds its own lock while it asks us for the table.
        update = getattr(self, "_update_" + name, None)
        if update is not None:
            with self._lock:
                update(event)
            if name in _REDRAW_AT_ONCE and self._live is not None:
                self._live.refresh()
        elif name == "run_started":
            self._plain(name, event)
            self.resume()
        elif name == "run_finished":
            self._finish(event)
        else:
            # Notices, warnings, notifications, failure help, approval requests, errors.
            self._plain(name, event)

    def _row(self, step_id: str, title: str | None = None) -> _Row:
        # Rollback options and recovery add steps that were not in the plan's list.
        row = self.rows.get(step_id)
        if row is None:
            row = self.rows[step_id] = _Row(step_id, title or step_id, None)
        return row

    def _update_step_started(self, e: Event) -> None:
        row = self._row(e["step"], e.get("title"))
        row.status, row.attempt = RUNNING, e.get("attempt", 1)
        row.started, row.duration, row.reason, row.progress = time.monotonic(), None, None, None
        row.output.clear()
        self.current = row.step_id

    def _update_rollback_step_started(self, e: Event) -> None:
        row = self._row(e["step"], e.get("title"))
        row.status, row.started, row.duration = ROLLING_BACK, time.monotonic(), None
        row.output.clear()
        self.current = row.step_id

    def _update_output(self, e: Event) -> None:
        # A step may send several lines at once (the backfill's summary); the tail counts lines.
        self._row(e["step"]).output.extend(str(e["line"]).splitlines() or [""])

    def _update_progress(self, e: Event) -> None:
        if "hosts" in e:
            self._row(e["step"]).hosts.update(e["hosts"])
            return
        self._row(e["step"]).progress = e

    def _update_check(self, e: Event) -> None:
        if e.get("step") == "success":
            return  # success criteria: their criterion events carry the outcome
        row = self._row(e["step"])
        if row.status == PENDING:
            row.status = CHECKING
        self.current = row.step_id
        if e.get("applicable") is False:
            row.checks.append(("–", f"{e['role']} {e['name']}: not applicable"))
            return
        mark = "✔" if e["ok"] else ("!" if e.get("on_fail") == "warn" else "✘")
        shown = result_text(e, with_expected=not e["ok"])
        row.checks.append((mark, f"{e['role']} {e['name']}" + (f": {shown}" if shown else "")))

    def _update_approved(self, e: Event) -> None:
        if e.get("step") in self.rows:
            self.rows[e["step"]].notes.append(f"approved by {e['by']} ({e['how']})")

    def _update_would_run(self, e: Event) -> None:
        row = self._row(e["step"])
        lines = str(e["what"]).strip().splitlines() or [""]
        row.status, row.reason = "dry_run", f"would run: {lines[0]}" + (" …" if len(lines) > 1 else "")

    def _update_step_finished(self, e: Event) -> None:
        row = self._row(e["step"])
        row.status = e["status"]
        row.reason = e.get("reason")
        if e.get("duration") is not None:
            row.duration = float(e["duration"])
        elif row.started is not None and row.duration is None:
            row.duration = time.monotonic() - row.started

    def _update_rollback_skipped(self, e: Event) -> None:
        self._row(e["step"]).notes.append(f"rollback skipped: {e['reason']}")

    def _update_criterion(self, e: Event) -> None:
        self.criteria.append((e.get("ok"), str(e["description"])))

    def _finish(self, e: Event) -> None:
        self.pause()
        with self._lock:
            self.done, self.current = True, None
        self.console.print(self._render())
        status = e["status"]
        self.console.print(Text(f"{SYMBOLS.get(status, '•')} run {e['run_id']} {status} in {_clock(e['duration'])}", style=_STYLES.get(status, "bold")))
        for line in e.get("next", []):
            what, _, command = line.partition(": ")
            self.console.print(Text.assemble(f"  {what}: ", (command, "bold")))

    # ------------------------------------------------------------ rendering

    def _render(self) -> RenderableType:
        with self._lock:
            now = time.monotonic()
            # Full width up to a point: on a wide terminal the times stay near the titles.
            table = Table.grid(padding=(0, 1), expand=True)
            table.width = min(self.console.width, 110)
            table.add_column(width=2, no_wrap=True)
            table.add_column(no_wrap=True, style="bold")
            table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
            table.add_column(no_wrap=True, justify="right")
            for row in self.rows.values():
                table.add_row(self._symbol(row), row.step_id, self._title(row), self._timing(row, now))
                for detail in self._details(row):
                    table.add_row("", "", detail, "")
            parts: list[RenderableType] = [table]
            if self.criteria:
                parts.append(Text("success criteria:", style="bold"))
                for ok, description in self.criteria:
                    mark, style = ("☐", "dim") if ok is None else (("☑", "green") if ok else ("☒", "red"))
                    parts.append(Text(f"  {mark} {description}", style=style))
            return Group(*parts)

    def _symbol(self, row: _Row) -> RenderableType:
        if row.status in (RUNNING, CHECKING, ROLLING_BACK) and not self.done:
            return self._spinner
        if row.status == PENDING:
            return Text("·", style="dim")
        symbol = SYMBOLS.get(row.status, "•")
        return Text(symbol, style=_STYLES.get(row.status, ""))

    def _title(self, row: _Row) -> Text:
        # A step without a title is labelled by its id, which the table already shows.
        text = Text(row.title if row.title != row.step_id else "")
        if row.status == RUNNING and row.attempt > 1:
            text.append(f"  attempt {row.attempt}", style="yellow")
        return text

    def _timing(self, row: _Row, now: float) -> Text:
        elapsed = row.elapsed(now)
        estimate = f" / {format_duration(row.estimate)}" if row.estimate else ""
        if elapsed is None:
            return Text(f"–{estimate}", style="dim")
        over = row.estimate is not None and elapsed > row.estimate
        return Text(f"{_clock(elapsed)}{estimate}", style="bold yellow" if over else "")

    def _details(self, row: _Row) -> list[RenderableType]:
        """What is shown under a step: everything while it is current, then only what went wrong."""
        current = row.step_id == self.current and not self.done
        failed = row.status in ("failed", "refused", "interrupted", "awaiting_approval")
        details: list[RenderableType] = []
        if current or failed:
            details += [Text(f"{mark} {text}", style=_CHECK_STYLES.get(mark, "")) for mark, text in row.checks]
        elif row.checks:
            bad = sum(1 for mark, _ in row.checks if mark in ("✘", "!"))
            count = f"{len(row.checks)} check" + ("s" if len(row.checks) != 1 else "")
            details.append(Text(count + (f", {bad} not ok" if bad else " ✔"), style="dim"))
        details += [Text(note, style="dim") for note in row.notes]
        if row.progress and row.status == RUNNING and current:
            details.append(_progress(row.progress))
        elif row.progress and row.status != RUNNING:
            done, rate = int(row.progress.get("done") or 0), float(row.progress.get("rate") or 0)
            details.append(Text(f"{done:,} rows at {rate:,.0f} rows/s", style="dim"))
        if current and row.hosts and row.status in (RUNNING, ROLLING_BACK):
            width = max(len(name) for name in row.hosts)
            details += [Text(f"│ {name:<{width}}  {state}", style="dim", no_wrap=True, overflow="ellipsis") for name, state in row.hosts.items()]
        elif current and row.status in (RUNNING, ROLLING_BACK):
            details += [Text(f"│ {line}", style="dim", no_wrap=True, overflow="ellipsis") for line in row.output]
        # The status in words under the title, where a long title cannot cut it off;
        # wrapped, not cut: a failed gate's observed and expected values are the point.
        if row.status in (CHECKING, ROLLING_BACK):
            details.insert(0, Text("checking preconditions" if row.status == CHECKING else "rolling back", style="yellow"))
        elif row.status not in (PENDING, RUNNING, "passed") or row.reason:
            label = row.status.replace("_", " ")
            line = (row.reason or "") if row.status == "passed" else f"{label}: {row.reason}" if row.reason else label
            details.append(Text(line, style=_STYLES.get(row.status, "dim"), no_wrap=False))
        return details


_CHECK_STYLES = {"✔": "green", "✘": "red", "!": "yellow", "–": "dim"}


def _progress(p: dict[str, Any]) -> RenderableType:
    done, total = int(p.get("done") or 0), int(p.get("total") or 0)
    # The numbers keep their width; the bar takes what is left of the column.
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(ratio=1, min_width=10)
    grid.add_column(no_wrap=True)
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=min(done, total) if total else 0),
        Text(f"{done:,}/{total:,} rows  {float(p.get('rate') or 0):,.0f} rows/s" + _eta(p.get("eta_s"), done >= total)),
    )
    return grid


def _eta(eta: float | None, done: bool) -> str:
    return "" if eta is None or done else f"  ETA {format_duration(max(1, round(eta)))}"


def _clock(seconds: float) -> str:
    """Elapsed time to a tenth of a second, then whole seconds past a minute."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


__all__ = ["LiveReporter", "StepSpec"]
