"""Find, read and validate a runbook: YAML -> ``uses`` expansion -> model -> semantic checks.

Every problem is collected as a ``Diagnostic`` located at ``file:line:col``
and reported together, so an author fixes a file in one pass. Kind keys are
validated against each kind's ``Params`` model; a key holding a template is
checked after rendering instead, since its type is known only then.
"""

from __future__ import annotations

import difflib
import gc
import json
import os
import re
from collections import abc
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from jinja2 import TemplateError
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runbook import sqltext
from runbook.approval_policy import problems as approval_problems
from runbook.checks import CHECK_KINDS, get_check_kind
from runbook.errors import Diagnostic, InvalidRunbook, UsageError
from runbook.model import (
    CHECK_COMMON_KEYS,
    STEP_BODY_COMMON_KEYS,
    STEP_COMMON_KEYS,
    Runbook,
    Step,
    parse_duration,
)
from runbook.steps import STEP_KINDS, get_step_kind
from runbook.shellquote import Deferred, refuse_corrupted_lines, shell_template_problem
from runbook.templating import TOP_LEVEL_NAMES, TemplateFailed, analyze, environment, is_template, parsed, render, shell_quoted
from runbook.yamlsource import KeyPath, SourceMap, format_path, load_yaml, read_file

RUNBOOK_SUFFIXES = (".yaml", ".yml")
_PARAMS_FIELD = "params"


@dataclass
class LoadedRunbook:
    runbook: Runbook
    path: Path
    source: SourceMap
    warnings: list[Diagnostic] = field(default_factory=list)
    steps_dir: Path | None = None


# ---------------------------------------------------------------- finding files


