"""``--log-format json``: the engine's events as a structured log, through structlog.

One JSON object per line on stdout, for CI and log shippers. The chain is
structlog's, each link a plain callable (structlog's processor contract)::

    bound context (run_id; step and attempt while a step runs)
    -> MaskSecrets       every value, whatever path the event took to get here
    -> add_level         error for a failure, warning for a refusal or a warning
    -> TimeStamper       ISO 8601, UTC
    -> JSONRenderer

The default ``--log-format console`` (the operator's lines, or the live view
on a terminal) does not come through here: those are lines for a person,
written by reporting.py, and importing structlog (236 modules: asyncio,
logging, its console renderer's dependencies) would slow the start of every
run for nothing. ``runbook plan`` and a console run never import this module.

Event names (``event``) are those of ``runbook.status.EventName``; the line's
shape, levels and names are documented in docs/ci.md ("The JSON log").
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from runbook.masking import Masker
from runbook.reporting import Event

EventDict = MutableMapping[str, Any]

# A run or step that ended this way is an error in the log; these a warning.
_ERROR_STATUSES = frozenset({"failed", "rollback_failed"})
_WARNING_STATUSES = frozenset({"refused", "interrupted"})
_ERROR_EVENTS = frozenset({"error", "failure_help"})
_WARNING_EVENTS = frozenset({"warning", "leftover_stopped"})


def level_of(name: str, fields: EventDict) -> str:
    """The log level of an engine event: a failed step, a failed run and their help are errors."""
    if name in _ERROR_EVENTS:
        return "error"
    if name in _WARNING_EVENTS:
        return "warning"
    status = fields.get("status")
    if name in ("step_finished", "run_finished") and status in _ERROR_STATUSES:
        return "error"
    if name in ("step_finished", "run_finished") and status in _WARNING_STATUSES:
        return "warning"
    if name == "check" and fields.get("ok") is False and fields.get("on_fail") != "warn":
        return "warning"
    return "info"


def add_level(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: ``level`` from what the event says, not from the method that logged it."""
    event_dict["level"] = level_of(str(event_dict.get("event")), event_dict)
    return event_dict


class MaskSecrets:
    """Processor: every value of the event through the run's masker. The journal masks what it
    records and emits already; this makes the log safe on its own, whoever logs to it."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        masked = self.masker.mask_data(dict(event_dict))
        assert isinstance(masked, dict)
        return masked


class JsonLog:
    """A reporter (``__call__(name, event)``) writing the structured log. It binds ``run_id``
    when the run starts, and ``step`` and ``attempt`` while a step (or a rollback step) runs,
    so its output lines, checks and failure help carry the attempt they belong to."""

    def __init__(self, stream: TextIO | None = None, *, masker: Masker | None = None) -> None:
        self.run_log = structlog.wrap_logger(
            structlog.PrintLogger(stream or sys.stdout),
            processors=[
                MaskSecrets(masker or Masker()),
                add_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(default=str, ensure_ascii=False),
            ],
        )
        self.step_log: Any = None
        self.step_id: str | None = None

    def __call__(self, name: str, event: Event) -> None:
        # structlog owns "event" (the event name); a field of that name must not clash with it.
        fields = {("detail_event" if key == "event" else key): value for key, value in event.items()}
        if name == "run_started":
            self.run_log = self.run_log.bind(run_id=fields.pop("run_id", None))
        elif name in ("step_started", "rollback_step_started"):
            self.step_id = fields.get("step")
            self.step_log = self.run_log.bind(step=self.step_id, attempt=fields.get("attempt"))
        # The binding lasts until the next step starts: the failure help after a step_finished
        # still belongs to that attempt. An event of another step (a rollback's) names its own.
        logger = self.step_log if self.step_log is not None and fields.get("step") == self.step_id else self.run_log
        for key in structlog.get_context(logger):  # a bound value is written once, by the binding
            fields.pop(key, None)
        logger.msg(name, **fields)
