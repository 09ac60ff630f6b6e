"""The JSON Schemas of the runbook format (``runbook schema``), for editors and CI linters.

They describe a file **as written**, before the loader expands its shorthands
(``timeout: 5m``, ``retries: 3``, ``needs: backup``, ``name: value`` vars, a
string success criterion or message, ``uses:`` steps without ``kind``), and a
kind's key may hold a template wherever it is checked only once rendered. So
every runbook ``runbook validate`` accepts is valid here; what the schema
cannot see (references between steps, vars and connections, template names,
cross-key rules of a kind) is left to ``runbook validate``.

Built from the pydantic models: each step kind's and check kind's keys are
added with ``if kind == X then <its keys>``, and ``unevaluatedProperties: false``
refuses any key that is neither common nor the kind's.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from runbook.checks import CHECK_KINDS, get_check_kind
from runbook.model import CHECK_COMMON_KEYS, STEP_BODY_COMMON_KEYS, STEP_COMMON_KEYS, Runbook, parse_duration
from runbook.reference import describe, plain
from runbook.steps import STEP_KINDS, get_step_kind

# No web address is promised: a URN names the schemas (editors match files by path, not by $id).
SCHEMA_ID = "urn:runbook:schema:runbook"
DEFINITION_SCHEMA_ID = "urn:runbook:schema:step-definition"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# ``90``, ``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` (model.parse_duration; spaces are ignored).
_DURATION_TEXT = r" *(?:(?:[0-9]+(?:\.[0-9]+)?) *(?:ms|s|m|h|d) *)+|[ +]*(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *"
DURATION: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": f"^(?:{_DURATION_TEXT})$"},
    ],
    "description": "A duration: seconds (90), or 250ms, 30s, 5m, 1h30m, 2d.",
}
# A template, rendered before the value is checked: any string holding ``{{`` or ``{%``.
TEMPLATE: dict[str, Any] = {"type": "string", "pattern": r"\{\{|\{%", "description": "A template, checked once rendered."}


# pydantic (lax mode) also takes these strings for a bool, and numbers written as strings.
_BOOL_WORDS = ("0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes")
_BOOL_TEXT = "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word) for word in _BOOL_WORDS)
LAX_BOOL: dict[str, Any] = {"type": "string", "pattern": f"^ *(?:{_BOOL_TEXT}) *$"}
LAX_INT: dict[str, Any] = {"type": "string", "pattern": r"^ *[+-]?[0-9]+ *$"}
LAX_NUMBER: dict[str, Any] = {"type": "string", "pattern": r"^ *[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *$"}


class _Written(GenerateJsonSchema):
    """pydantic's schema generator, describing what pydantic accepts as written: a duration
    as text or seconds, a bool or number also as the strings pydantic converts."""

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return {"anyOf": [super().bool_schema(schema), LAX_BOOL]}

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return {"anyOf": [super().int_schema(schema), LAX_INT]}

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return {"anyOf": [super().float_schema(schema), LAX_NUMBER]}

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        if schema["function"].get("function") is parse_duration:
            return copy.deepcopy(DURATION)
        return super().function_before_schema(schema)


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(schema_generator=_Written)


# ---------------------------------------------------------------- the runbook schema


def runbook_json_schema() -> dict[str, Any]:
    schema = _model_schema(Runbook)
    defs = schema.setdefault("$defs", {})
    _shorthands(defs)
    step_variants, body_variants = _step_kind_variants(defs, uses_allowed=True), _step_kind_variants(defs, uses_allowed=False)
    check_variants = _check_kind_variants(defs)
    _step(defs["Step"], step_variants)
    _step_body(defs["StepBody"], body_variants)
    _check(defs["Check"], check_variants)
    schema = {"$schema": DRAFT, "$id": SCHEMA_ID, "title": "runbook", **schema}
    _describe(schema)
    return schema


def schema_document(*, definition: bool = False) -> dict[str, Any]:
    return definition_json_schema() if definition else runbook_json_schema()


def _shorthands(defs: dict[str, Any]) -> None:
    """The short forms the models accept before validation (their ``_shorthand`` validators)."""
    estimate_text = f"(?:{_DURATION_TEXT})(?:-(?:{_DURATION_TEXT}))?"
    _either(defs, "Estimate", [{"type": "number", "minimum": 0}, {"type": "string", "pattern": f"^{estimate_text}$"}])
    _either(defs, "Retries", [{"type": "integer", "minimum": 0, "maximum": 100}])
    _either(defs, "Var", [{"not": {"type": "object"}}])
    _either(defs, "SuccessCriterion", [{"type": "string"}])
    _either(defs, "Message", [{"type": "string"}])


def _either(defs: dict[str, Any], name: str, short: list[dict[str, Any]]) -> None:
    """``defs[name]`` accepts its short forms too; the mapping form moves to ``NameMapping``."""
    full = defs.pop(name)
    defs[f"{name}Mapping"] = full
    defs[name] = {"anyOf": [*short, {"$ref": f"#/$defs/{name}Mapping"}], "description": full.get("description", "")}


def _step(step: dict[str, Any], variants: list[dict[str, Any]]) -> None:
    step.pop("additionalProperties", None)
    props = step["properties"]
    props.pop("params", None)
    props["kind"] = {"type": "string", "enum": list(STEP_KINDS)}
    props["needs"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    props["uses"] = {"type": "string"}
    props["with"] = {"type": "object"}
    step["required"] = ["id"]
    step["allOf"] = [
        *variants,
        # Without ``uses`` a step names its kind; with it, the definition may, and then the
        # kind's keys written here are unknown to the schema.
        {"if": {"required": ["uses"]}, "then": {"if": {"not": {"required": ["kind"]}}, "then": {"additionalProperties": True}}, "else": {"required": ["kind"]}},
        {"if": {"not": {"required": ["uses"]}}, "then": {"not": {"required": ["with"]}}},
    ]
    step["unevaluatedProperties"] = False
    _closed(variants, props)


def _closed(variants: list[dict[str, Any]], common: dict[str, Any]) -> None:
    """Each kind's keys closed with ``additionalProperties: false`` beside the common keys too:
    draft-7 editors (VS Code's YAML extension) ignore ``unevaluatedProperties``."""
    for variant in variants:
        then = variant["then"]
        # ``true``: the common key's value is checked (and described) by the common properties.
        then["properties"] = {**{key: True for key in common}, **then["properties"]}
        then["additionalProperties"] = False


def _step_body(body: dict[str, Any], variants: list[dict[str, Any]]) -> None:
    body.pop("additionalProperties", None)
    body["properties"].pop("params", None)
    body["properties"]["kind"] = {"type": "string", "enum": list(STEP_KINDS)}
    body["allOf"] = variants
    body["unevaluatedProperties"] = False
    _closed(variants, body["properties"])


def _check(check: dict[str, Any], variants: list[dict[str, Any]]) -> None:
    check.pop("additionalProperties", None)
    check["properties"].pop("params", None)
    check["properties"]["check"] = {"type": "string", "enum": list(CHECK_KINDS)}
    check["allOf"] = variants
    check["unevaluatedProperties"] = False
    _closed(variants, check["properties"])


def _step_kind_variants(defs: dict[str, Any], *, uses_allowed: bool) -> list[dict[str, Any]]:
    variants = []
    common = STEP_COMMON_KEYS if uses_allowed else STEP_BODY_COMMON_KEYS
    for name in STEP_KINDS:
        params = _params_schema(get_step_kind(name).Params, defs)
        # A common key (the http step's ``timeout``) is the step's, never the kind's.
        then: dict[str, Any] = {"properties": {k: v for k, v in params["properties"].items() if k not in common}}
        if params.get("required") or params.get("oneOf"):
            # With ``uses`` the definition may give the required keys.
            required = {key: params[key] for key in ("required", "oneOf") if params.get(key)}
            then.update({"if": {"not": {"required": ["uses"]}}, "then": required} if uses_allowed else required)
        variants.append({"if": {"required": ["kind"], "properties": {"kind": {"const": name}}}, "then": then})
    return variants


def _check_kind_variants(defs: dict[str, Any]) -> list[dict[str, Any]]:
    variants = []
    for name in CHECK_KINDS:
        params = _params_schema(get_check_kind(name).Params, defs)
        then: dict[str, Any] = {"properties": {k: v for k, v in params["properties"].items() if k not in CHECK_COMMON_KEYS}}
        then.update({key: params[key] for key in ("required", "oneOf") if params.get(key)})
        variants.append({"if": {"required": ["check"], "properties": {"check": {"const": name}}}, "then": then})
    return variants


def _params_schema(params_model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    """A kind's keys; each may hold a template where its value is checked once rendered."""
    params = _model_schema(params_model)
    for def_name, definition in params.pop("$defs", {}).items():
        if isinstance(definition.get("properties"), dict):  # a kind's nested keys (pause_when items) may be templates too
            definition = {**definition, "properties": {key: templatable(value) for key, value in definition["properties"].items()}}
        defs.setdefault(def_name, definition)
    params["properties"] = {key: templatable(value) for key, value in params.get("properties", {}).items()}
    return params


_TYPED_KEYWORDS = ("type", "enum", "const", "$ref", "pattern", "minimum", "maximum", "minLength", "format")


def templatable(node: Any, *, wrap: bool = True) -> Any:
    """``node``, also accepting a template at every place it would refuse one (the loader
    checks a kind's key holding a template once it is rendered). ``wrap``: False where
    a string is accepted anyway (a branch of a union that takes any string)."""
    if not isinstance(node, dict):
        return node
    node = dict(node)
    for key in ("anyOf", "oneOf"):
        if key in node:
            strings_ok = any(_accepts_any_string(n) for n in node[key])
            node[key] = [templatable(n, wrap=not strings_ok) for n in node[key]]
    if isinstance(node.get("items"), dict):
        node["items"] = templatable(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = templatable(node["additionalProperties"])
    if isinstance(node.get("properties"), dict):
        node["properties"] = {k: templatable(v) for k, v in node["properties"].items()}
    if not wrap or _accepts_any_string(node) or not any(k in node for k in _TYPED_KEYWORDS):
        return node
    if any(_accepts_any_string(n) for n in node.get("anyOf", [])):
        return node
    annotations = {k: node.pop(k) for k in ("description", "title", "default") if k in node}
    return {"anyOf": [node, TEMPLATE], **annotations}


def _accepts_any_string(node: Any) -> bool:
    return isinstance(node, dict) and (node == TEMPLATE or (node.get("type") == "string" and not any(k in node for k in _TYPED_KEYWORDS[1:])))


def _describe(schema: dict[str, Any], root: str = "Runbook") -> None:
    """Each property's description, from the format reference (``runbook.reference``)."""
    defs = schema["$defs"]
    targets: list[tuple[str, dict[str, Any]]] = [(root, schema["properties"])]
    targets += [(name.removesuffix("Mapping"), d["properties"]) for name, d in defs.items() if "properties" in d]
    for name in STEP_KINDS:
        for variant in defs["Step"]["allOf"] + defs["StepBody"]["allOf"]:
            if variant.get("if", {}).get("properties", {}).get("kind", {}).get("const") == name:
                targets.append((f"step:{name}", variant["then"]["properties"]))
    for name in CHECK_KINDS:
        for variant in defs["Check"]["allOf"]:
            if variant["if"]["properties"]["check"]["const"] == name:
                targets.append((f"check:{name}", variant["then"]["properties"]))
    for owner, properties in targets:
        for key, value in properties.items():
            if value is True:
                continue  # a common key listed again beside a kind's keys
            text = describe(owner, key)
            if text:
                value["description"] = plain(text)
                value["markdownDescription"] = text  # what VS Code's YAML extension shows
            value.pop("title", None)


# ---------------------------------------------------------------- the step definition schema (steps/NAME.yaml)


def definition_json_schema() -> dict[str, Any]:
    """A reusable step definition. Its ``step`` is a step whose every value may be a
    template (``{{ params.x }}`` is filled in before the step is checked), that needs
    no ``id`` and none of its kind's required keys (the runbook step using it gives them)."""
    from runbook.loader import _PARAM_SPEC_KEYS, _PARAM_TYPES

    defs = {name: _templated_def(definition) for name, definition in runbook_json_schema()["$defs"].items()}
    step = defs["Step"]
    step["required"] = []
    for variant in step["allOf"]:
        if "kind" in variant.get("if", {}).get("properties", {}):
            variant["then"].pop("if", None)
            variant["then"].pop("then", None)
    param_keys = {
        "type": {"enum": list(_PARAM_TYPES), "default": "string"},
        "required": {"type": "boolean", "default": True},
        "default": {},
        "description": {"type": "string"},
        "choices": {"type": "array"},
        "secret": {"type": "boolean", "default": False},
    }
    assert set(param_keys) == _PARAM_SPEC_KEYS, "a parameter key the schema does not describe"
    defs["Parameter"] = {"type": "object", "properties": param_keys, "additionalProperties": False}
    schema = {
        "$schema": DRAFT,
        "$id": DEFINITION_SCHEMA_ID,
        "title": "runbook step definition",
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "params": {"type": ["object", "null"], "additionalProperties": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Parameter"}]}},
            "step": {"$ref": "#/$defs/Step"},
        },
        "required": ["step"],
        "additionalProperties": False,
        "$defs": defs,
    }
    _describe(schema, root="Definition")
    return schema


def _templated_def(definition: dict[str, Any]) -> dict[str, Any]:
    """A definition of the runbook schema whose values may all be templates."""
    definition = copy.deepcopy(definition)
    if "properties" in definition:
        definition["properties"] = {key: templatable(value) for key, value in definition["properties"].items()}
        return definition
    return templatable(definition)
