"""Templating through a sandboxed Jinja2 with StrictUndefined.

Runbooks reference ``{{ vars.x }}``, ``{{ env.NAME }}`` and
``{{ steps.<id>.outputs.<name> }}``. The sandbox refuses attribute tricks
(``''.__class__.__mro__``); a missing name is an error, never an empty string,
because an empty string in a deployment command is how accidents happen.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment

from runbook.errors import RunbookError

TOP_LEVEL_NAMES = frozenset({"vars", "env", "steps", "run", "runbook", "environment", "params", "result"})


class TemplateFailed(RunbookError):
    """A template could not be rendered (undefined name, syntax, sandbox)."""


class UnknownName(Exception):
    # Deliberately not a LookupError: Jinja would turn that into a silent Undefined.
    pass


class Namespace:
    """Attribute and item access over a mapping that names what is missing."""

    __slots__ = ("_data", "_name")

    def __init__(self, name: str, data: Mapping[str, Any]) -> None:
        self._name = name
        self._data = data

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __getitem__(self, key: str) -> Any:
        try:
            value = self._data[key]
        except KeyError:
            raise UnknownName(f"{self._name}.{key} is not defined") from None
        return Namespace(f"{self._name}.{key}", value) if isinstance(value, Mapping) else value

    def __iter__(self) -> Any:
        return iter(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __str__(self) -> str:
        return str(dict(self._data))


class EnvNamespace(Namespace):
    """``env.NAME``: the process environment. Planning shows unset ones as ``$NAME``."""

    __slots__ = ("_lenient",)

    def __init__(self, data: Mapping[str, str], lenient: bool) -> None:
        super().__init__("env", data)
        self._lenient = lenient

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        if self._lenient:
            return f"${key}"
        raise UnknownName(f"environment variable {key} is not set")


class Placeholder:
    """Stands for a value known only at run time (a step's output) in plans."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, key: str) -> Placeholder:
        if key.startswith("_"):
            raise AttributeError(key)
        return Placeholder(f"{self._path}.{key}")

    def __getitem__(self, key: Any) -> Placeholder:
        return Placeholder(f"{self._path}[{key!r}]")

    def __str__(self) -> str:
        return f"<{self._path}>"

    def __bool__(self) -> bool:
        return True

    # Arithmetic and comparisons on a value not known yet stay symbolic in plans.
    def _combine(self, op: str, other: Any, reverse: bool = False) -> Placeholder:
        left, right = (other, self) if reverse else (self, other)
        return Placeholder(f"{_show(left)} {op} {_show(right)}")

    def __add__(self, other: Any) -> Placeholder:
        return self._combine("+", other)

    def __radd__(self, other: Any) -> Placeholder:
        return self._combine("+", other, reverse=True)

    def __sub__(self, other: Any) -> Placeholder:
        return self._combine("-", other)

    def __rsub__(self, other: Any) -> Placeholder:
        return self._combine("-", other, reverse=True)

    def __mul__(self, other: Any) -> Placeholder:
        return self._combine("*", other)

    def __rmul__(self, other: Any) -> Placeholder:
        return self._combine("*", other, reverse=True)

    def __int__(self) -> int:
        # Jinja's |int falls back to 0 on errors; refusing here keeps the placeholder visible.
        raise TypeError("value known only at run time")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placeholder) and other._path == self._path

    def __hash__(self) -> int:
        return hash(self._path)


def _show(value: Any) -> str:
    return value._path if isinstance(value, Placeholder) else repr(value)


# Jinja's parser and renderer recurse once per nesting level (and a macro may
# call itself), so hostile or mistaken input ends in RecursionError.
_TOO_DEEP = "nested or recursing too deeply"


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    for name in ("int", "float"):
        env.filters[name] = _keep_placeholder(env.filters[name])
    return env


def _keep_placeholder(convert: Any) -> Any:
    """A conversion filter that leaves a plan's placeholder as it is instead of turning it into 0."""

    def filter_(value: Any, *args: Any, **kwargs: Any) -> Any:
        return value if isinstance(value, Placeholder) else convert(value, *args, **kwargs)

    return filter_


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return environment().from_string(source)


@lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Any:
    return environment().compile_expression(source)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(text: str, context: Mapping[str, Any], where: str = "") -> str:
    if not is_template(text):
        return text
    try:
        return _compile(text).render(context)
    except UnknownName as err:
        raise TemplateFailed(_located(where, str(err))) from err
    except TemplateError as err:
        raise TemplateFailed(_located(where, f"template error: {err}")) from err
    except RecursionError as err:
        raise TemplateFailed(_located(where, f"template error: {_TOO_DEEP}")) from err


def render_data(value: Any, context: Mapping[str, Any], where: str = "") -> Any:
    """Render every template string inside nested dicts and lists."""
    if isinstance(value, str):
        return render(value, context, where)
    if isinstance(value, dict):
        return {k: render_data(v, context, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [render_data(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def evaluate(expression: str, context: Mapping[str, Any], where: str = "") -> Any:
    """Evaluate a ``when:`` expression (with or without surrounding braces)."""
    source = expression.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2]
    try:
        return _compile_expression(source)(**context)
    except UnknownName as err:
        raise TemplateFailed(_located(where, str(err))) from err
    except TemplateError as err:
        raise TemplateFailed(_located(where, f"expression error: {err}")) from err
    except RecursionError as err:
        raise TemplateFailed(_located(where, f"expression error: {_TOO_DEEP}")) from err


@dataclass(frozen=True)
class Reference:
    """A dotted name used by a template, such as ``vars.db_url`` or ``steps.migrate.outputs.x``."""

    parts: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Analysis:
    """What a template needs from outside, found without rendering it."""

    references: tuple[Reference, ...]
    # Filters and tests Jinja does not have: it reports them only when compiling, i.e. at plan or run time.
    problems: tuple[str, ...]


# Names Jinja itself binds inside these blocks.
_IMPLICIT_NAMES: dict[type[nodes.Node], frozenset[str]] = {
    nodes.For: frozenset({"loop"}),
    nodes.Macro: frozenset({"varargs", "kwargs", "caller"}),
    nodes.CallBlock: frozenset({"caller"}),
}


@lru_cache(maxsize=4096)
def analyze(source: str, *, expression: bool = False) -> Analysis:
    """The names a template (or expression) reads and any filter or test it
    uses that Jinja lacks, for validation before any run.

    Raises ``TemplateFailed`` on a syntax error."""
    env = environment()
    text = source
    if expression:
        text = source.strip()
        if text.startswith("{{") and text.endswith("}}"):
            text = text[2:-2]
        text = "{{ " + text + " }}"
    try:
        tree = env.parse(text)
        return Analysis(_references(tree), _unknown_filters_and_tests(tree))
    except TemplateError as err:
        raise TemplateFailed(f"template syntax error: {err}") from err
    except RecursionError as err:
        raise TemplateFailed(f"template syntax error: {_TOO_DEEP}") from err


def _references(tree: nodes.Template) -> tuple[Reference, ...]:
    bound = _bound_names(tree)
    found: list[Reference] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        chain = _chain(node)
        if chain and chain[0] not in bound:
            found.append(Reference(chain))
    # Keep only the longest chain of each expression (a.b.c also yields a.b and a).
    longest = [r for r in found if not any(o is not r and o.parts[: len(r.parts)] == r.parts and len(o.parts) > len(r.parts) for o in found)]
    return tuple(dict.fromkeys(longest))


def _bound_names(tree: nodes.Template) -> set[str]:
    """Names the template binds itself (for, set, with, macro) or Jinja provides (``range``, ``loop``)."""
    bound = set(environment().globals)
    for node in tree.find_all((nodes.Name, *_IMPLICIT_NAMES)):
        if isinstance(node, nodes.Name):
            if node.ctx in ("store", "param"):
                bound.add(node.name)
            continue
        bound |= _IMPLICIT_NAMES[type(node)]
        if isinstance(node, nodes.Macro):
            bound.add(node.name)
    return bound


def _unknown_filters_and_tests(tree: nodes.Template) -> tuple[str, ...]:
    env = environment()
    problems: list[str] = []
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        what, known = ("filter", env.filters) if isinstance(node, nodes.Filter) else ("test", env.tests)
        if node.name not in known:
            close = difflib.get_close_matches(node.name, list(known), n=1)
            problems.append(f"template uses unknown {what} {node.name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return tuple(dict.fromkeys(problems))


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def _located(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message
