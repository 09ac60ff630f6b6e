"""Templates in SQL text: only values that cannot change the statement.

A value spliced into SQL (``WHERE id = '{{ vars.id }}'``) is code the moment
it holds a quote or a ``;``, and quoting a string right depends on the server
(MySQL reads backslashes as escapes, PostgreSQL does not). So the SQL keys of
the step and check kinds (their ``sql_keys``) take a ``{{ }}`` only where its
value is certain to be harmless, checked when the runbook is validated:

- a number: ``{{ vars.days | int }}``, ``{{ ... | float }}`` or a literal;
- a name: ``{{ vars.table | sql_name }}``, which refuses at render time
  anything but letters, digits and ``_``, with one optional ``schema.``.

Every other value goes in as a bind parameter: ``params: {id: "{{ vars.id }}"}``
and ``:id`` in the SQL (``sql`` steps and checks), which the driver sends
apart from the statement. ``{% if %}`` choosing between SQL written in the
runbook is fine: it adds no value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateRuntimeError

# Filters whose result is a number or a checked name, whatever went in.
SAFE_FILTERS = frozenset({"int", "float", "sql_name"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_MAX_NAME = 127


class SqlNameRefused(TemplateRuntimeError):
    """A value given to ``| sql_name`` that is not a plain name."""


def sql_name(value: Any) -> str:
    """``value`` when it is a plain SQL name (``orders``, ``app.orders``); refused otherwise."""
    text = str(value)
    if len(text) > _MAX_NAME or not _NAME.fullmatch(text):
        raise SqlNameRefused(
            # The value itself is not shown: it may be anything, a secret included.
            f"sql_name: a value of {len(text)} characters is not a plain table or column name (letters, digits and _,"
            " with one optional 'schema.'): a value that is not a name goes into SQL as a bind parameter (params:)",
        )
    return text


def install(env: Any, passthrough: tuple[type, ...] = ()) -> None:
    """Register ``sql_name``; values of the ``passthrough`` types (a plan's placeholders) pass as they are."""

    def filter_(value: Any) -> Any:
        return value if isinstance(value, passthrough) else sql_name(value)

    env.filters["sql_name"] = filter_


def unsafe_outputs(tree: nodes.Template) -> Iterator[nodes.Expr]:
    """The ``{{ }}`` expressions of a parsed template whose value could change SQL text."""
    for output in tree.find_all(nodes.Output):
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                continue
            if isinstance(node, nodes.Filter) and node.name in SAFE_FILTERS and _written_arguments(node):
                continue
            if isinstance(node, nodes.Const) and isinstance(node.value, (int, float)):
                continue
            yield node


def _written_arguments(node: nodes.Filter) -> bool:
    """Whether the filter's arguments are all written in the runbook: ``| int(vars.y)`` returns
    its argument, a value, when the input is not a number."""
    arguments = [*node.args, *(k.value for k in node.kwargs)]
    return node.dyn_args is None and node.dyn_kwargs is None and all(isinstance(a, nodes.Const) for a in arguments)


def problem(source: str, tree: nodes.Template, *, binds: bool) -> str | None:
    """Why ``source`` (SQL text holding a template, parsed as ``tree``) is refused, or None.
    ``binds``: whether the kind takes ``params:`` bind values."""
    unsafe = next(unsafe_outputs(tree), None)
    if unsafe is None:
        return None
    lines = source.splitlines()
    line = lines[unsafe.lineno - 1].strip() if 0 < unsafe.lineno <= len(lines) else source
    instead = (
        'pass it as a bind parameter, params: {NAME: "{{ ... }}"} and :NAME in the SQL'
        if binds
        else "this key takes no bind parameters: compare in a `sql` check or step with params: {NAME: ...} and :NAME"
    )
    return (
        f"a {{{{ }}}} value spliced into SQL text could change the statement (a quote or ';' in it): in {line[:80]!r},"
        f" {instead}; a number may be written {{{{ ... | int }}}}, a table or column name {{{{ ... | sql_name }}}}"
    )
