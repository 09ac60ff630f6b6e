"""The JSON Schema of the runbook format (``runbook schema``), for editors and CI linters.

Built from the pydantic models; each step kind's and check kind's keys are
added with ``if kind == X then <its keys>`` so an editor completes them.
"""

from __future__ import annotations

from typing import Any

from runbook.checks import CHECK_KINDS, get_check_kind
from runbook.model import CHECK_COMMON_KEYS, STEP_BODY_COMMON_KEYS, STEP_COMMON_KEYS, Runbook
from runbook.steps import STEP_KINDS, get_step_kind


def runbook_json_schema() -> dict[str, Any]:
    schema = Runbook.model_json_schema()
    defs = schema.setdefault("$defs", {})
    step_variants = []
    for name in STEP_KINDS:
        params = get_step_kind(name).Params.model_json_schema()
        defs.update(params.pop("$defs", {}))
        step_variants.append({"if": {"properties": {"kind": {"const": name}}}, "then": {"properties": params.get("properties", {})}})
    check_variants = []
    for name in CHECK_KINDS:
        params = get_check_kind(name).Params.model_json_schema()
        defs.update(params.pop("$defs", {}))
        check_variants.append({"if": {"properties": {"check": {"const": name}}}, "then": {"properties": params.get("properties", {})}})
    for model_name, common, variants, key in (
        ("Step", STEP_COMMON_KEYS, step_variants, "kind"),
        ("StepBody", STEP_BODY_COMMON_KEYS, step_variants, "kind"),
        ("Check", CHECK_COMMON_KEYS, check_variants, "check"),
    ):
        definition = defs[model_name]
        definition["properties"].pop("params", None)
        if model_name == "Step":
            definition["properties"]["with"] = {"type": "object", "description": "Parameters of the 'uses' definition."}
        definition["properties"][key]["enum"] = list(STEP_KINDS if key == "kind" else CHECK_KINDS)
        # Kind keys are validated per kind (see allOf), so the object stays open here.
        definition["additionalProperties"] = True
        definition["allOf"] = variants
        definition["x-common-keys"] = sorted(common)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "runbook"
    return schema
