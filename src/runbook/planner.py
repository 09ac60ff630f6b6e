"""Planning: resolve vars for an environment and render each step's definition.

The same functions serve ``runbook plan`` (step outputs unknown, shown as
``<steps.x.outputs.y>``) and the engine (real outputs, rendered just before
a step runs). Nothing here executes anything or opens a connection.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from runbook.checks import get_check_kind
from runbook.datatree import strings
from runbook.errors import RunbookError, UsageError
from runbook.fingerprint import fingerprint
from runbook.loader import LoadedRunbook
from runbook.masking import Masker, SecretText, url_password
from runbook.model import Check, Estimate, Runbook, Step, StepBody
from runbook.steps import get_step_kind
from runbook.templating import EnvNamespace, Namespace, Placeholder, TemplateFailed, analyze, evaluate, render, render_data

DEFAULT_ENV = "default"


class InvalidVars(RunbookError):
    """A var is missing, unknown or not one of its choices."""


@dataclass
class Resolved:
    """Vars resolved for one environment, and the masker that hides the secret ones."""

    env: str
    vars: dict[str, Any]
    masker: Masker
    secret_vars: frozenset[str]


def parse_var_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["k=v", ...]`` from ``--var`` into a dict."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--var {item!r} is not of the form NAME=VALUE")
        out[key.strip()] = value
    return out


def resolve_vars(
    runbook: Runbook, env: str | None, overrides: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> Resolved:
    environ = os.environ if environ is None else environ
    env_name = env or DEFAULT_ENV
    if env and runbook.environments and env not in runbook.environments:
        close = difflib.get_close_matches(env, list(runbook.environments), n=1)
        raise UsageError(
            f"runbook {runbook.name!r} has no environment {env!r} (it has: {', '.join(runbook.environments)})"
            + (f"; did you mean {close[0]!r}?" if close else "")
        )
    for name in overrides:
        if name not in runbook.vars:
            close = difflib.get_close_matches(name, list(runbook.vars), n=1)
            raise InvalidVars(
                f"--var {name}: runbook {runbook.name!r} declares no var {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                hint=f"its vars: {', '.join(runbook.vars)}" if runbook.vars else "it declares no vars: add one under vars: to set it",
            )
    env_overrides = runbook.environments[env].vars if env and env in runbook.environments else {}
    masker = Masker()
    values: dict[str, Any] = {}
    secret_names = frozenset(n for n, v in runbook.vars.items() if v.secret)
    context: dict[str, Any] = {"vars": Namespace("vars", values), "env": EnvNamespace(environ, lenient=False), "environment": env_name}
    for name, var in runbook.vars.items():
        if name in overrides:
            value: Any = overrides[name]
        elif var.env and var.env in environ:
            value = environ[var.env]
        elif name in env_overrides:
            value = env_overrides[name]
        else:
            value = var.default
        from_file = name not in overrides and not (var.env and var.env in environ)
        if isinstance(value, str) and from_file:
            # Only the runbook's own values are templates; a value given on the command line
            # or in the environment is data, never code that could read other (secret) vars.
            value = render(value, context, f"vars.{name}")
        if value is None and var.required:
            how = f"set {var.env} in the environment or pass" if var.env else "pass"
            raise InvalidVars(f"var {name!r} is required{': ' + var.description if var.description else ''}", hint=f"{how} --var {name}=VALUE")
        if isinstance(value, str) and not var.secret:
            # A URL's password is a secret wherever the URL came from (a plain var, --var, a var
            # file, an environment's value): shown alone (a template's split, a tool's echo) it is masked too.
            masker.add(url_password(value))
        if var.secret and value is not None:
            masker.add(str(value))
            value = _secret(value, masker)
        if var.choices is not None and value not in var.choices and str(value) not in [str(c) for c in var.choices]:
            raise InvalidVars(masker.mask(f"var {name!r} is {value!r}, not one of {var.choices}"))
        values[name] = value
    return Resolved(env_name, values, masker, secret_names)


def _secret(value: Any, masker: Masker) -> Any:
    """A secret var's value as templates see it: every string in it (a mapping's values, a
    list's items, at any depth: ``{{ vars.creds.password }}``) registered with ``masker``
    and a SecretText, so that templates which transform it (| upper, [::-1]) register what
    they derive; numbers are registered as written. A mapping's keys are names, not secrets."""
    if isinstance(value, str):
        masker.add(value)
        return SecretText(value, (masker,))
    if isinstance(value, dict):
        return {key: _secret(item, masker) for key, item in value.items()}
    if isinstance(value, list):
        return [_secret(item, masker) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        masker.add(str(value))
    return value


def template_context(
    loaded: LoadedRunbook, resolved: Resolved, *, step_results: Mapping[str, Any] | None = None, run_id: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """The names templates see. Without ``step_results`` (planning), step outputs are placeholders."""
    runbook = loaded.runbook
    steps: Any = Placeholder("steps") if step_results is None else Namespace("steps", step_results)
    return {
        "vars": Namespace("vars", resolved.vars),
        "env": EnvNamespace(os.environ, lenient=step_results is None),
        "steps": steps,
        "environment": resolved.env,
        "runbook": {"name": runbook.name, "path": str(loaded.path), "version": runbook.metadata.version},
        "run": {"id": run_id or "<run id>", "dry_run": dry_run},
        # A fleet step's host (runbook.fleet): given for real as each host's command is rendered.
        "host": Placeholder("host"),
    }


@dataclass
class RenderedBody:
    kind: str
    params: Any  # the kind's Params instance (or a raw dict when it holds run-time placeholders)
    description: str
    title: str | None = None
    timeout: float | None = None


@dataclass
class RenderedCheck:
    check: Check
    params: Any
    description: str
    label: str


@dataclass
class PlannedStep:
    step: Step
    index: int
    title: str
    body: RenderedBody
    preconditions: list[RenderedCheck]
    gates: list[RenderedCheck]
    confirm: str | None
    rollback: RenderedBody | None
    dry_run: str | RenderedBody | None
    fingerprint: str
    needs_confirmation: bool
    # ``when:`` read only values known before the run (vars, environment) and is false:
    # the run will skip the step. False also when it cannot be known yet.
    skipped_by_when: bool = False

    @property
    def id(self) -> str:
        return self.step.id

    @classmethod
    def placeholder(cls, step: Step, index: int) -> PlannedStep:
        """An unrendered stand-in, for code paths that render the step themselves."""
        body = RenderedBody(step.kind, None, "")
        return cls(step, index, step.label, body, [], [], None, None, None, "", False)

    @property
    def estimate(self) -> Estimate | None:
        return self.step.estimate


@dataclass
class Plan:
    loaded: LoadedRunbook
    resolved: Resolved
    steps: list[PlannedStep]
    estimate_low: float = 0.0
    estimate_high: float = 0.0

    @property
    def runbook(self) -> Runbook:
        return self.loaded.runbook

    @property
    def env(self) -> str:
        return self.resolved.env

    def step(self, step_id: str) -> PlannedStep:
        for planned in self.steps:
            if planned.id == step_id:
                return planned
        raise KeyError(step_id)


def build_plan(loaded: LoadedRunbook, env: str | None = None, overrides: Mapping[str, str] | None = None) -> Plan:
    resolved = resolve_vars(loaded.runbook, env, overrides or {})
    context = template_context(loaded, resolved)
    try:
        connections = loaded.runbook.connections
        steps = [
            plan_step(step, i, context, resolved.masker, fingerprint(step, context, resolved.masker, connections))
            for i, step in enumerate(loaded.runbook.steps)
        ]
    except RunbookError as err:
        # Rendering errors quote the rendered value, which may be a secret.
        err.message = resolved.masker.mask(err.message)
        raise
    for planned in steps:
        planned.skipped_by_when = _false_before_the_run(planned.step, context)
    low = sum(s.estimate.low for s in steps if s.estimate and not s.skipped_by_when)
    high = sum(s.estimate.high for s in steps if s.estimate and not s.skipped_by_when)
    plan = Plan(loaded, resolved, steps, low, high)
    if any(s.on is not None for s in loaded.runbook.steps):
        from runbook.fleet.validate import resolve_hosts

        # The inventory is read and every step's ``on:`` resolved now: a wrong name is exit 2 before anything runs.
        resolve_hosts(plan)
    return plan


# What a ``when:`` may read to be decided at plan time: values fixed before the run starts.
_KNOWN_BEFORE_THE_RUN = frozenset({"vars", "environment", "runbook"})


def _false_before_the_run(step: Step, context: Mapping[str, Any]) -> bool:
    """Whether the step's ``when:`` is false on values known before the run (so the run skips it)."""
    if not step.when:
        return False
    try:
        if any(ref.parts[0] not in _KNOWN_BEFORE_THE_RUN for ref in analyze(step.when, expression=True).references):
            return False
        return not evaluate(step.when, context, f"{step.id}.when")
    except RunbookError:
        return False


def plan_step(step: Step, index: int, context: Mapping[str, Any], masker: Masker, fingerprint: str) -> PlannedStep:
    """Render one step against ``context``; also used by the engine just before it runs
    (with the plan's ``fingerprint``: the definition it was approved and recorded as)."""
    where = f"steps[{index}] ({step.id})"
    kind = get_step_kind(step.kind)
    body = render_body(StepBody(kind=step.kind, title=step.title, timeout=step.timeout, params=step.params), context, where, masker)
    dry_run: str | RenderedBody | None
    if isinstance(step.dry_run, StepBody):
        dry_run = render_body(step.dry_run, context, f"{where}.dry_run", masker)
    else:
        dry_run = step.dry_run
    return PlannedStep(
        step=step,
        index=index,
        title=render(step.title, context, f"{where}.title") if step.title else step.id,
        body=body,
        preconditions=[render_check(c, context, f"{where}.preconditions[{i}]", masker) for i, c in enumerate(step.preconditions)],
        gates=[render_check(c, context, f"{where}.gates[{i}]", masker) for i, c in enumerate(step.gates)],
        confirm=render(step.confirm, context, f"{where}.confirm") if step.confirm else None,
        rollback=render_body(step.rollback, context, f"{where}.rollback", masker) if step.rollback else None,
        dry_run=dry_run,
        fingerprint=fingerprint,
        needs_confirmation=bool(step.confirm) or step.approval is not None or kind.needs_confirmation,
    )


def render_body(body: StepBody, context: Mapping[str, Any], where: str, masker: Masker | None = None) -> RenderedBody:
    kind = get_step_kind(body.kind)
    # Shell command lines (``shell_keys``) get their values shell-quoted.
    data = render_data(body.params, context, where, shell_keys=getattr(kind, "shell_keys", ()))
    params = _validated(kind.Params, data, where)
    return RenderedBody(body.kind, params, _shown(kind, data, params, masker), body.title, body.timeout)


def render_check(check: Check, context: Mapping[str, Any], where: str, masker: Masker | None = None) -> RenderedCheck:
    kind = get_check_kind(check.check)
    data = render_data(check.params, context, where, shell_keys=getattr(kind, "shell_keys", ()))
    params = _validated(kind.Params, data, where)
    label = render(check.name, context, f"{where}.name") if check.name else check.check
    rendered = RenderedCheck(check, params, _shown(kind, data, params, masker), label)
    if check.on is not None:
        # Rendered again for each host with ``host`` (runbook.fleet.checks).
        rendered.__dict__["_render_again"] = (context, where)
    return rendered


def _shown(kind: Any, data: dict[str, Any], params: Any, masker: Masker | None) -> str:
    """The description of ``params`` as the plan shows it, made from masked values.

    Masked before ``describe`` shortens anything: a long SQL text or JSON body cut inside
    a URL would otherwise end in the password's first characters, with no ``@`` after
    them for masking to recognise, and a secret cut short is not the secret any more.
    Execution keeps ``params``, the real values."""
    shown = (masker or Masker()).mask_data(data)
    if shown == data:
        return _describe(kind, params)
    try:
        shown_params = kind.Params.model_validate(shown)
    except ValidationError:
        # A masked value may not parse (a secret port): describe the values as they are.
        shown_params = kind.Params.model_construct(**shown) if isinstance(shown, dict) else params
    return _describe(kind, shown_params)


def _describe(kind: Any, params: Any) -> str:
    try:
        return str(kind.describe(params))
    except (ValueError, TypeError):
        # Parameters holding run-time placeholders may not parse yet; show them as written.
        fields = params.model_dump() if hasattr(params, "model_dump") else dict(params)
        return ", ".join(f"{k}: {' '.join(str(v).split())}" for k, v in fields.items() if v not in (None, {}, []))


def _validated(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        if any("<steps." in text for _, text in strings(data)):
            # Only known at run time; the plan shows the values as written.
            return model.model_construct(**data)
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if not loc:
            # The kind's own validator, about several keys at once: its message names them, and the
            # input is the whole step (long, and not the value at fault).
            raise TemplateFailed(f"{where}: after rendering: {message}") from err
        raise TemplateFailed(f"{where}.{loc}: after rendering: {message} (got {first.get('input')!r})") from err

