"""Listeners on engine events: the engine never prints, it emits.

An event is a name and a flat dict of masked, JSON-safe values. The console
reporter turns them into lines an operator reads; the JSON reporter writes
one JSON object per event for CI and log shippers (``--log-format json``),
through structlog so the shape matches the rest of the tool's logging.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO


Event = dict[str, Any]


class Reporter(Protocol):
    def __call__(self, name: str, event: Event) -> None: ...


SYMBOLS = {
    "passed": "✔",
    "failed": "✘",
    "skipped": "↷",
    "refused": "⛔",
    "awaiting_approval": "⏸",
    "interrupted": "⚡",
    "dry_run": "○",
    "rolled_back": "↺",
    "rollback_failed": "✘",
    "abandoned": "⊘",
}


class LineSink(Protocol):
    """Where plain lines go: a text stream, or the live view's printer."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class ConsoleReporter:
    """Plain lines, prefixed by the step id; readable in a terminal and in CI logs."""

    def __init__(self, stream: LineSink | None = None, *, show_output: bool = True) -> None:
        self.stream: LineSink = stream or sys.stdout
        self.show_output = show_output

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, name: str, event: Event) -> None:
        handler = getattr(self, "on_" + name, None)
        if handler is not None:
            handler(event)

    def on_run_started(self, e: Event) -> None:
        mode = " (dry run)" if e.get("dry_run") else ""
        verb = "resuming" if e.get("resumed") else "run"
        self._line(f"▶ {verb} {e['run_id']}: {e['runbook']} (env: {e['env']}){mode}")

    def on_notice(self, e: Event) -> None:
        self._line(f"  {e['message']}")

    def on_step_started(self, e: Event) -> None:
        attempt = f" (attempt {e['attempt']})" if e.get("attempt", 1) > 1 else ""
        self._line(f"→ [{e['step']}] {e['title']}{attempt}")

    def on_output(self, e: Event) -> None:
        if self.show_output:
            self._line(f"  [{e['step']}] {e['line']}")

    def on_check(self, e: Event) -> None:
        if e.get("applicable") is False:
            self._line(f"  [{e['step']}] {e['role']} – {e['name']}: not applicable ({e.get('detail') or 'n/a'})")
            return
        # Imported here: its models (pydantic) would add ~35 ms to `status` and `history`, which only need SYMBOLS.
        from runbook.checks.base import result_text

        mark = "✔" if e["ok"] else ("!" if e.get("on_fail") == "warn" else "✘")
        shown = result_text(e, with_expected=not e["ok"])
        detail = f" ({e['detail']})" if e.get("detail") and not e["ok"] else ""
        self._line(f"  [{e['step']}] {e['role']} {mark} {e['name']}:{' ' + shown if shown else ''}{detail}")

    def on_step_finished(self, e: Event) -> None:
        symbol = SYMBOLS.get(e["status"], "•")
        took = f" in {e['duration']:.1f}s" if e.get("duration") is not None else ""
        reason = f": {e['reason']}" if e.get("reason") else ""
        self._line(f"{symbol} [{e['step']}] {e['status']}{took}{reason}")

    def on_would_run(self, e: Event) -> None:
        self._line(f"○ [{e['step']}] would run: {e['what']}")

    def on_failure_help(self, e: Event) -> None:
        if e.get("tail"):
            self._line(f"  last output of [{e['step']}]:")
            for line in e["tail"]:
                self._line(f"    | {line}")
        for hint in e.get("hints", []):
            self._line(f"  hint ({hint['pattern']}): {hint['advice']}")

    def on_warning(self, e: Event) -> None:
        where = f"[{e['step']}] " if e.get("step") else ""
        self._line(f"  ! {where}{e['message']}")

    def on_notification(self, e: Event) -> None:
        self._line("  ┌─ notification" + (f": {e['title']}" if e.get("title") else ""))
        for line in e["body"].rstrip().splitlines():
            self._line(f"  │ {line}")
        self._line("  └─")

    def on_awaiting_approval(self, e: Event) -> None:
        self._line(f"⏸ [{e['step']}] awaiting approval:")
        for line in e["question"].splitlines():
            self._line(f"    {line}")
        self._line(f"  approve: {e['approve']}")
        self._line(f"  then:    {e['resume']}")

    def on_error(self, e: Event) -> None:
        self._line(f"✘ {e['message']}")

    def on_run_finished(self, e: Event) -> None:
        symbol = SYMBOLS.get(e["status"], "•")
        self._line(f"{symbol} run {e['run_id']} {e['status']} in {e['duration']:.1f}s")
        for line in e.get("next", []):
            self._line(f"  next: {line}")


class JsonReporter:
    """One JSON object per event on ``stream`` (stdout by default), rendered by a
    structlog processor chain: level, ISO timestamp, then JSON."""

    def __init__(self, stream: TextIO | None = None) -> None:
        import structlog

        self.logger = structlog.wrap_logger(
            structlog.PrintLogger(stream or sys.stdout),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(default=str, ensure_ascii=False),
            ],
        )

    def __call__(self, name: str, event: Event) -> None:
        level = log_level(name, event)
        # structlog owns "event" (the event name); a field of that name must not clash with it.
        fields = {("detail_event" if key == "event" else key): value for key, value in event.items()}
        getattr(self.logger, level)(name, **fields)


# Statuses of a step or a run that someone must look at (docs/events.md).
_FAILED = frozenset({"failed", "rollback_failed"})


def log_level(name: str, event: Event) -> str:
    """The level an event is logged at in the JSON log: error for a failure (a step or run
    that failed, the error that stopped a run, the failed step's help), warning for a
    warning or a refusal, info for everything else."""
    status = event.get("status")
    if name in ("error", "failure_help") or (name in ("step_finished", "run_finished") and status in _FAILED):
        return "error"
    if name == "warning" or (name in ("step_finished", "run_finished") and status in ("refused", "interrupted")):
        return "warning"
    return "info"


def fan_out(*reporters: Reporter) -> Callable[[str, Event], None]:
    def emit(name: str, event: Event) -> None:
        for reporter in reporters:
            reporter(name, event)

    return emit
