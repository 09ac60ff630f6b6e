"""``approve``, ``reject``, ``cancel``, ``pause``, ``set`` and the continue of a paused run:
what a teammate does to a run from any machine sharing its state store.

Each records the OS user and host running it (identity.py), never a name the
caller types: ``approve --by`` may name someone else only when the runbook
allows delegation (``approvals: {allow_delegation: true}``). Requests to a
live run go through the ``controls`` table; its process reads them within a
second (engine/control.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runbook import approval_policy, identity
from runbook.errors import ExitCode, Refused, UsageError
from runbook.state import RunRecord, StateStore
from runbook.state.locks import LockRecord, stale_reason
from runbook.status import EventName, RunStatus, StepStatus

Echo = Callable[[str], None]

# What ``runbook set`` may change on a running backfill, and how its value is read.
SETTABLE = ("throttle", "max_batch")


def _open(state_url: str | None) -> StateStore:
    return StateStore.open(state_url, workdir=Path.cwd())


def _record(store: StateStore, run_id: str) -> RunRecord:
    record = store.get_run(run_id)
    if record is None:
        from runbook.commands import no_such_run

        raise no_such_run(store, run_id)
    return record


def live_holder(store: StateStore, record: RunRecord) -> LockRecord | None:
    """The live process holding ``record``'s lock for that very run, if any."""
    holder = store.lock_holder(record.runbook, record.env)
    if holder is None or holder.run_id != record.run_id:
        return None
    return holder if stale_reason(holder, host=store.host, now=store.database_now()) is None else None


# What an approver's plan puts in place of a secret the run was given: the fingerprint
# hashes secrets masked, so any value masked as they are gives the run's fingerprint.
_SECRET_NOT_KNOWN_HERE = "<a secret value of the run, not known to its approver>"


def _run_values(record: RunRecord, loaded: Any) -> dict[str, str]:
    """The values the run resolved its vars to, as --var values: text values as recorded
    (also those it read from its OS environment, which the approver's may not have, or
    differently), a stand-in for each secret (never stored), then its own --var values."""
    from runbook.commands import _replayed_values
    from runbook.engine import values

    params = record.params if isinstance(record.params, dict) else {}
    secrets = {name: _SECRET_NOT_KNOWN_HERE for name, var in loaded.runbook.vars.items() if var.secret and not var.choices}
    known = values.recorded_text(params.get("values"), secrets)
    return {**{k: v for k, v in known.items() if k in loaded.runbook.vars}, **_replayed_values(record, {})}


def _plan_step(record: RunRecord, step_id: str):  # type: ignore[no-untyped-def]
    """The run's plan (its own values) and its step ``step_id``."""
    from runbook.commands import _runbook_of
    from runbook.planner import build_plan

    loaded = _runbook_of(record)
    built = build_plan(loaded, None if record.env == "default" else record.env, _run_values(record, loaded))
    try:
        return built, built.step(step_id)
    except KeyError:
        raise UsageError(f"runbook {record.runbook} has no step {step_id!r}") from None


# ---------------------------------------------------------------- approvals


def _asked_fingerprint(store: StateStore, run_id: str, step_id: str, planned: str) -> str:
    """The fingerprint a decision is given to: the one the run itself recorded when it
    stopped at the step for approval (what it will do, computed with its own values and
    secrets, which the approver's plan may not have: a secret connection URL is part of it),
    else, for a decision given before the run gets there, the approver's plan of the step."""
    asked = [a for a in store.attempts(run_id, step_id) if a.kind == "step" and a.status == "awaiting_approval"]
    return asked[-1].fingerprint if asked else planned


