"""Before a run: the optional extras its runbook needs, all installed, or one clear refusal.

The base install has no database driver but SQLite's and no alembic (see the
README's dependency table). A runbook that names an ``alembic`` step or check,
or a connection to PostgreSQL or MySQL, needs the extra that installs it; this
says so before the first step, naming every missing extra at once, instead of a
``ModuleNotFoundError`` halfway through. The mapping from a module to its extra
is ``runbook.errors.EXTRA_OF_MODULE``; the state store's driver is checked where
it is opened (``state/connect.py``), and a connection's again where its engine
is made (``connections.py``), for a URL only known at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from runbook.errors import EXTRA_OF_MODULE, MissingExtra, RunbookError
from runbook.model import Runbook

if TYPE_CHECKING:
    from runbook.planner import Plan

# What each kind of step or check imports that the base install lacks.
_KIND_MODULES = {("kind", "alembic"): "alembic", ("check", "alembic_revision"): "alembic"}
# A connection URL's dialect (before any +driver) -> the module of the driver runbook uses for it.
_DIALECT_MODULES = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or one blocked in sys.modules
        return False


def check_plan(plan: Plan) -> None:
    """``check_runbook`` for a planned run, with its connections rendered where they can be."""
    from runbook.planner import template_context
    from runbook.templating import render

    context = template_context(plan.loaded, plan.resolved)
    urls: dict[str, str] = {}
    for name, template in plan.runbook.connections.items():
        try:
            urls[name] = render(template, context, f"connections.{name}")
        except RunbookError:
            continue  # reads a step's output: checked when its engine is made
    check_runbook(plan.runbook, urls)


def check_runbook(runbook: Runbook, connection_urls: Mapping[str, str]) -> None:
    """Raise MissingExtra naming every extra ``runbook`` needs that is not installed.
    ``connection_urls``: the connections' URLs as far as they render before the run."""
    missing: dict[str, str] = {}
    for what, module in _needs(runbook, connection_urls):
        extra = EXTRA_OF_MODULE[module]
        if extra not in missing and not installed(module):
            missing[extra] = what
    if missing:
        raise MissingExtra(missing)


def _needs(runbook: Runbook, connection_urls: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    for key, value in _kinds(runbook.model_dump(mode="json")):
        module = _KIND_MODULES.get((key, value))
        if module is not None:
            yield f"{'a step of kind' if key == 'kind' else 'a check'} {value!r}", module
    for name, url in connection_urls.items():
        dialect = url.partition("://")[0].partition("+")[0].lower() if "://" in url else ""
        driver = url.partition("://")[0].partition("+")[2].lower()
        module = _DIALECT_MODULES.get(dialect)
        # An explicit other driver (postgresql+psycopg2://) is the operator's choice and install.
        if module is not None and driver in ("", module):
            yield f"connection {name!r}", module


def _kinds(data: Any) -> Iterator[tuple[str, str]]:
    """Every ``kind:`` and ``check:`` value anywhere in the runbook (steps, bodies, checks, criteria)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("kind", "check") and isinstance(value, str):
                yield key, value
            else:
                yield from _kinds(value)
    elif isinstance(data, list):
        for value in data:
            yield from _kinds(value)
