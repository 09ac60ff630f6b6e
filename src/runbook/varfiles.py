"""Var values from the command line: ``--var-file FILE``, ``-e @FILE``, ``-e NAME=VALUE``, ``--var``.

A var file is a YAML (or JSON, which is YAML) mapping of var names to values,
read with the runbook's own bounded YAML reader. Its values are data, exactly
like ``--var`` values: never rendered as templates. A scalar becomes the text
``--var`` would have given (``true``, ``500``); a list or mapping its JSON.

Precedence, lowest first: each ``--var-file`` in order, then each ``-e`` in
order (a file or one value), then ``--var``, which overrides everything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runbook.errors import InvalidRunbook, UsageError
from runbook.planner import parse_var_overrides


def collect_overrides(var_items: Sequence[str] = (), var_files: Sequence[str] = (), extra_vars: Sequence[str] = ()) -> dict[str, str]:
    """Every var value given on the command line, merged in the documented precedence."""
    values: dict[str, str] = {}
    for file in var_files:
        values.update(read_var_file(Path(file), "--var-file"))
    for item in extra_vars:
        if item.startswith("@"):
            values.update(read_var_file(Path(item[1:]), "-e @FILE"))
        else:
            values.update(parse_var_overrides([item]))
    values.update(parse_var_overrides(list(var_items)))
    return values


_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def read_var_file(path: Path, flag: str) -> dict[str, str]:
    from runbook.yamlsource import load_yaml, read_file

    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    try:
        data = load_yaml(read_file(path), str(path)).data
    except InvalidRunbook as err:
        raise UsageError(f"{flag} {path}: not YAML or JSON: {err.diagnostics[0].message}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) and key.strip() for key in data):
        raise UsageError(f"{flag} {path}: expected a mapping of var names to values, like `db_host: db1`")
    odd = [key for key in data if not _VAR_NAME.match(key.strip())]
    if odd:
        # Not echoed: a var file that is the wrong file (a symlink to /etc/shadow) must not print its lines.
        raise UsageError(
            f"{flag} {path}: {len(odd)} key(s) are not var names (letters, digits, _ and -); is this the var file you meant?"
        )
    return {key.strip(): _as_text(value) for key, value in data.items()}


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)
