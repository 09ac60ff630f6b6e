"""Render the templates most runbooks are made of without compiling them.

Jinja turns every template into Python source and compiles it: about 1 ms per
distinct string, which is most of ``runbook plan`` on a large runbook (2,000
steps hold some 6,000 distinct strings: titles, commands, gate names). Nearly
all of them are text with dotted names in between, sometimes filtered:
``Step 4 on {{ vars.target }}``, ``echo {{ steps.s3.outputs.n | shell_quote('word') }}``.
For those, walking the parsed tree costs microseconds.

Only the node dispatch is ours; every operation with meaning is Jinja's own,
called exactly as the code Jinja generates calls it: names resolve from the
context and then the globals or become ``environment.undefined``; attributes and
items go through ``environment.getattr``/``getitem`` (the sandbox's checks);
filters come from ``environment.filters`` with their ``pass_*`` argument; each
``{{ }}`` value is ``str(environment.finalize(value))``. Any other node (calls,
operators, loops, tests, conditionals) and any filter that wants the template
context send the template to Jinja's compiler. tests/foundation/test_direct_templates.py
renders generated templates both ways and requires the same text or the same error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import Environment, nodes
from jinja2.nodes import EvalContext
from jinja2.utils import _PassArg

# Text up to the next tag as Jinja's lexer finds it ({{, {% or {#; a lone { is text).
# Jinja rewrites \r\n in text; such templates take Jinja's parser.
_TEXT = r"(?:[^{\r]|\{(?![{%#]))*"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VALUE = r"\{\{[ \t]*(" + _NAME + r"(?:\." + _NAME + r")*)[ \t]*\}\}"
_DOTTED_ONLY = re.compile(_TEXT + "(?:" + _VALUE + _TEXT + ")*")
_VALUES = re.compile(_VALUE)
# Names the parser reads as constants or operators, not as variables.
_NOT_VARIABLES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"})


class DirectTemplate:
    """A parsed template of text, names, attributes, constant subscripts and filters."""

    __slots__ = ("_env", "_parts")

    def __init__(self, env: Environment, parts: list[nodes.Node]) -> None:
        self._env = env
        self._parts = parts

    def generate(self, context: Mapping[str, Any]) -> Iterator[str]:
        env = self._env
        for part in self._parts:
            if isinstance(part, nodes.TemplateData):
                yield part.data
            else:
                yield str(env.finalize(_evaluate(env, part, context)))  # type: ignore[misc]  # finalize is set


def parse_dotted(env: Environment, source: str) -> nodes.Template | None:
    """The tree Jinja's parser builds for ``source`` when it is only text and
    ``{{ dotted.names }}``, built without Jinja's lexer (a third of validating a
    large runbook); None for anything else."""
    if _DOTTED_ONLY.fullmatch(source) is None:
        return None
    parts: list[nodes.Node] = []
    position = 0
    for match in _VALUES.finditer(source):
        if match.start() > position:
            parts.append(nodes.TemplateData(source[position : match.start()], lineno=1))
        first, *attributes = match.group(1).split(".")
        if first in _NOT_VARIABLES:
            return None
        value: nodes.Expr = nodes.Name(first, "load", lineno=1)
        for attribute in attributes:
            value = nodes.Getattr(value, attribute, "load", lineno=1)
        parts.append(value)
        position = match.end()
    if position < len(source):
        parts.append(nodes.TemplateData(source[position:], lineno=1))
    tree = nodes.Template([nodes.Output(parts, lineno=1)], lineno=1)
    tree.set_environment(env)
    return tree


def direct(env: Environment, tree: nodes.Template) -> DirectTemplate | None:
    """A ``DirectTemplate`` for ``tree``, or None when Jinja must compile it."""
    if env.finalize is None or _PassArg.from_obj(env.finalize) is not None:
        return None
    parts: list[nodes.Node] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for child in statement.nodes:
            if not (isinstance(child, nodes.TemplateData) or _supported(env, child)):
                return None
            parts.append(child)
    return DirectTemplate(env, parts)


def _supported(env: Environment, node: nodes.Node) -> bool:
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, nodes.Name):
        return node.ctx == "load"
    if isinstance(node, nodes.Getattr):
        return node.ctx == "load" and _supported(env, node.node)
    if isinstance(node, nodes.Getitem):
        return node.ctx == "load" and isinstance(node.arg, nodes.Const) and _supported(env, node.node)
    if isinstance(node, nodes.Filter):
        function = env.filters.get(node.name)
        return (
            function is not None
            and node.node is not None
            and _PassArg.from_obj(function) in (None, _PassArg.environment, _PassArg.eval_context)
            and not node.kwargs
            and node.dyn_args is None
            and node.dyn_kwargs is None
            and all(isinstance(arg, nodes.Const) for arg in node.args)
            and _supported(env, node.node)
        )
    return False


def _evaluate(env: Environment, node: nodes.Node, context: Mapping[str, Any]) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Name):
        if node.name in context:
            return context[node.name]
        if node.name in env.globals:
            return env.globals[node.name]
        return env.undefined(name=node.name)
    if isinstance(node, nodes.Getattr):
        return env.getattr(_evaluate(env, node.node, context), node.attr)
    if isinstance(node, nodes.Getitem):
        return env.getitem(_evaluate(env, node.node, context), node.arg.value)  # type: ignore[attr-defined]  # a Const
    assert isinstance(node, nodes.Filter) and node.node is not None
    function = env.filters[node.name]
    value = _evaluate(env, node.node, context)
    args = [arg.value for arg in node.args]  # type: ignore[attr-defined]  # Consts
    pass_arg = _PassArg.from_obj(function)
    if pass_arg is _PassArg.environment:
        return function(env, value, *args)
    if pass_arg is _PassArg.eval_context:
        return function(EvalContext(env), value, *args)
    return function(value, *args)