def approve(run_id: str, step_id: str, *, by: str | None, comment: str | None, state_url: str | None, echo: Echo) -> int:
    from runbook.engine.approvals import started_by

    me = identity.current()
    with _open(state_url) as store:
        record = _record(store, run_id)
        if record.finished_at is not None:
            raise UsageError(f"run {run_id} is finished ({record.status}); there is nothing to approve")
        built, planned = _plan_step(record, step_id)
        # The run's own policy (pinned at its start), not this checkout's copy of the runbook.
        pinned = approval_policy.from_pinned((record.params or {}).get("approval"), step_id)
        policy, settings = pinned if pinned is not None else (approval_policy.policy_for(built.runbook, record.env, planned.step), built.runbook.approvals)
        name = by or me.user
        if name != me.user and not settings.allow_delegation:
            raise UsageError(
                f"--by {name}: you are {me.user} on {me.host} (the operating system's user), and an approval is recorded in the name of who gives it",
                hint=f"let {name} run `runbook approve {run_id} {step_id}` as themselves, or allow approving for others in the runbook: approvals: {{allow_delegation: true}}",
            )
        starter = started_by(store, run_id)
        why_not = approval_policy.refusal(policy, settings, name, starter)
        if why_not is not None:
            raise Refused(f"{name} may not approve {step_id!r} of run {run_id}: {why_not}", hint="ask one of the approvers to run `runbook approve`")
        fingerprint = _asked_fingerprint(store, run_id, step_id, planned.fingerprint)
        store.record_approval(run_id, step_id, by=name, comment=comment, fingerprint=fingerprint, os_user=me.user)
        detail = {"by": name, "os_user": me.user, "host": me.host, "comment": comment, "fingerprint": fingerprint}
        store.append_event(run_id, str(EventName.APPROVAL_RECORDED), step_id=step_id, detail=detail)
        standing = approval_policy.standing(
            store.decisions(run_id, step_id), policy=policy, settings=settings, fingerprint=fingerprint, starter=starter
        )
        on_behalf = f" (given by {me.user} on {me.host})" if name != me.user else f" on {me.host}"
        echo(f"approved {step_id} of run {run_id} by {name}{on_behalf} (fingerprint {fingerprint})")
        if standing.missing:
            echo(f"{standing.missing} more approval(s) needed; approved so far by {', '.join(standing.approved_by)}")
        holder = live_holder(store, record)
        if holder is not None:
            echo(f"the run is waiting in process {holder.pid} on {holder.host}; it goes on by itself once its approvals are in")
        else:
            env_flag = f" --env {record.env}" if record.env != "default" else ""
            echo(f"continue with: runbook run {Path(record.path).name}{env_flag} --resume")
    return ExitCode.OK


def reject(run_id: str, step_id: str, *, reason: str, state_url: str | None, echo: Echo) -> int:
    """A recorded no: a run waiting for the step fails (exit 1); it resumes only after a new approval.
    Anyone may reject: stopping a change is always safe."""
    if not reason.strip():
        raise UsageError("--reason must say why the step is rejected (it is recorded)")
    me = identity.current()
    with _open(state_url) as store:
        record = _record(store, run_id)
        if record.finished_at is not None:
            raise UsageError(f"run {run_id} is finished ({record.status}); there is nothing to reject")
        _built, planned = _plan_step(record, step_id)
        fingerprint = _asked_fingerprint(store, run_id, step_id, planned.fingerprint)
        store.record_approval(run_id, step_id, by=me.user, comment=reason, fingerprint=fingerprint, os_user=me.user, decision=approval_policy.REJECTED)
        store.append_event(run_id, str(EventName.REJECTED), step_id=step_id, detail={"by": me.user, "host": me.host, "reason": reason})
        holder = live_holder(store, record)
        if holder is None and record.status == RunStatus.AWAITING_APPROVAL:
            store.set_run_status(run_id, str(RunStatus.FAILED))
        echo(f"rejected {step_id} of run {run_id} by {me.user} on {me.host}: {reason}")
        if holder is not None:
            echo(f"the run waiting in process {holder.pid} on {holder.host} fails when it reads this (within a second)")
        echo(f"it resumes only after a new approval: runbook approve {run_id} {step_id}")
    return ExitCode.OK


# ---------------------------------------------------------------- live control


def _live(store: StateStore, run_id: str, what: str) -> tuple[RunRecord, LockRecord]:
    record = _record(store, run_id)
    holder = live_holder(store, record)
    if holder is None:
        hint = None
        if record.finished_at is None:
            hint = f"it stays as it is; continue it with `runbook run --resume {run_id}`, or give up on it: runbook abandon {run_id} --reason TEXT"
        raise Refused(f"run {run_id} is not running now ({record.status}): there is no process to {what}", hint=hint)
    return record, holder


