"""A fleet step (``on:``) host by host: batches, parallelism, per-host records, the summary.

Called by the engine for the body of a step that has ``on:`` (its attempt, retries, gates
and journal stay the engine's). Each host's attempt is recorded in the state store
(``host_attempts``) before its command starts and when it ends. A host whose latest attempt
of this step passed in this run is never run again (a resume, a retry); a rollback runs on
the hosts that passed, newest batch first. Under ``--dry-run`` a step with ``dry_run: safe``
(or a dry-run body) runs on its hosts like any other, as it does locally; any other only
lists what each host would run (``would_run_on_hosts``). Workers only run ssh; every record, log line and
event is written here, on the main thread.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from runbook.fleet.batches import batches, too_many_failures
from runbook.fleet.context import fleet_of
from runbook.fleet.hostrun import HostResult, Messages, run_on_host
from runbook.fleet.inventory import Host
from runbook.model import StepBody
from runbook.planner import render_body
from runbook.state.hosts import HostEnd, passed_hosts
from runbook.steps import StepContext, StepOutcome
from runbook.templating import TemplateFailed

if TYPE_CHECKING:
    from runbook.engine.step import StepRunner
    from runbook.planner import PlannedStep

_POLL = 0.05
MAX_STDOUT_PER_HOST = 4096


def source_body(planned: PlannedStep, mode: str) -> StepBody:
    """The unrendered body a mode runs (it is rendered again for each host, with ``host``)."""
    step = planned.step
    if mode == "rollback" and step.rollback is not None:
        return step.rollback
    if mode == "dry_run" and isinstance(step.dry_run, StepBody):
        return step.dry_run
    return StepBody(kind=step.kind, title=step.title, timeout=step.timeout, params=step.params)


def run_on_fleet(runner: StepRunner, planned: PlannedStep, ctx: StepContext, mode: str) -> StepOutcome:
    step = planned.step
    assert step.on is not None
    fleet = fleet_of(runner.renderer.plan)
    hosts = fleet.hosts(step.on, f"steps.{step.id}.on")
    store, run_id = runner.journal.store, runner.journal.run_id
    previous = store.host_attempts(run_id, ctx.step_id)
    # We hold the environment's lock: the process that started these is gone (killed mid-step).
    left = [a for a in previous if a.status == "running"]
    if left:
        why = "left running by a runbook process that ended"
        store.finish_host_attempts(run_id, ctx.step_id, [HostEnd(a.host, a.attempt, "interrupted", None, why) for a in left])
    kind = "rollback" if mode == "rollback" else "step"
    if mode == "rollback":
        passed = passed_hosts(previous, "step")
        undone = passed_hosts(previous, "rollback")
        todo = [h for h in hosts if h.name in passed and h.name not in undone]
        # Newest batch first: the hosts changed last are undone first.
        numbers = sorted({passed[h.name].batch for h in todo}, reverse=True)
        groups = [[h for h in todo if passed[h.name].batch == n] for n in numbers]
    else:
        done = passed_hosts(previous, "step")
        for name in done:
            ctx.output(f"{name}| passed earlier in this run; not run again")
        todo = [h for h in hosts if h.name not in done]
        groups = batches(todo, step.serial, len(hosts))
    first_batch = max((a.batch for a in previous), default=0) + 1
    results: dict[str, HostResult] = {}
    stopped = None
    for offset, group in enumerate(groups):
        batch_no = first_batch + offset
        ctx.output(f"batch {offset + 1} of {len(groups)}: {', '.join(h.name for h in group)}")
        batch_results = _run_batch(runner, planned, ctx, mode, kind, group, batch_no)
        results.update(batch_results)
        if any(r.status == "interrupted" for r in batch_results.values()) or runner.supervisor.stop_requested:
            stopped = "interrupted"
            break
        failed = sum(1 for r in batch_results.values() if not r.ok)
        if mode != "rollback" and too_many_failures(failed, len(group), step.max_fail):
            if offset + 1 < len(groups):
                stopped = f"batch {offset + 1} had {failed} failed host(s), more than max_fail {step.max_fail}: later batches not started"
            break
    for line in summary_table(results):
        ctx.output(line)
    return _outcome(results, stopped, todo)


def would_run_on_hosts(runner: StepRunner, planned: PlannedStep) -> str:
    """What a dry run shows for a fleet step it does not run: each host's rendered command."""
    hosts = fleet_of(runner.renderer.plan).hosts(planned.step.on or [], f"steps.{planned.id}.on")
    lines = [f"on {len(hosts)} host(s):"]
    for host in hosts:
        try:
            lines.append(f"{host.name}| {_render(runner, planned, 'step', host).description}")
        except TemplateFailed as err:
            lines.append(f"{host.name}| cannot be rendered: {err.message}")
    return "\n".join(lines)


def _render(runner: StepRunner, planned: PlannedStep, mode: str, host: Host) -> Any:
    context = {**runner.renderer.context(pending=planned.id), "host": host.template_value()}
    where = f"steps[{planned.index}] ({planned.id}) on {host.name}"
    return render_body(source_body(planned, mode), context, where, runner.renderer.plan.resolved.masker)


