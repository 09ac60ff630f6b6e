"""``runbook schema`` checked by the real ``jsonschema`` package (Draft 2020-12)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

from runbook.schema import definition_json_schema, runbook_json_schema


@cache
def _validator(definition: bool = False) -> jsonschema.Draft202012Validator:
    schema = definition_json_schema() if definition else runbook_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(data: Any, *, definition: bool = False) -> list[str]:
    """Each error as ``path: message``; [] when ``data`` is valid."""
    return sorted(f"{e.json_path}: {e.message}" for e in _validator(definition).iter_errors(data))
