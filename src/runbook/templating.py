"""Templating through a sandboxed Jinja2 with StrictUndefined.

Runbooks reference ``{{ vars.x }}``, ``{{ env.NAME }}`` and
``{{ steps.<id>.outputs.<name> }}``. The sandbox refuses attribute tricks
(``''.__class__.__mro__``); a missing name is an error, never an empty string,
because an empty string in a deployment command is how accidents happen.

Hostile templates are bounded, not just sandboxed: one operation may build at
most ``MAX_TEMPLATE_CHARS`` characters (``'x' * 10**9``, ``|center(10**9)``,
``~`` doubling), an integer at most ``MAX_INT_BITS`` bits (``10**10**9``), all
loops of one render together at most ``MAX_LOOP_ITERATIONS`` iterations, a
render at most ``MAX_RENDER_SECONDS``; lists, dicts and sets cannot be mutated
(``l.extend(l)`` doubling). Any of these, like any error raised while
rendering, is a ``TemplateFailed`` naming where, never a traceback.

Shell strings (``render(..., shell=True)``: the ``run`` of command steps and
checks) get every ``{{ }}`` value quoted for the place it lands in, or refused
where that place is not certain: see ``runbook.shellquote``.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
import string
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateError, Undefined, nodes
from jinja2.nodes import EvalContext
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from runbook import direct_templates, shellquote, sqltext
from runbook.errors import RunbookError
from runbook.masking import MIN_SECRET_LENGTH, Masker, SecretText, brief, holds_secret

TOP_LEVEL_NAMES = frozenset({"vars", "env", "steps", "run", "runbook", "environment", "params", "result", "host"})


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

    def __iter__(self) -> Iterator[Placeholder]:
        # One symbolic item. Without this Python iterates through __getitem__(0), (1), ... forever.
        return iter([Placeholder(f"{self._path}[*]")])

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


# ---------------------------------------------------------------- limits

# Characters one template operation may build, and a rendered template may hold
# (the size limit of a runbook file: nothing legitimate renders bigger).
MAX_TEMPLATE_CHARS = 2 * 1024 * 1024
# Python refuses to print integers over 4300 digits (about 14,000 bits) anyway.
MAX_INT_BITS = 14_000
MAX_LOOP_ITERATIONS = 1_000_000
MAX_RENDER_SECONDS = 2.0
_FOR_LOOP = "runbook_for_loop_guard"
_CONCAT = "runbook_concat_guard"
_SLICE = "runbook_slice"


class _Budget:
    """What one render may still spend: loop iterations and wall-clock time."""

    __slots__ = ("deadline", "iterations")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.iterations = MAX_LOOP_ITERATIONS

    def tick(self) -> None:
        self.iterations -= 1
        if self.iterations < 0:
            raise SecurityError(f"loops ran more than {MAX_LOOP_ITERATIONS:,} iterations; templates must stay small")
        if not self.iterations & 0xFF:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g}s; templates must stay small")


_BUDGET: ContextVar[_Budget | None] = ContextVar("runbook_template_budget", default=None)


def _check_time() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.check_time()


def _too_big(what: str, size: int) -> SecurityError:
    return SecurityError(f"{what} would build {size:,} characters or items; the limit is {MAX_TEMPLATE_CHARS:,}")


def _weight(value: Any) -> int:
    """About how many characters ``value`` prints as, counting past the limit only
    a little. A container counts each reference to an item again: ``['x' * 10**6] * 500``
    is 4 KB of pointers but 500 MB of text, which is what printing, ``join``,
    ``tojson`` or ``string`` would build."""
    if isinstance(value, (str, bytes)):
        return len(value)
    total = 0
    pending = [value]
    while pending and total <= MAX_TEMPLATE_CHARS:
        item = pending.pop()
        if isinstance(item, (str, bytes)):
            total += len(item) + 4  # quotes and a separator
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2
            pending.extend(itertools.islice(item, MAX_TEMPLATE_CHARS))
        elif isinstance(item, dict):
            total += 2
            for key, val in itertools.islice(item.items(), MAX_TEMPLATE_CHARS):
                pending += (key, val)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 2  # at least its decimal digits
        else:
            total += 4  # numbers, None, placeholders, namespaces: small and bounded elsewhere
    return total


def _check_size(value: Any, what: str) -> Any:
    """``value`` if it is no bigger than the limit (see ``_weight``)."""
    weight = _weight(value)
    if weight > MAX_TEMPLATE_CHARS:
        # _weight stops counting soon after the limit: the true size may be far larger.
        raise SecurityError(f"{what} would build at least {weight:,} characters; the limit is {MAX_TEMPLATE_CHARS:,}")
    return value


def _check_operands(values: Iterable[Any], what: str) -> None:
    """Refuse, before an operation runs, operands that would print bigger than the limit
    (the operation may stringify them: ``join``, ``tojson``, ``~``, a placeholder's repr)."""
    for value in values:
        _check_size(value, what)


def _check_int_args(args: Iterable[Any], what: str) -> None:
    """Widths, counts and lengths passed to builtins: none may exceed the size limit."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_TEMPLATE_CHARS:
            raise SecurityError(f"{what}: argument {arg:,} is larger than {MAX_TEMPLATE_CHARS:,}")


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_format_string(fmt: str, args: Any, what: str) -> None:
    """Refuse widths and precisions above the size limit in %- and {}-format strings."""
    numbers: list[str] = [n for m in _PRINTF_SPEC.finditer(fmt) for n in m.groups() if n]
    try:
        numbers += [n for _, _, spec, _ in string.Formatter().parse(fmt) if spec for n in re.findall(r"\d+", spec)]
    except ValueError:
        pass  # not a {}-format string; str.format reports it itself
    if "*" in numbers:
        numbers.remove("*")
        values = args if isinstance(args, (tuple, list)) else (args,)
        _check_int_args(values, what)
    _check_int_args((int(n) for n in numbers if n.isdigit()), what)


# Filters whose numeric arguments are sizes (widths, counts) of what they build.
_SIZED_FILTERS = ("center", "indent", "wordwrap", "batch", "slice")
# Builtin methods likewise: 'x'.ljust(10**9), (1).to_bytes(10**9).
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "to_bytes"})


def _bounded_filter(name: str, original: Any) -> Any:
    """``original`` refusing, before it runs, arguments that would make it build more
    than the limit: every argument must itself be within it (a filter may print it),
    and filters that multiply their input have their result size estimated first."""
    what = f"|{name}"

    @functools.wraps(original)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, (EvalContext, Environment))]
        _check_operands([*values, *kwargs.values()], what)
        if name == "join" and values and kwargs.get("attribute") is None and len(values) < 4:
            # Materialized once, so that a generator is measured and then joined.
            items = list(itertools.islice(values[0], MAX_TEMPLATE_CHARS + 1))
            _check_size(items, what)
            args = tuple(items if a is values[0] else a for a in args)
        _check_size_estimate(_filter_result_size(name, values, kwargs), what)
        return _check_size(original(*args, **kwargs), what)

    return filter_


def _filter_result_size(name: str, values: list[Any], kwargs: dict[str, Any]) -> int:
    """An upper bound of what filter ``name`` builds from ``values`` (0: nothing beyond its input)."""
    if name in _SIZED_FILTERS:
        _check_int_args([*values[1:], *kwargs.values()], f"|{name}")
    text = values[0] if values and isinstance(values[0], str) else ""
    params = [*values[1:], *kwargs.values()]
    if name == "indent":
        width = values[1] if len(values) > 1 else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else int(width) if isinstance(width, int) else 4
        return len(text) + (text.count("\n") + 1) * per_line
    if name == "wordwrap":
        wrap = values[3] if len(values) > 3 else kwargs.get("wrapstring") or "\n"
        return len(text) + (len(text) + 1) * len(str(wrap))
    if name in ("batch", "slice"):
        count = values[1] if len(values) > 1 else kwargs.get("linecount", kwargs.get("slices", 0))
        fill = values[2] if len(values) > 2 else kwargs.get("fill_with")
        return _weight(values[0]) + (count if isinstance(count, int) else 0) * _weight(fill) if fill is not None else 0
    if name == "format" and isinstance(values[0] if values else None, str):
        _check_format_string(text, tuple(values[1:]) or kwargs, f"|{name}")
        return len(text) + sum(_weight(p) for p in params)
    if name == "replace" and len(values) >= 3 and all(isinstance(v, str) for v in values[:3]):
        old, new = values[1], values[2]
        count = text.count(old) if old else len(text) + 1
        return len(text) + count * max(len(new) - len(old), 0)
    if name == "join" and values:
        separator = values[1] if len(values) > 1 else kwargs.get("d", "")
        items = values[0] if isinstance(values[0], (list, tuple)) else ()
        return _weight(items) + _weight(separator) * len(items)
    if name == "sum":
        start = values[2] if len(values) > 2 else kwargs.get("start", 0)
        if not isinstance(start, (int, float)):
            # Adding lists or strings one by one copies the sum so far each time: quadratic.
            raise SecurityError("|sum adds numbers only; join lists with |batch or a loop instead")
    return 0


def _check_size_estimate(size: int, what: str) -> None:
    if size > MAX_TEMPLATE_CHARS:
        raise _too_big(what, size)


# ---------------------------------------------------------------- values derived from secrets

# Spellings one masker may hold; a template deriving more (a loop over ``token ~ i``) is refused.
MAX_MASKED_SPELLINGS = 20_000


def _maskers_of(values: Iterable[Any]) -> tuple[Masker, ...]:
    """The maskers of every secret among ``values`` and inside their lists, tuples, dicts and
    namespaces (``vars | string`` holds every var)."""
    found: dict[int, Masker] = {}
    pending = list(values)
    while pending:
        value = pending.pop()
        if isinstance(value, (SecretText, _SecretIterator)):
            found.update((id(m), m) for m in value.maskers)
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, Namespace):
            pending.extend(value._data.values())
    return tuple(found.values())


def _derive(value: Any, maskers: tuple[Masker, ...]) -> Any:
    """``value``, computed from a secret, registered as a secret itself (each string in it),
    and tainted in turn so that what is computed from it is registered as well. Fail closed:
    whatever an operation on a secret returns counts as secret, however it was transformed."""
    if not maskers:
        return value
    if isinstance(value, str):
        for masker in maskers:
            masker.add(str(value))
            if len(masker.secrets) > MAX_MASKED_SPELLINGS:
                raise SecurityError(f"templates derived more than {MAX_MASKED_SPELLINGS:,} values from secrets; templates must stay small")
        if isinstance(value, SecretText):
            return value
        derived = SecretText(value, maskers)
        derived.derived = True
        return derived
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Its hex, its items (numbers) and its decodings would each print the secret in a
        # spelling no masker knows: fail closed.
        raise SecurityError("a secret cannot be turned into bytes in a template (.encode()); keep it text")
    if type(value) in (list, tuple):
        return type(value)(_derive(v, maskers) for v in value)
    if isinstance(value, dict):
        return {_derive(k, maskers): _derive(v, maskers) for k, v in value.items()}
    if isinstance(value, Iterator):
        return _SecretIterator(value, maskers)
    return value


class _SecretIterator:
    """An iterator computed from a secret (``| reverse`` of a list, ``| map``): its items are
    derived, and it names its maskers, so what consumes it (``| join``) is derived too."""

    __slots__ = ("_items", "maskers")

    def __init__(self, items: Iterator[Any], maskers: tuple[Masker, ...]) -> None:
        self._items = items
        self.maskers = maskers

    def __iter__(self) -> _SecretIterator:
        return self

    def __next__(self) -> Any:
        return _derive(next(self._items), self.maskers)


def _tainting_filter(original: Any) -> Any:
    """``original`` whose result is a secret when any of its arguments holds one."""

    @functools.wraps(original)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        return _derive(original(*args, **kwargs), _maskers_of([*args, *kwargs.values()]))

    return filter_


def _bounded_output(value: Any) -> Any:
    """Jinja's ``finalize``: a ``{{ }}`` value is refused before it is turned into text.

    A value computed from a secret is printed only where the masker can hide it: a list or
    mapping holding pieces of one (``| list``) is registered as the text it prints as, and
    a piece shorter than ``MIN_SECRET_LENGTH`` (``token[0]``, a loop over its characters),
    which no masker can recognise, is refused."""
    value = _check_size(value, "the value of a {{ }}")
    if isinstance(value, str):
        if isinstance(value, SecretText) and value.derived and 0 < len(value) < MIN_SECRET_LENGTH:
            raise SecurityError(
                f"a piece of a secret of {len(value)} character(s) would be printed; pieces shorter than "
                f"{MIN_SECRET_LENGTH} characters cannot be masked"
            )
        return value
    if holds_secret(value):
        return _derive(str(value), _maskers_of([value]))
    return value


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
    if n > 100 or max > 1000:
        raise SecurityError("lipsum() is limited to 100 paragraphs of at most 1000 words")
    return generate_lorem_ipsum(n, html, min, max)


def _loop_guard(iterable: Any) -> Iterator[Any]:
    budget = _BUDGET.get()
    # The characters of a secret are pieces of it (a plain str iterates as plain str).
    maskers = iterable.maskers if isinstance(iterable, SecretText) else ()
    for item in iterable:
        if maskers:
            item = _derive(item, maskers)
        if budget is not None:
            budget.tick()
        yield item


def _concat_guard(*parts: Any) -> str:
    _check_size_estimate(sum(map(_weight, parts)), "'~'")
    texts = [str(p) for p in parts]
    _check_time()
    result: str = _derive("".join(texts), _maskers_of(parts))
    return result


class _Guards(NodeTransformer):
    """Route every loop, ``~`` and slice through the guards above."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # in place
        node.iter = nodes.Call(nodes.Name(_FOR_LOOP, "load"), [node.iter], [], None, None, lineno=node.lineno)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        # Jinja compiles x[a:b] to plain Python subscription, past the sandbox's getitem;
        # x[slice(a, b)] goes through it (where a piece of a secret becomes a secret).
        self.generic_visit(node)  # in place
        if isinstance(node.arg, nodes.Slice):
            bounds = [part or nodes.Const(None) for part in (node.arg.start, node.arg.stop, node.arg.step)]
            node.arg = nodes.Call(nodes.Name(_SLICE, "load"), bounds, [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)  # in place
        return nodes.Call(nodes.Name(_CONCAT, "load"), node.nodes, [], None, None, lineno=node.lineno)


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus size, loop and time bounds."""

    intercepted_binops = frozenset({"*", "**", "+", "-", "/", "//", "%"})

    def __init__(self, **options: Any) -> None:
        # Every {{ }} value is measured before Jinja turns it into text.
        super().__init__(finalize=_bounded_output, **options)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Guards().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        _check_operands((left, right), f"'{operator}'")
        sized = (str, bytes, list, tuple)
        if operator == "*":
            if isinstance(left, sized) and isinstance(right, int):
                if _weight(left) * right > MAX_TEMPLATE_CHARS:
                    raise _too_big(f"{brief(left)} * {right}", _weight(left) * right)
            elif isinstance(right, sized) and isinstance(left, int):
                if _weight(right) * left > MAX_TEMPLATE_CHARS:
                    raise _too_big(f"{left} * {brief(right)}", _weight(right) * left)
            elif isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise SecurityError(f"the product would exceed {MAX_INT_BITS:,} bits")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and right * abs(left).bit_length() > MAX_INT_BITS:
                raise SecurityError(f"{left} ** {right} would exceed {MAX_INT_BITS:,} bits")
        elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
            _check_size_estimate(_weight(left) + _weight(right), "'+'")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left, right, "'%'")
            _check_size_estimate(len(left) + _weight(right), "'%'")
        result = _check_size(super().call_binop(context, operator, left, right), f"'{operator}'")
        return _derive(result, _maskers_of((left, right)))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _check_time()
        name = getattr(__obj, "__name__", "")
        _check_operands([*args, *kwargs.values()], "'~'" if __obj is _concat_guard else f"{name or 'call'}()")
        if isinstance(__obj, type(len)):  # builtin functions and methods: str.center, int.to_bytes...
            if name in _SIZED_METHODS:
                _check_int_args([*args, *kwargs.values()], f"{name}()")
            if name in ("replace", "join", "translate", "expandtabs"):
                _check_size_estimate(_amplified(__obj, args), f"{name}()")
        result = _check_size(super().call(__context, __obj, *args, **kwargs), f"{getattr(__obj, '__name__', 'call')}()")
        # token.upper(), '{}'.format(token), '-'.join(token.split('_')): the result is a secret too.
        return _derive(result, _maskers_of([getattr(__obj, "__self__", None), *args, *kwargs.values()]))

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_operands((argument,), "[]")  # a placeholder prints its subscript
        # token[2:], token[::-1]: a piece of a secret is a secret.
        return _derive(super().getitem(obj, argument), _maskers_of((obj,)))

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def format_(*args: Any, **kwargs: Any) -> str:
            _check_format_string(fmt, args, "str.format")
            _check_size_estimate(len(fmt) + sum(map(_weight, [*args, *kwargs.values()])), "str.format")
            if re.search(r":[^{}]*\{", fmt):  # a width taken from the arguments: '{:>{}}'
                _check_int_args([*args, *kwargs.values()], "str.format")
            return _check_size(wrapped(*args, **kwargs), "str.format")

        return format_


def _amplified(method: Any, args: tuple[Any, ...]) -> int:
    """An upper bound of the size of ``str.replace/join/translate/expandtabs`` results."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return 0
    name = method.__name__
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        return len(owner) + count * max(len(args[1]) - len(args[0]), 0)
    if name == "join" and args and isinstance(args[0], (list, tuple)):
        return _weight(args[0]) + len(owner) * len(args[0])
    if name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        return len(owner) * max(longest, 1)
    if name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        return len(owner) * max(size, 1)
    return 0


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    for name in ("int", "float"):
        env.filters[name] = _keep_placeholder(env.filters[name])
    shellquote.install(env, passthrough=(Placeholder,))
    sqltext.install(env, passthrough=(Placeholder,))
    for name, original in list(env.filters.items()):
        env.filters[name] = _tainting_filter(_bounded_filter(name, original))
    env.globals["lipsum"] = _bounded_lipsum
    env.globals[_FOR_LOOP] = _loop_guard
    env.globals[_CONCAT] = _concat_guard
    env.globals[_SLICE] = slice
    return env


def _keep_placeholder(convert: Any) -> Any:
    """A conversion filter that leaves a plan's placeholder as it is instead of turning it into 0."""

    def filter_(value: Any, *args: Any, **kwargs: Any) -> Any:
        return value if isinstance(value, Placeholder) else convert(value, *args, **kwargs)

    return filter_


# A large runbook holds thousands of distinct template strings, each parsed by
# validation and rendered by plan; parsing is most of what a direct template costs.
_TEMPLATES_CACHED = 16384


@lru_cache(maxsize=_TEMPLATES_CACHED)
def parsed(source: str) -> nodes.Template:
    """The parsed tree of ``source``, shared: read it, never change it."""
    env = environment()
    return direct_templates.parse_dotted(env, source) or env.parse(source)


@lru_cache(maxsize=_TEMPLATES_CACHED)
def shell_quoted(source: str) -> nodes.Template:
    """The tree of ``source``, a shell string, with every value quoted for its place;
    raises ``ShellPlacementError`` where that place is not certain."""
    env = environment()
    # Quoting rewrites the tree: a copy of its own.
    tree = shellquote.quote_template(direct_templates.parse_dotted(env, source) or env.parse(source))
    tree.set_environment(env)
    return tree


@lru_cache(maxsize=_TEMPLATES_CACHED)
def _compile(source: str, shell: bool = False) -> Any:
    """Something with ``generate(context)``: a ``DirectTemplate`` when the template is
    only text and (filtered) names, else Jinja's compiled template."""
    env = environment()
    if shell:
        tree = shell_quoted(source)
        return direct_templates.direct(env, tree) or env.from_string(tree)
    # Jinja's optimizer rewrites the tree it compiles, so not the shared one.
    return direct_templates.direct(env, parsed(source)) or env.from_string(source)


@lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Any:
    # An undefined result (``vars.text.nosuchattr``, an unsafe attribute) is an error, not None (false).
    return environment().compile_expression(source, undefined_to_none=False)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(text: str, context: Mapping[str, Any], where: str = "", *, shell: bool = False) -> str:
    """Render ``text``; ``shell``: it is a /bin/sh command line, so every value is shell-quoted."""
    if not is_template(text):
        return text
    token = _BUDGET.set(_Budget())
    try:
        size = 0
        chunks: list[str] = []
        for chunk in _compile(text, shell).generate(context):
            size += len(chunk)
            if size > MAX_TEMPLATE_CHARS:
                raise _too_big("the rendered template", size)
            chunks.append(chunk)
        rendered = "".join(chunks)
        if shell:
            shellquote.refuse_corrupted_lines(rendered)
        return rendered
    except Exception as err:
        raise _failure(err, where, "template") from err
    finally:
        _BUDGET.reset(token)


def render_data(value: Any, context: Mapping[str, Any], where: str = "", *, shell_keys: Collection[str] = ()) -> Any:
    """Render every template string inside nested dicts and lists; the string
    values of the top-level ``shell_keys`` are shell command lines."""
    if isinstance(value, str):
        return render(value, context, where)
    if isinstance(value, dict):
        return {
            k: render(v, context, _join(where, k), shell=True) if k in shell_keys and isinstance(v, str) else render_data(v, context, _join(where, k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [render_data(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def evaluate(expression: str, context: Mapping[str, Any], where: str = "") -> Any:
    """Evaluate a ``when:`` expression (with or without surrounding braces)."""
    source = expression.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2]
    token = _BUDGET.set(_Budget())
    try:
        value = _compile_expression(source)(**context)
        if isinstance(value, Undefined):
            bool(value)  # StrictUndefined: raises, naming what is undefined
        return _check_size(value, "the expression")
    except Exception as err:
        raise _failure(err, where, "expression") from err
    finally:
        _BUDGET.reset(token)


def _failure(err: Exception, where: str, what: str) -> TemplateFailed:
    """Any error raised while rendering, as one line naming where (Jinja runs
    arbitrary expressions: ``1/0``, ``range(10**9)`` and ``'a' - 1`` all raise)."""
    if isinstance(err, TemplateFailed):
        return err
    if isinstance(err, UnknownName):
        return TemplateFailed(_located(where, str(err)))
    if isinstance(err, RecursionError):
        return TemplateFailed(_located(where, f"{what} error: {_TOO_DEEP}"))
    if isinstance(err, MemoryError):
        return TemplateFailed(_located(where, f"{what} error: it needs more memory than there is"))
    if isinstance(err, TemplateError):
        return TemplateFailed(_located(where, f"{what} error: {err}"))
    return TemplateFailed(_located(where, f"{what} error: {type(err).__name__}: {err}"))


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


@lru_cache(maxsize=_TEMPLATES_CACHED)
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
        tree = parsed(text)
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
    # Keep only the longest chain of each expression (a.b.c also yields a.b and a): drop every
    # chain that is a proper prefix of another. One set of prefixes, not a pairwise comparison
    # (quadratic: 4,000 references in one template took 8 s).
    prefixes = {r.parts[:n] for r in found for n in range(1, len(r.parts))}
    return tuple(dict.fromkeys(r for r in found if r.parts not in prefixes))


@lru_cache(maxsize=_TEMPLATES_CACHED)
def reads(source: str) -> tuple[Reference, ...]:
    """Every value ``source`` reads, as the whole dotted chain at each place it reads one:
    ``vars[name]`` and ``{% for k in vars %}`` read ``vars`` itself, even when ``vars.x``
    is also read elsewhere (``analyze`` keeps only the longest chains, which is what
    validation wants and what a fingerprint must not use)."""
    tree = parsed(source)
    bound = _bound_names(tree)
    inner: set[int] = set()
    for access in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(access, nodes.Getattr):
            inner.add(id(access.node))
        elif isinstance(access, nodes.Getitem) and isinstance(access.arg, nodes.Const) and isinstance(access.arg.value, str):
            inner.add(id(access.node))
    found: list[Reference] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner or (isinstance(node, nodes.Name) and node.ctx != "load"):
            continue
        chain = _chain(node)
        if chain and chain[0] not in bound:
            found.append(Reference(chain))
    return tuple(dict.fromkeys(found))


def _bound_names(tree: nodes.Template) -> set[str]:
    """Names the template binds itself (for, set, with, macro) or Jinja provides (``range``, ``loop``)."""
    bound = set(environment().globals)
    binders: tuple[type[nodes.Node], ...] = (nodes.Name, *_IMPLICIT_NAMES)
    node: nodes.Node
    for node in tree.find_all(binders):
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