def _run_batch(runner: StepRunner, planned: PlannedStep, ctx: StepContext, mode: str, kind: str, group: list[Host], batch_no: int) -> dict[str, HostResult]:
    fleet = fleet_of(runner.renderer.plan)
    store, run_id = runner.journal.store, runner.journal.run_id
    parallel = planned.step.parallel or len(group)
    messages: Messages = queue.Queue()
    results: dict[str, HostResult] = {}
    attempts: dict[str, int] = {}
    waiting = list(group)
    running: dict[str, Future[HostResult]] = {}
    with ThreadPoolExecutor(max_workers=min(parallel, len(group)), thread_name_prefix="fleet") as pool:
        while waiting or running:
            starting: list[tuple[Host, Any]] = []
            while waiting and len(running) + len(starting) < parallel and not runner.supervisor.stop_requested:
                host = waiting.pop(0)
                try:
                    starting.append((host, _render(runner, planned, mode, host)))
                except TemplateFailed as err:
                    results[host.name] = HostResult(host.name, "failed", error=err.message)
            if starting:
                # Journalled before they start, together: after a kill -9 these hosts read 'running' and run again.
                attempts.update(store.start_host_attempts(run_id, ctx.step_id, [host.name for host, _ in starting], kind=kind, batch=batch_no))
                for host, body in starting:
                    params = body.params
                    running[host.name] = pool.submit(
                        _run_and_tell, messages, fleet.transport, host, params.run, cwd=params.cwd, env=params.env,
                        timeout=body.timeout or ctx.timeout, supervisor=runner.supervisor, mask=runner.journal.masker.mask, messages=messages,
                    )  # fmt: skip
                for host, _ in starting:
                    ctx.output(f"{host.name}| started")
                ctx.progress({"hosts": {host.name: f"running (batch {batch_no})" for host, _ in starting}})
            if runner.supervisor.stop_requested:
                for host in waiting:
                    results[host.name] = HostResult(host.name, "interrupted", error="not started: interrupted")
                waiting.clear()
            _relay(messages, ctx, runner, wait=bool(running))
            ended = [name for name, future in running.items() if future.done()]
            for name in ended:
                results[name] = running.pop(name).result()
            if ended:
                _record(runner, ctx, [(attempts[name], results[name]) for name in ended])
        _relay(messages, ctx, runner, wait=False)
    return results


def _run_and_tell(done: Messages, *args: Any, **kwargs: Any) -> HostResult:
    """run_on_host, then a word on the queue: the main thread wakes for it at once."""
    try:
        return run_on_host(*args, **kwargs)
    finally:
        done.put(("ended", "", None))


def _relay(messages: Messages, ctx: StepContext, runner: StepRunner, *, wait: bool) -> None:
    """Journal what the workers reported, waiting a little for the first message."""
    for kind, host, value in _drain(messages, _POLL if wait else 0.0):
        if kind == "line":
            ctx.output(f"{host}| {value}")
            ctx.progress({"hosts": {host: f"running: {value}"}})
        elif kind == "pgid":
            ctx.on_process_start(int(str(value)))


def _drain(messages: Messages, wait: float) -> Iterator[tuple[str, str, object]]:
    try:
        yield messages.get(timeout=wait) if wait else messages.get_nowait()
    except queue.Empty:
        return
    while True:
        try:
            yield messages.get_nowait()
        except queue.Empty:
            return


def _record(runner: StepRunner, ctx: StepContext, ended: list[tuple[int, HostResult]]) -> None:
    ends = []
    for attempt, result in ended:
        status = {"passed": "passed", "interrupted": "interrupted"}.get(result.status, "failed")
        error = result.error if result.status == "failed" or result.ok else f"{result.status}: {result.error}"
        ends.append(HostEnd(result.host, attempt, status, result.exit_code, runner.journal.masker.mask(error) if error else None))
    runner.journal.store.finish_host_attempts(runner.journal.run_id, ctx.step_id, ends)
    lines = {}
    for _, result in ended:
        line = f"{result.status}" + (f": {result.error}" if result.error and not result.ok else "") + f" ({result.duration:.2f}s)"
        ctx.output(f"{result.host}| {line}")
        lines[result.host] = line
    ctx.progress({"hosts": lines})


def summary_table(results: dict[str, HostResult]) -> list[str]:
    if not results:
        return []
    width = max(len("host"), *(len(name) for name in results))
    lines = [f"{'host':<{width}}  {'status':<11}  {'duration':>8}  exit"]
    for name, result in results.items():
        code = "-" if result.exit_code is None else str(result.exit_code)
        lines.append(f"{name:<{width}}  {result.status:<11}  {result.duration:>7.2f}s  {code}")
    return lines


def _outcome(results: dict[str, HostResult], stopped: str | None, todo: list[Host]) -> StepOutcome:
    hosts = {
        name: {"status": r.status, "exit_code": r.exit_code, "duration": round(r.duration, 3), "stdout": "\n".join(r.lines)[-MAX_STDOUT_PER_HOST:]}
        for name, r in results.items()
    }
    failed = [name for name, r in results.items() if not r.ok]
    not_started = [h.name for h in todo if h.name not in results]
    outputs: dict[str, Any] = {"hosts": hosts, "failed_hosts": failed, "not_started": not_started}
    tail = [f"{name}: {results[name].error}" for name in failed][-20:]
    if stopped == "interrupted":
        return StepOutcome(False, outputs, "interrupted", tail, interrupted=True)
    if failed or not_started:
        why = f"{len(failed)} of {len(todo)} host(s) failed ({', '.join(failed)})" if failed else ""
        if stopped:
            why = f"{why}; {stopped}" if why else stopped
        return StepOutcome(False, outputs, why or f"{len(not_started)} host(s) not started", tail)
    return StepOutcome(True, outputs, summary=f"passed on {len(results)} host(s)" if results else "every host passed earlier")
