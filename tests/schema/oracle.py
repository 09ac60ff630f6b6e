"""``runbook schema`` checked by the real ``jsonschema`` package.

Draft 2020-12 is what the schema declares (and check-jsonschema runs); draft 7
is what VS Code's YAML extension implements (it ignores ``unevaluatedProperties``),
so each corpus is checked under both.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

from runbook.schema import definition_json_schema, runbook_json_schema

DRAFTS = {"2020-12": jsonschema.Draft202012Validator, "7": jsonschema.Draft7Validator}


@cache
def _validator(definition: bool, draft: str) -> Any:
    schema = definition_json_schema() if definition else runbook_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return DRAFTS[draft](schema)


def schema_errors(data: Any, *, definition: bool = False, draft: str = "2020-12") -> list[str]:
    """Each error as ``path: message``; [] when ``data`` is valid."""
    return sorted(f"{e.json_path}: {e.message}" for e in _validator(definition, draft).iter_errors(data))


def editor_errors(data: Any, *, definition: bool = False) -> list[str]:
    """The errors of the draft-7 view (VS Code's YAML extension)."""
    return schema_errors(data, definition=definition, draft="7")
