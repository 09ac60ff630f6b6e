"""``runbook logs RUN [STEP] [--attempt N] [--follow] [--format json]``.

Reads only the state store (``step_logs``, engine/steplog.py), so it works on
any machine and in any directory sharing the store, whoever ran the step.
``--follow`` polls for chunks committed after the last one printed and stops
once the run (or the attempt asked for) has ended and everything it stored
was printed; a run whose process died without recording its end (SIGKILL)
counts as ended, judged like ``status`` judges it (state/liveness.py).

Text: a ``==> STEP attempt N <==`` line (``rollback attempt N`` for a rollback)
before each attempt's lines. JSON: one
object per chunk and line of output (JSON Lines), see docs/machine-output.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from runbook.errors import ExitCode, UsageError
from runbook.render.machine import FORMAT_VERSION, iso

if TYPE_CHECKING:
    from runbook.state import AttemptRecord, LogChunk, RunRecord, StateStore

# Lines of a failed step's output that status, show and report print.
TAIL_LINES = 5
# How often --follow asks the store for new chunks: well inside the 1 s a line may take.
POLL_INTERVAL_S = 0.2


class _Printer:
    """Prints chunks as text or JSON lines, remembering the last attempt headed and chunk printed."""

    def __init__(self, store: StateStore, run_id: str, fmt: str, echo: Callable[[str], None]) -> None:
        self.store, self.run_id = store, run_id
        self.fmt, self.echo = fmt, echo
        self.last_id = 0
        self._heading: tuple[str, int] | None = None
        self._kinds: dict[tuple[str, int], str] = {}

    def chunks(self, found: list[LogChunk]) -> None:
        for chunk in found:
            self.last_id = chunk.id
            kind = self._kind(chunk)
            if self.fmt == "json":
                self.echo(json.dumps(_chunk_json(chunk, kind), ensure_ascii=False))
                continue
            if (chunk.step_id, chunk.attempt) != self._heading:
                self._heading = (chunk.step_id, chunk.attempt)
                what = "rollback attempt" if kind == "rollback" else "attempt"
                self.echo(f"==> {chunk.step_id} {what} {chunk.attempt} <==")
            self.echo(chunk.text)

    def _kind(self, chunk: LogChunk) -> str:
        """``step`` or ``rollback``: the attempts are read again when one is new."""
        key = (chunk.step_id, chunk.attempt)
        if key not in self._kinds:
            self._kinds = {(a.step_id, a.attempt): a.kind for a in self.store.attempts(self.run_id)}
        return self._kinds.get(key, "step")


def _chunk_json(chunk: LogChunk, kind: str) -> dict[str, object]:
    return {
        "format": FORMAT_VERSION,
        "run_id": chunk.run_id,
        "step": chunk.step_id,
        "attempt": chunk.attempt,
        "kind": kind,
        "seq": chunk.seq,
        "stream": chunk.stream,
        "at": iso(chunk.at),
        "lines": chunk.text.split("\n"),
    }


def logs(
    store: StateStore,
    record: RunRecord,
    *,
    step_id: str | None = None,
    attempt: int | None = None,
    follow: bool = False,
    fmt: str = "text",
    echo: Callable[[str], None],
    warn: Callable[[str], None],
    poll: float = POLL_INTERVAL_S,
) -> int:
    _check_selection(store, record, step_id, attempt, follow)
    printer = _Printer(store, record.run_id, fmt, echo)
    printer.chunks(store.log_chunks(record.run_id, step_id=step_id, attempt=attempt))
    while follow:
        ended = _ended(store, record.run_id, step_id, attempt)
        printer.chunks(store.log_chunks(record.run_id, step_id=step_id, attempt=attempt, after=printer.last_id))
        if ended:
            break
        time.sleep(poll)
    if printer.last_id == 0:
        warn(_nothing_stored(store, record, step_id, attempt))
    return ExitCode.OK


def _check_selection(store: StateStore, record: RunRecord, step_id: str | None, attempt: int | None, follow: bool) -> None:
    if attempt is not None and step_id is None:
        raise UsageError("--attempt needs a STEP: attempts are numbered per step", hint=f"runbook logs {record.run_id} STEP --attempt {attempt}")
    if step_id is None or follow:
        return  # a step may not have started yet when following
    attempts = store.attempts(record.run_id, step_id)
    if not attempts:
        known = sorted({a.step_id for a in store.attempts(record.run_id)})
        raise UsageError(f"run {record.run_id} has no attempt of step {step_id!r}", hint="its steps so far: " + (", ".join(known) or "none"))
    if attempt is not None and attempt not in {a.attempt for a in attempts}:
        raise UsageError(f"step {step_id} of run {record.run_id} has no attempt {attempt}", hint=f"it has attempts 1 to {attempts[-1].attempt}")


def _ended(store: StateStore, run_id: str, step_id: str | None, attempt: int | None) -> bool:
    """Whether nothing more will be stored for the selection: the attempt finished, or the run
    stopped (or its process is gone). Asked before reading chunks, so none committed before it is missed."""
    from runbook.state.liveness import observe

    if attempt is not None:
        found = [a for a in store.attempts(run_id, step_id) if a.attempt == attempt]
        if found and found[0].finished_at is not None:
            return True
    record = store.get_run(run_id)
    if record is None or record.status != "running":
        return True
    _, shown = observe(store, record)
    return shown is not None and shown.status != "running"


def _nothing_stored(store: StateStore, record: RunRecord, step_id: str | None, attempt: int | None) -> str:
    what = f"step {step_id}" + (f" attempt {attempt}" if attempt else "") if step_id else "any step"
    local = [a for a in store.attempts(record.run_id, step_id) if a.log_path and (attempt is None or a.attempt == attempt)]
    where = f"; its local log was {local[-1].log_path} on {local[-1].host}" if local else ""
    return f"no output of {what} of run {record.run_id} is in the state store{where}"


def failed_tails(store: StateStore, run_id: str, attempts: Sequence[AttemptRecord]) -> dict[str, list[str]]:
    """The last stored lines of each step whose latest attempt failed, for ``status``, ``show`` and
    ``report``: read from the store, so they show on any machine, whoever ran the step."""
    from runbook.state.logs import tail

    latest = {a.step_id: a for a in attempts}
    return {
        step_id: tail(store.log_chunks(run_id, step_id=step_id, attempt=a.attempt), TAIL_LINES)
        for step_id, a in latest.items()
        if a.status in ("failed", "rollback_failed")
    }