def _request(store: StateStore, run_id: str, action: str, *, step_id: str | None = None, params: dict[str, Any] | None = None) -> str:
    me = identity.current()
    store.request_control(run_id, action, by=str(me), step_id=step_id, params=params)
    detail = {"action": action, "by": me.user, "host": me.host, **({"values": params} if params else {})}
    store.append_event(run_id, str(EventName.CONTROL_REQUESTED), step_id=step_id, detail=detail)
    return str(me)


def cancel(run_id: str, *, state_url: str | None, echo: Echo) -> int:
    with _open(state_url) as store:
        _record_, holder = _live(store, run_id, "cancel")
        by = _request(store, run_id, "cancel")
    echo(f"asked process {holder.pid} on {holder.host} to cancel run {run_id} ({by}); it stops its step within 2 s and exits 130")
    echo(f"the run stays resumable: runbook run --resume {run_id}")
    return ExitCode.OK


def pause(run_id: str, *, state_url: str | None, echo: Echo) -> int:
    with _open(state_url) as store:
        record, holder = _live(store, run_id, "pause")
        if record.status == RunStatus.PAUSED:
            raise UsageError(f"run {run_id} is already paused", hint=f"continue it: runbook run --resume {run_id}")
        by = _request(store, run_id, "pause")
    echo(f"asked process {holder.pid} on {holder.host} to pause run {run_id} ({by}) at its next safe point (between steps or backfill batches)")
    echo(f"it keeps its lock while paused; continue it from any machine: runbook run --resume {run_id}")
    return ExitCode.OK


def continue_paused(store: StateStore, record: RunRecord, echo: Echo) -> bool:
    """``run --resume`` of a run paused in a live process: ask that process to go on. False
    when no live process holds it (the resume then continues the run itself)."""
    holder = live_holder(store, record)
    if holder is None:
        return False
    by = _request(store, record.run_id, "continue")
    echo(f"run {record.run_id} is paused in process {holder.pid} on {holder.host}; asked it to continue ({by})")
    return True


def set_values(run_id: str, step_id: str, assignments: Sequence[str], *, state_url: str | None, echo: Echo) -> int:
    values = _parse_settings(assignments)
    with _open(state_url) as store:
        record, holder = _live(store, run_id, "change")
        _built, planned = _plan_step(record, step_id)
        if planned.step.kind != "backfill":
            raise UsageError(f"step {step_id!r} is a {planned.step.kind} step; only a running backfill takes new {' and '.join(SETTABLE)}")
        attempts = [a for a in store.attempts(run_id, step_id) if a.kind == "step"]
        if not attempts or attempts[-1].status != StepStatus.RUNNING:
            state = attempts[-1].status if attempts else "not started"
            raise UsageError(f"step {step_id!r} of run {run_id} is not running ({state}); set changes a backfill while it runs")
        min_batch = getattr(planned.body.params, "min_batch", 1)
        if values.get("max_batch", min_batch) < min_batch:
            raise UsageError(f"max_batch={values['max_batch']} is below the step's min_batch ({min_batch})")
        by = _request(store, run_id, "set", step_id=step_id, params=values)
    shown = ", ".join(f"{k}={v}" for k, v in zip(values, _shown(values), strict=True))
    echo(f"asked process {holder.pid} on {holder.host} to set {shown} on {step_id} ({by}); it applies them after its current batch")
    return ExitCode.OK


def _parse_settings(assignments: Sequence[str]) -> dict[str, Any]:
    from runbook.model import parse_duration

    if not assignments:
        raise UsageError(f"nothing to set; give KEY=VALUE, KEY one of {', '.join(SETTABLE)} (e.g. throttle=200ms max_batch=500)")
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or key not in SETTABLE:
            raise UsageError(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(SETTABLE)}")
        try:
            if key == "throttle":
                values[key] = parse_duration(raw)
            else:
                values[key] = int(raw)
                if values[key] < 1:
                    raise ValueError("must be at least 1")
        except ValueError as err:
            raise UsageError(f"{item!r}: {err}") from None
    return values


def _shown(values: dict[str, Any]) -> list[str]:
    return [f"{round(v * 1000)}ms" if k == "throttle" else str(v) for k, v in values.items()]