def find_runbook(name: str, cwd: Path | None = None) -> Path:
    """A path as given, else a bare name looked up in ./runbooks/ then RUNBOOK_PATH."""
    cwd = cwd or Path.cwd()
    direct = cwd / name
    if _is_file(direct):
        return direct
    searched: list[Path] = []
    if "/" not in name and os.sep not in name:
        # Each directory once, also when RUNBOOK_PATH repeats one.
        searched = list(dict.fromkeys([cwd / "runbooks", *(Path(p) for p in os.environ.get("RUNBOOK_PATH", "").split(os.pathsep) if p)]))
        names = [name] if name.endswith(RUNBOOK_SUFFIXES) else [name + s for s in RUNBOOK_SUFFIXES]
        for directory in searched:
            for candidate_name in names:
                candidate = directory / candidate_name
                if _is_file(candidate):
                    return candidate
    places = ", ".join(str(d) for d in searched) or str(cwd)
    raise UsageError(
        f"runbook {name!r} not found (looked in {places})",
        hint="give a path to the file, or put it in ./runbooks/ or a directory listed in RUNBOOK_PATH",
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        # A name the system cannot even look up (too long, say) names no file.
        return False


def find_steps_dir(runbook_path: Path) -> Path | None:
    """``steps/`` beside the runbook, or beside the directory holding it."""
    env_dir = os.environ.get("RUNBOOK_STEPS_DIR")
    if env_dir:
        return Path(env_dir)
    for base in (runbook_path.parent, runbook_path.parent.parent):
        if (base / "steps").is_dir():
            return base / "steps"
    return None


# ---------------------------------------------------------------- entry point


def load_runbook(path: Path, *, strict: bool = False, display: str | None = None, text: str | None = None) -> LoadedRunbook:
    """Load and validate; raise ``InvalidRunbook`` listing every problem found.
    ``text``: validate this as the content of ``path`` (a file about to be written)."""
    budget = _SUGGESTION_BUDGET.set([MAX_SUGGESTION_COMPARISONS])
    try:
        with without_cyclic_gc():
            return _load_runbook(path, strict=strict, display=display, text=text)
    finally:
        _SUGGESTION_BUDGET.reset(budget)


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """Pause Python's cycle collector while building a big structure whose objects all stay alive.

    Each full collection walks every object built so far and they only grow, so
    collections during a load cost time quadratic in its size (40 % of validating
    45,000 steps); nothing built here is garbage a collection could free.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_runbook(path: Path, *, strict: bool, display: str | None, text: str | None) -> LoadedRunbook:
    display = display or _display_path(path)
    text = read_file(path, display) if text is None else text
    document = load_yaml(text, display)
    checker = _Checker(document.source, find_steps_dir(path))
    runbook = checker.check(document.data)
    # A definition used by several steps yields the same diagnostic in its file once per use.
    diagnostics = list(dict.fromkeys(checker.diagnostics)) + _import_todos(text, display)
    warnings = [d for d in diagnostics if d.severity == "warning"]
    errors = [d for d in diagnostics if d.severity == "error"]
    if strict:
        errors += [Diagnostic(w.file, w.line, w.col, w.path, w.message + " (--strict)") for w in warnings]
        warnings = []
    if errors or runbook is None:
        raise InvalidRunbook(sorted(errors, key=lambda d: (d.file, d.line, d.col)) + warnings)
    return LoadedRunbook(runbook, path, document.source, warnings, checker.steps_dir)


IMPORT_TODO = "TODO(import)"


def _import_todos(text: str, file: str) -> list[Diagnostic]:
    """Each ``TODO(import)`` that ``runbook import`` left in a draft: a warning, so ``--strict`` refuses the draft."""
    if IMPORT_TODO not in text:
        return []
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        column = line.find(IMPORT_TODO)
        if column >= 0:
            note = line[column + len(IMPORT_TODO) :].lstrip(":").strip()
            note = note if len(note) <= 100 else note[:99] + "…"
            found.append(Diagnostic(file, number, column + 1, "", f"{IMPORT_TODO} left by runbook import, to review: {note}", "warning"))
    return found


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the checker

_Place = tuple[SourceMap, KeyPath]


@dataclass(frozen=True)
class _Origin:
    """Where the keys of a step written with ``uses:`` came from, to report each problem where it is fixed."""

    own: frozenset[str]  # written at the step in the runbook
    # The definition's ``step`` mapping; None when the definition could not be instantiated, and
    # every problem with the keys it would have given is a consequence of one already reported.
    home: _Place | None
    places: dict[str, _Place]  # keys a (possibly nested) definition gave, and where it wrote them


class _Checker:
    def __init__(self, source: SourceMap, steps_dir: Path | None) -> None:
        self.source = source
        self.steps_dir = steps_dir
        self.diagnostics: list[Diagnostic] = []
        self.definitions = _Definitions(steps_dir, self)
        self.origins: dict[KeyPath, _Origin] = {}  # by the path of a step written with ``uses:``
        self.step_positions: list[int] = []
        self.invalid_step_ids: set[str] = set()
        # Steps checked without the keys found invalid; what they lack is no news.
        self.partial_steps: set[KeyPath] = set()

    def error(self, path: KeyPath, message: str) -> None:
        self._report(path, message, "error")

    def warn(self, path: KeyPath, message: str) -> None:
        self._report(path, message, "warning")

    def _report(self, path: KeyPath, message: str, severity: str) -> None:
        # A key a step got from its ``uses:`` definition is fixed in the definition's file.
        for n in range(len(path) - 1, 0, -1):
            origin = self.origins.get(path[:n])
            if origin is not None and path[n] not in origin.own:
                if origin.home is not None:
                    source, prefix = origin.places.get(str(path[n]), origin.home)
                    self.diagnostics.append(source.diagnostic((*prefix, *path[n:]), message, severity))
                return
        self.diagnostics.append(self.source.diagnostic(path, message, severity))

    def check(self, data: Any) -> Runbook | None:
        if not isinstance(data, dict):
            self.error((), "a runbook is a mapping with at least 'name' and 'steps'")
            return None
        data = dict(data)
        # Anything not of the expected shape is left for pydantic to report.
        if isinstance(data.get("steps"), list):
            data["steps"] = self._valid_steps(self._steps(data["steps"], ("steps",)))
        if isinstance(data.get("rollback"), list):
            data["rollback"] = [self._rollback_option(option, ("rollback", i)) for i, option in enumerate(data["rollback"])]
        if isinstance(data.get("success_criteria"), list):
            data["success_criteria"] = [_split_criterion(criterion) for criterion in data["success_criteria"]]
        try:
            runbook = Runbook.model_validate(data)
        except ValidationError as err:
            self._pydantic_errors(err, (), Runbook)
            # Check the rest too, so one pass over the file shows every problem.
            bad = {e["loc"][0] for e in err.errors() if e["loc"]}
            retry = {k: v for k, v in data.items() if k not in bad or k == "steps"}
            retry.setdefault("name", "invalid")
            if not isinstance(retry.get("steps"), list):
                return None
            try:
                runbook = Runbook.model_validate(retry)
            except ValidationError:
                return None
        self._kind_params(runbook)
        self._semantics(runbook)
        return runbook

    # -- structure

    def _steps(self, steps: list[Any], path: KeyPath) -> list[Any]:
        out: list[Any] = []
        for i, raw in enumerate(steps):
            if not isinstance(raw, dict):
                out.append(raw)
                continue
            if "uses" in raw:
                raw, self.origins[(*path, i)] = self.definitions.expand(raw, (*path, i))
            elif "with" in raw:
                self.error((*path, i, "with"), "'with' only goes with 'uses'")
            step = _split(raw, STEP_COMMON_KEYS)
            step.pop("with", None)
            for key in ("preconditions", "gates"):
                if isinstance(step.get(key), list):
                    step[key] = [_split(c, CHECK_COMMON_KEYS) if isinstance(c, dict) else c for c in step[key]]
            for key in ("rollback", "dry_run"):
                if isinstance(step.get(key), dict):
                    step[key] = _split(step[key], STEP_BODY_COMMON_KEYS)
            out.append(step)
        return out

    def _rollback_option(self, option: Any, path: KeyPath) -> Any:
        if isinstance(option, dict) and isinstance(option.get("steps"), list):
            return {**option, "steps": self._steps(option["steps"], (*path, "steps"))}
        return option

    def _valid_steps(self, steps: list[Any]) -> list[Step]:
        """Validate steps one by one; invalid ones are reported and left out,
        and ``self.step_positions`` maps what remains to the file's indices."""
        valid: list[Step] = []
        for i, raw in enumerate(steps):
            step = self._valid_step(raw, ("steps", i))
            if step is None:
                if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    self.invalid_step_ids.add(raw["id"])
                continue
            valid.append(step)
            self.step_positions.append(i)
        return valid

    def _valid_step(self, raw: Any, path: KeyPath) -> Step | None:
        """The step, else (errors reported) what remains once its invalid keys are set aside,
        so its kind's keys, checks and templates are still checked in this pass."""
        try:
            return Step.model_validate(raw)
        except ValidationError as err:
            self._pydantic_errors(err, path, Step)
            bad = {e["loc"][0] for e in err.errors() if e["loc"]}
            if not isinstance(raw, dict) or not bad:
                return None
            self.partial_steps.add(path)
            try:
                return Step.model_validate({k: v for k, v in raw.items() if k not in bad})
            except ValidationError:
                # Without an id or kind there is nothing left to check.
                return None

    def step_path(self, index: int) -> KeyPath:
        return ("steps", self.step_positions[index])

    def _pydantic_errors(
        self, err: ValidationError, base: KeyPath, model: type[BaseModel], also: frozenset[str] = frozenset(), what: str = "", *, rendered: bool = False
    ) -> None:
        """Report ``err``; ``rendered``: the keys are a kind's, rendered before use, so
        one holding a template is checked once rendered (common keys never are)."""
        for problem in _problems(err, model):
            if rendered and is_template(problem.input) and problem.kind not in ("extra_forbidden", "missing"):
                continue
            path = (*base, *problem.path)
            if problem.kind == "extra_forbidden":
                name = str(problem.path[-1]) if problem.path else ""
                allowed = _keys_of(problem.holder) + (sorted(also) if len(problem.path) == 1 else [])
                self.error(path, f"unknown key {name!r}{what}" + _did_you_mean(name, allowed))
            elif problem.kind == "missing":
                self.error(path, "required key is missing")
            else:
                self.error(path, problem.message)

    def _kind_params(self, runbook: Runbook) -> None:
        for path, body in _bodies(runbook, self.step_path):
            kind_name = body.kind
            if kind_name not in STEP_KINDS:
                self.error((*path, "kind"), f"unknown step kind {kind_name!r}" + _did_you_mean(kind_name, STEP_KINDS))
                continue
            common = STEP_COMMON_KEYS if isinstance(body, Step) else STEP_BODY_COMMON_KEYS
            self._validate_params(get_step_kind(kind_name).Params, body.params, path, common, f" for a {kind_name} step")
        for path, check in _checks(runbook, self.step_path):
            if check.check not in CHECK_KINDS:
                self.error((*path, "check"), f"unknown check kind {check.check!r}" + _did_you_mean(check.check, CHECK_KINDS))
                continue
            self._validate_params(get_check_kind(check.check).Params, check.params, path, CHECK_COMMON_KEYS, f" for a {check.check} check")

    def _validate_params(
        self, params_model: type[BaseModel], params: dict[str, Any], path: KeyPath, common: frozenset[str], what: str
    ) -> None:
        try:
            params_model.model_validate(params)
        except ValidationError as err:
            self._pydantic_errors(err, path, params_model, common, what, rendered=True)

    # -- meaning

    def _semantics(self, runbook: Runbook) -> None:
        self._step_order(runbook.steps, self.step_path)
        for i, option in enumerate(runbook.rollback):
            self._step_order(option.steps, partial(_option_step_path, i))
        _duplicates(self, [o.id for o in runbook.rollback], ("rollback",), "rollback option")
        for env_name, env in runbook.environments.items():
            for var in env.vars:
                if var not in runbook.vars:
                    self.error(("environments", env_name, "vars", var), f"sets undeclared var {var!r}" + _did_you_mean(var, runbook.vars))
        for name, declared in runbook.vars.items():
            if declared.choices is not None and declared.default is not None and declared.default not in declared.choices:
                self.error(("vars", name, "default"), f"default {declared.default!r} is not one of {declared.choices}")
        self._connections_used(runbook)
        self._templates(runbook)
        for path, problem in _unsafe_strings(runbook, self.step_path):
            self.error(path, problem)
        self._reversibility(runbook)
        for path, message in approval_problems(runbook):
            self.error((*self.step_path(int(path[1])), *path[2:]) if path[0] == "steps" else path, message)
        self._fleet_keys(runbook)

    def _step_order(self, steps: list[Step], path_of: Callable[[int], KeyPath]) -> None:
        index = {s.id: i for i, s in reversed(list(enumerate(steps)))}
        seen: set[str] = set()
        for i, step in enumerate(steps):
            if step.id in seen:
                self.error((*path_of(i), "id"), f"duplicate step id {step.id!r}")
            seen.add(step.id)
            for j, need in enumerate(step.needs):
                where = (*path_of(i), "needs", j)
                if need in self.invalid_step_ids:
                    continue
                if need not in index:
                    self.error(where, f"needs unknown step {need!r}" + _did_you_mean(need, index))
                elif index[need] >= i:
                    self.error(where, f"needs {need!r}, which is not an earlier step; steps run in the order written")

    def _connections_used(self, runbook: Runbook) -> None:
        for path, params in [(p, b.params) for p, b in _bodies(runbook, self.step_path)] + [(p, c.params) for p, c in _checks(runbook, self.step_path)]:
            name = params.get("connection")
            if isinstance(name, str) and not is_template(name) and name not in runbook.connections:
                self.error((*path, "connection"), f"unknown connection {name!r}" + _did_you_mean(name, runbook.connections))

    def _templates(self, runbook: Runbook) -> None:
        step_ids = runbook.step_ids
        var_names = list(runbook.vars)
        var_position = {name: i for i, name in enumerate(var_names)}
        no_steps = _DeclaredBefore({}, 0)
        for i, name in enumerate(var_names):
            default = runbook.vars[name].default
            # A default may read the vars declared before it.
            self._template_refs(default, ("vars", name, "default"), _DeclaredBefore(var_position, i), no_steps)
        every_var = set(var_names)
        for name, url in runbook.connections.items():
            self._template_refs(url, ("connections", name), every_var, no_steps)
        position = {step_id: i for i, step_id in reversed(list(enumerate(step_ids)))}
        # Defaults hold no templates: leaving them out makes this walk as small as what was written.
        data = runbook.model_dump(mode="python", exclude={"vars", "connections", "environments", "metadata"}, exclude_defaults=True)
        for i, step in enumerate(data["steps"]):
            earlier = _DeclaredBefore(position, i)
            with_itself = _DeclaredBefore(position, i + 1)
            when = step.pop("when", None)
            if when:
                self._template_refs(when, (*self.step_path(i), "when"), every_var, earlier, expression=True)
            if not _holds_template(step):
                continue  # most steps: one C-speed scan instead of a walk of every value
            outputs = step.pop("outputs", {})
            # Gates and the rollback run after the step, so they may read its own outputs.
            after = {key: step.pop(key, None) for key in ("gates", "rollback")}
            self._template_refs(after, self.step_path(i), every_var, with_itself)
            self._template_refs(step, self.step_path(i), every_var, earlier)
            self._template_refs(outputs, (*self.step_path(i), "outputs"), every_var, with_itself, extra={"result"})
        every_step = _DeclaredBefore(position, len(step_ids))
        for key in ("rollback", "success_criteria", "notifications"):
            self._template_refs(data.get(key), (key,), every_var, every_step)

    def _template_refs(
        self, value: Any, path: KeyPath, var_names: Container[str], step_ids: Container[str], *, expression: bool = False, extra: frozenset[str] | set[str] = frozenset()
    ) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                sub = path if key == _PARAMS_FIELD else (*path, key)
                self._template_refs(item, sub, var_names, step_ids, extra=extra)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                self._template_refs(item, (*path, i), var_names, step_ids, extra=extra)
            return
        if not (expression and isinstance(value, str)) and not is_template(value):
            return
        try:
            analysis = analyze(value, expression=expression)
        except TemplateFailed as err:
            self.error(path, err.message)
            return
        for problem in analysis.problems:
            self.error(path, problem)
        allowed_top = (TOP_LEVEL_NAMES - {"params", "result"}) | set(extra)
        for ref in analysis.references:
            top = ref.parts[0]
            if top not in allowed_top:
                self.error(path, f"template uses undefined name {top!r}" + _did_you_mean(top, sorted(allowed_top)))
            elif top == "vars" and len(ref.parts) > 1 and ref.parts[1] not in var_names:
                self.error(path, f"template uses undefined var {ref.parts[1]!r}" + _did_you_mean(ref.parts[1], var_names))
            elif top == "steps" and len(ref.parts) > 1 and ref.parts[1] not in step_ids:
                self.error(path, f"template reads {'.'.join(ref.parts[:2])!r}, which is not an earlier step")
            elif top == "steps" and len(ref.parts) > 2 and ref.parts[2] not in ("outputs", "status"):
                self.error(path, f"template reads {str(ref)!r}; a step offers 'outputs' and 'status'")

    def _fleet_keys(self, runbook: Runbook) -> None:
        from runbook.fleet.validate import fleet_problems

        for path, message in fleet_problems(runbook, self.step_path):
            self.error(path, message)

    def _reversibility(self, runbook: Runbook) -> None:
        for i, step in enumerate(runbook.steps):
            if self.step_path(i) in self.partial_steps:
                continue
            if step.kind in STEP_KINDS and get_step_kind(step.kind).changes_data:
                if step.rollback is None and not step.irreversible and step.dry_run != "safe":
                    self.warn(
                        self.step_path(i),
                        f"step {step.id!r} may change data but has neither 'rollback' nor 'irreversible: true'",
                    )


def _option_step_path(option: int, step: int) -> KeyPath:
    return ("rollback", option, "steps", step)


def _holds_template(data: Any) -> bool:
    """Whether any string inside ``data`` (plain dumped values) may be a template."""
    text = json.dumps(data, default=str)
    return "{{" in text or "{%" in text


@dataclass(frozen=True)
class _DeclaredBefore:
    """The names (step ids, vars) a template at position ``limit`` may read: those first written before it.

    One shared position index instead of a set of the earlier names per position,
    which made validation quadratic (45,000 steps took 82 s)."""

    position: dict[str, int]
    limit: int

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.position.get(name, self.limit) < self.limit

    def __iter__(self) -> Iterator[str]:
        return (name for name, i in self.position.items() if i < self.limit)


# ---------------------------------------------------------------- uses: reusable definitions

_PARAM_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "list": list,
    "mapping": dict,
    "duration": (str, int, float),
    "any": object,
}
_WHOLE_PARAM = re.compile(r"^\{\{\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_DEFINITION_KEYS = {"description", "params", "step"}
_PARAM_SPEC_KEYS = {"type", "required", "default", "description", "choices", "secret"}


@dataclass(frozen=True)
class _Definition:
    step: dict[str, Any]
    params: dict[str, Any]
    source: SourceMap


class _Definitions:
    """Loads ``steps/<name>.yaml`` definitions and instantiates them with ``with``.

    Problems with ``uses`` and ``with`` (also those of a definition using another)
    are reported at the runbook step that started the chain; problems inside a
    definition file are reported in that file."""

    def __init__(self, steps_dir: Path | None, checker: _Checker) -> None:
        self.steps_dir = steps_dir
        self.checker = checker
        # None: the file has problems, already reported in it.
        self.loaded: dict[Path, _Definition | None] = {}

    def expand(self, raw: dict[str, Any], path: KeyPath) -> tuple[dict[str, Any], _Origin]:
        step, home, places = self._instantiate(raw, path, ())
        return step, _Origin(frozenset(raw), home, places)

    def _instantiate(self, raw: dict[str, Any], path: KeyPath, chain: tuple[str, ...]) -> tuple[dict[str, Any], _Place | None, dict[str, _Place]]:
        """``raw`` with its definition filled in; where that definition is (None if it
        cannot be used) and where each key it gave was written."""
        own = {k: v for k, v in raw.items() if k not in ("uses", "with")}
        name = raw.get("uses")
        if not isinstance(name, str):
            self.checker.error((*path, "uses"), "'uses' names a step definition in steps/, such as backup-fresh")
            return own, None, {}
        if name in chain:
            self.checker.error((*path, "uses"), f"'uses' cycle: {' -> '.join([*chain, name])}")
            return own, None, {}
        definition = self._load(name, (*path, "uses"))
        if definition is None:
            return own, None, {}
        args = raw.get("with") or {}
        if not isinstance(args, dict):
            self.checker.error((*path, "with"), "'with' is a mapping of parameter values")
            args = {}
        values, complete = self._arguments(name, definition.params, args, path)
        home: _Place = (definition.source, ("step",))
        body = _substitute(definition.step, values)
        places = dict.fromkeys(body, home)
        if "uses" in body:
            body, inner_home, inner_places = self._instantiate(body, path, (*chain, name))
            places = {key: inner_places.get(key, home) for key in body}
            complete = complete and inner_home is not None
        return {**body, **own, "uses": name}, home if complete else None, places

    def _load(self, name: str, where: KeyPath) -> _Definition | None:
        found = self._find(name, where)
        if found is None:
            return None
        if found not in self.loaded:
            self.loaded[found] = self._read(found)
        return self.loaded[found]

    def _find(self, name: str, where: KeyPath) -> Path | None:
        if self.steps_dir is None:
            self.checker.error(where, f"uses {name!r} but no steps/ directory was found beside the runbook")
            return None
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or ".." in name:
            self.checker.error(where, f"'uses: {name}' must be a plain definition name inside steps/, not a path")
            return None
        candidates = [self.steps_dir / name] if name.endswith(RUNBOOK_SUFFIXES) else [self.steps_dir / (name + s) for s in RUNBOOK_SUFFIXES]
        found = next((c for c in candidates if _is_file(c)), None)
        if found is None:
            known = sorted(p.stem for p in self.steps_dir.glob("*.y*ml"))
            self.checker.error(where, f"no step definition {name!r} in {self.steps_dir}" + _did_you_mean(name, known))
            return None
        if self.steps_dir.resolve() not in found.resolve().parents:
            self.checker.error(where, f"step definition {name!r} resolves outside {self.steps_dir}; refusing to follow the link")
            return None
        return found

    def _read(self, found: Path) -> _Definition | None:
        display = _display_path(found)
        try:
            document = load_yaml(read_file(found, display), display)
        except InvalidRunbook as err:
            self.checker.diagnostics.extend(err.diagnostics)
            return None
        problems = _definition_problems(document.data)
        for key_path, message in problems:
            self.checker.diagnostics.append(document.source.diagnostic(key_path, message))
        if problems:
            return None
        return _Definition(document.data["step"], document.data.get("params") or {}, document.source)

    def _arguments(self, name: str, specs: dict[str, Any], args: dict[str, Any], path: KeyPath) -> tuple[dict[str, Any], bool]:
        """Parameter values, and whether they are all there and of their declared type."""
        values: dict[str, Any] = {}
        complete = True
        for key in args:
            if key not in specs:
                self.checker.error((*path, "with", key), f"{name!r} has no parameter {key!r}" + _did_you_mean(key, specs))
        for key, spec in specs.items():
            spec = spec or {}
            if key in args:
                value = args[key]
                problem = _param_type_problem(value, spec)
                if problem:
                    self.checker.error((*path, "with", key), problem)
                    complete = False
                values[key] = value
            elif "default" in spec:
                values[key] = spec["default"]
            elif spec.get("required", True):
                self.checker.error((*path, "with"), f"{name!r} needs parameter {key!r}" + (f" ({spec['description']})" if spec.get("description") else ""))
                complete = False
        return values, complete


def _definition_problems(definition: Any) -> list[tuple[KeyPath, str]]:
    if not isinstance(definition, dict):
        return [((), "a step definition is a mapping with 'params' and 'step'")]
    problems: list[tuple[KeyPath, str]] = []
    for key in definition:
        if key not in _DEFINITION_KEYS:
            problems.append(((key,), f"unknown key {key!r}" + _did_you_mean(key, _DEFINITION_KEYS)))
    if not isinstance(definition.get("step"), dict):
        problems.append((("step",), "a step definition needs a 'step' mapping (kind and its keys)"))
    params = definition.get("params") or {}
    if not isinstance(params, dict):
        problems.append((("params",), "'params' is a mapping of parameter names to their type, default and description"))
        params = {}
    for name, spec in params.items():
        if spec is None:
            continue
        if not isinstance(spec, dict):
            problems.append((("params", name), "a parameter is a mapping: type, required, default, description"))
            continue
        for key in spec:
            if key not in _PARAM_SPEC_KEYS:
                problems.append((("params", name, key), f"unknown key {key!r}" + _did_you_mean(key, _PARAM_SPEC_KEYS)))
        type_name = spec.get("type", "string")
        if not isinstance(type_name, str) or type_name not in _PARAM_TYPES:
            problems.append((("params", name, "type"), f"unknown type {type_name!r}; one of {', '.join(_PARAM_TYPES)}"))
        if "choices" in spec and not isinstance(spec["choices"], list):
            problems.append((("params", name, "choices"), "'choices' is a list of the allowed values"))
    if isinstance(definition.get("step"), dict):
        problems += _undeclared_params(definition["step"], ("step",), params)
    return problems


def _undeclared_params(value: Any, path: KeyPath, params: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """Templates reading a parameter the definition does not declare (a typo, found once, here)."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _undeclared_params(item, (*path, key), params)]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _undeclared_params(item, (*path, i), params)]
    if not is_template(value):
        return []
    try:
        references = analyze(value).references
    except TemplateFailed:
        # Reported with the expanded step, like any template.
        return []
    return [
        (path, f"template uses undeclared parameter {ref.parts[1]!r}" + _did_you_mean(ref.parts[1], params))
        for ref in references
        if ref.parts[0] == "params" and len(ref.parts) > 1 and ref.parts[1] not in params
    ]


def _param_type_problem(value: Any, spec: dict[str, Any]) -> str | None:
    if is_template(value):
        return None
    type_name = spec.get("type", "string")
    expected = _PARAM_TYPES.get(type_name, object)
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return f"expected {type_name}, got {value!r}"
    if not isinstance(value, expected):
        return f"expected {type_name}, got {type(value).__name__} {value!r}"
    if type_name == "duration":
        try:
            parse_duration(value)
        except ValueError as err:
            return str(err)
    if spec.get("choices") and value not in spec["choices"]:
        return f"{value!r} is not one of {spec['choices']}"
    return None


class _Passthrough(Deferred):
    """Re-emits a non-``params`` reference as template text, rendered later at run time."""

    __slots__ = ()

    def __getattr__(self, key: str) -> _Passthrough:
        if key.startswith("_"):
            raise AttributeError(key)
        return _Passthrough(f"{self._expression}.{key}")


_WHOLE_REFERENCE = re.compile(r"^\{\{((?:(?!\{\{|\}\}).)*)\}\}$", re.S)


def _as_reference(value: Any) -> Any:
    match = _WHOLE_REFERENCE.match(value) if isinstance(value, str) else None
    return Deferred(match[1].strip()) if match else value


def _kinds_used(runbook: Runbook, step_path: Callable[[int], KeyPath]) -> list[tuple[KeyPath, Any, dict[str, Any]]]:
    """Every step body and check of known kind: its key path, its kind and its params."""
    kinds: list[tuple[KeyPath, Any, dict[str, Any]]]
    kinds = [(p, get_step_kind(b.kind), b.params) for p, b in _bodies(runbook, step_path) if b.kind in STEP_KINDS]
    kinds += [(p, get_check_kind(c.check), c.params) for p, c in _checks(runbook, step_path) if c.check in CHECK_KINDS]
    return kinds


def _unsafe_strings(runbook: Runbook, step_path: Callable[[int], KeyPath]) -> Iterator[tuple[KeyPath, str]]:
    """Shell command lines (a kind's ``shell_keys``) whose values land where quoting is not
    certain, and SQL text (its ``sql_keys``) whose templated values could change the statement."""
    for path, kind, params in _kinds_used(runbook, step_path):
        for key in getattr(kind, "shell_keys", ()):
            value = params.get(key)
            if isinstance(value, str):
                # Plain text is checked too: the here-document lines dash would corrupt.
                problem = shell_template_problem(value, shell_quoted if is_template(value) else refuse_corrupted_lines)
                if problem:
                    yield (*path, key), problem
        for key in getattr(kind, "sql_keys", ()):
            for where, value in _values_at(params, tuple(key.split("."))):
                if not is_template(value):
                    continue
                try:
                    tree = parsed(value)
                except (TemplateError, RecursionError):
                    continue  # reported by _templates
                problem = sqltext.problem(value, tree, binds=getattr(kind, "sql_binds", False))
                if problem:
                    yield (*path, *where), problem


def _values_at(value: Any, keys: tuple[str, ...], where: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    """The strings at a dotted key path (``*`` for every item of a list), each with its path;
    a list where a string is expected (a ``sql`` step's statements) yields each string in it."""
    if not keys:
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield (*where, i), item
        return
    head, rest = keys[0], keys[1:]
    if head == "*" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _values_at(item, rest, (*where, i))
    elif isinstance(value, dict) and head in value:
        yield from _values_at(value[head], rest, (*where, head))


def _shell_keys(mapping: dict[str, Any]) -> frozenset[str]:
    """The keys of a step body or check that are shell command lines."""
    kind: Any = None
    if isinstance(mapping.get("kind"), str) and mapping["kind"] in STEP_KINDS:
        kind = get_step_kind(mapping["kind"])
    elif isinstance(mapping.get("check"), str) and mapping["check"] in CHECK_KINDS:
        kind = get_check_kind(mapping["check"])
    return frozenset(getattr(kind, "shell_keys", ()))


def _substitute(value: Any, params: dict[str, Any], *, shell: bool = False) -> Any:
    """``value`` with the definition's parameters filled in. In a shell command line
    (``shell``) they are quoted like any value, so a parameter is one word unless the
    definition writes ``{{ params.x | unquoted }}``; a whole ``run: "{{ params.x }}"``
    given a list becomes the argv form."""
    if isinstance(value, dict):
        shell_keys = _shell_keys(value)
        return {k: _substitute(v, params, shell=k in shell_keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if not is_template(value):
        return value
    whole = _WHOLE_PARAM.match(value)
    if whole and whole[1] in params and not (shell and isinstance(params[whole[1]], str)):
        return params[whole[1]]
    if "params" not in value:
        return value
    context: dict[str, Any] = {name: _Passthrough(name) for name in TOP_LEVEL_NAMES}
    # A parameter given as one whole reference ("{{ vars.x }}") stays that reference, to be
    # quoted for where it lands when the step runs.
    context["params"] = {k: _as_reference(v) for k, v in params.items()} if shell else params
    try:
        return render(value, context, shell=shell)
    except TemplateFailed:
        # Left as written: validation of the expanded step reports it with its location.
        return value


# ---------------------------------------------------------------- pydantic errors, in the file's terms


@dataclass(frozen=True)
class _Problem:
    path: KeyPath  # keys and list indices as written in the file
    kind: str  # pydantic's error type, or "union"
    message: str
    input: Any
    holder: Any = None  # for an unknown key: the model it was found in


@dataclass(frozen=True)
class _Walk:
    path: KeyPath
    holder: Any  # the model the walk ended in, if it did
    union: tuple[KeyPath, int] | None  # the first union passed: its path, and the index of pydantic's branch tag in loc


_EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _problems(err: ValidationError, model: type[BaseModel]) -> list[_Problem]:
    """pydantic's errors as problems at the keys the author wrote.

    pydantic's locations also name the branches of a union (``dry_run.StepBody``,
    ``run.list[str]``) and a value no branch accepts gets one error per branch.
    The names are dropped; if the value got inside a branch (a mapping into a
    model, a list into a list) only that branch's errors count, else the
    branches make one problem: "expected A or B"."""
    problems: list[_Problem] = []
    unions: dict[KeyPath, list[tuple[ErrorDetails, _Walk]]] = {}
    for item in err.errors():
        loc = item["loc"]
        if item["type"] == "extra_forbidden" and loc:
            # The unknown key is no field of its model, yet is what the author wrote.
            walk = _walk(model, loc[:-1])
            walk = replace(walk, path=(*walk.path, loc[-1]))
        else:
            walk = _walk(model, loc)
        if walk.union is None:
            problems.append(_problem(item, walk))
        else:
            unions.setdefault(walk.union[0], []).append((item, walk))
    for path, tried in unions.items():
        inside = [(item, walk) for item, walk in tried if walk.union and len(item["loc"]) > walk.union[1] + 1]
        if inside:
            problems += [_problem(item, walk) for item, walk in inside]
            continue
        value = tried[0][0]["input"]
        expected = _either([_expected(item) for item, _ in tried])
        problems.append(_Problem(path, "union", f"expected {expected} (got {_shown(value)})", value))
    return problems


def _problem(item: ErrorDetails, walk: _Walk) -> _Problem:
    kind = item["type"]
    if kind in ("literal_error", "enum"):
        message = f"{item['msg']} (got {_shown(item['input'])})"
    elif kind == "model_type":
        message = f"expected {_expected(item)} (got {_shown(item['input'])})"
    else:
        message = _clean_message(item["msg"])
    return _Problem(walk.path, kind, message, item["input"], walk.holder)


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> _Walk:
    """Follow a pydantic error location through the model's types, keeping the
    parts that are keys or indices in the file (fields, mapping keys, list
    indices) and dropping pydantic's own labels (union branch tags, ``[key]``)."""
    path: list[int | str] = []
    union: tuple[KeyPath, int] | None = None
    members: list[Any] = [model]
    for i, part in enumerate(loc):
        if len(members) > 1:
            union = union or (tuple(path), i)
            members = [_branch(members, str(part))]
            continue
        current = members[0]
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {field.alias or name: field for name, field in current.model_fields.items()}
            if part in fields:
                path.append(part)
                members = _members(fields[str(part)].annotation)
        elif isinstance(origin, type) and issubclass(origin, abc.Mapping):
            path.append(part)
            members = _members(get_args(current)[-1]) if get_args(current) else [Any]
        elif isinstance(origin, type) and issubclass(origin, (abc.Sequence, abc.Set)) and isinstance(part, int):
            path.append(part)
            members = _members(get_args(current)[0]) if get_args(current) else [Any]
        # Below a scalar nothing names a key.
    holder = members[0] if len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], BaseModel) else None
    return _Walk(tuple(path), holder, union)


def _members(annotation: Any) -> list[Any]:
    """The types a value may have: a union's branches (None aside), else the type itself."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [member for arg in get_args(annotation) if arg is not type(None) for member in _members(arg)]
    return [annotation]


def _branch(members: list[Any], tag: str) -> Any:
    """The union member pydantic's tag names: ``StepBody``, ``list[str]``, ``literal['a','b']``."""
    name = tag.split("[", 1)[0].lower()
    for member in members:
        if getattr(get_origin(member) or member, "__name__", "").lower() == name:
            return member
    return Any


def _expected(item: ErrorDetails) -> str:
    """What a union branch or a model accepts, in a YAML author's words."""
    if item["type"] == "literal_error":
        return str(item.get("ctx", {}).get("expected", item["msg"]))
    if item["type"] == "model_type":
        words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(item.get("ctx", {}).get("class_name", "Mapping"))).lower()
        return f"{'an' if words[0] in 'aeiou' else 'a'} {words} mapping"
    return _EXPECTED.get(item["type"], _clean_message(item["msg"]).removeprefix("Input should be "))


def _either(alternatives: list[str]) -> str:
    unique = list(dict.fromkeys(alternatives))
    # A comma keeps an alternative's own "or" readable: "'skip' or 'safe', or a step body mapping".
    return (", or " if any(" or " in a for a in unique) else " or ").join(unique)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys_of(model: Any) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


# ---------------------------------------------------------------- helpers


def _split(raw: dict[str, Any], common: frozenset[str]) -> dict[str, Any]:
    """Move a mapping's kind-specific keys into ``params``."""
    out = {k: v for k, v in raw.items() if k in common}
    params = {k: v for k, v in raw.items() if k not in common}
    if params:
        out[_PARAMS_FIELD] = params
    return out


def _split_criterion(criterion: Any) -> Any:
    if isinstance(criterion, dict) and isinstance(criterion.get("check"), dict):
        return {**criterion, "check": _split(criterion["check"], CHECK_COMMON_KEYS)}
    return criterion


def _all_steps(runbook: Runbook, step_path: Callable[[int], KeyPath]) -> list[tuple[KeyPath, Step]]:
    found = [(step_path(i), step) for i, step in enumerate(runbook.steps)]
    for i, option in enumerate(runbook.rollback):
        found += [(("rollback", i, "steps", j), step) for j, step in enumerate(option.steps)]
    return found


def _bodies(runbook: Runbook, step_path: Callable[[int], KeyPath]) -> list[tuple[KeyPath, Any]]:
    found: list[tuple[KeyPath, Any]] = []
    for path, step in _all_steps(runbook, step_path):
        found.append((path, step))
        if step.rollback is not None:
            found.append(((*path, "rollback"), step.rollback))
        if step.dry_run is not None and not isinstance(step.dry_run, str):
            found.append(((*path, "dry_run"), step.dry_run))
    return found


def _checks(runbook: Runbook, step_path: Callable[[int], KeyPath]) -> list[tuple[KeyPath, Any]]:
    found: list[tuple[KeyPath, Any]] = []
    for path, step in _all_steps(runbook, step_path):
        for key in ("preconditions", "gates"):
            found += [((*path, key, j), check) for j, check in enumerate(getattr(step, key))]
    for i, criterion in enumerate(runbook.success_criteria):
        if criterion.check is not None:
            found.append((("success_criteria", i, "check"), criterion.check))
    return found


def _duplicates(checker: _Checker, ids: list[str], path: KeyPath, what: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if item in seen:
            checker.error((*path, i, "id"), f"duplicate {what} {item!r}")
        seen.add(item)


# Candidate names ``_did_you_mean`` may still compare during one load; None outside a load.
# Each suggestion compares the name with every candidate, so a file with thousands of steps
# each needing an unknown step cost steps x steps comparisons (3,000 such steps: 87 s).
_SUGGESTION_BUDGET: ContextVar[list[int] | None] = ContextVar("suggestion_budget", default=None)
MAX_SUGGESTION_COMPARISONS = 200_000


def _did_you_mean(name: str, known: Any) -> str:
    candidates = [str(k) for k in known]
    budget = _SUGGESTION_BUDGET.get()
    if budget is not None:
        if budget[0] < len(candidates):
            return ""  # the budget is spent: the error stands without a suggestion
        budget[0] -= len(candidates)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _clean_message(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


__all__ = ["LoadedRunbook", "find_runbook", "find_steps_dir", "load_runbook", "format_path"]
