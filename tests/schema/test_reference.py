"""The schema's descriptions come from the format reference's key tables, and cover every key."""

from __future__ import annotations

from typing import Any

import pytest

from runbook.reference_keys import KEYS
from runbook.schema import definition_json_schema, runbook_json_schema
from tests.schema.reference_tables import read_tables

SCHEMAS = {"runbook": runbook_json_schema, "definition": definition_json_schema}


def test_reference_keys_are_the_doc_tables() -> None:
    """src/runbook/reference_keys.py is what docs/runbook-format.md says; after editing a key
    table, regenerate it: python -m tests.schema.reference_tables > src/runbook/reference_keys.py"""
    assert read_tables() == KEYS


def _undescribed(node: Any, path: str) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            if value is not True and not (isinstance(value, dict) and value.get("description") and value.get("markdownDescription")):
                found.append(f"{path}/properties/{key}")
        for key, value in node.items():
            if key != "if":  # a condition's properties name keys, they do not describe them
                found += _undescribed(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _undescribed(value, f"{path}/{i}")
    return found


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_property_has_a_description(name: str) -> None:
    schema = SCHEMAS[name]()
    assert _undescribed(schema, "#") == []
    assert schema["$id"].startswith("urn:runbook:schema:")


def _kind_keys(schema: dict[str, Any], model: str, selector: str) -> dict[str, set[str]]:
    common = set(schema["$defs"][model]["properties"])
    return {
        variant["if"]["properties"][selector]["const"]: set(variant["then"]["properties"]) - common
        for variant in schema["$defs"][model]["allOf"]
        if selector in variant.get("if", {}).get("properties", {})
    }


def test_each_table_lists_exactly_the_keys_of_its_model() -> None:
    """A key added to a model without a row in the reference (or a row for a key that is gone) fails here."""
    schema = runbook_json_schema()
    defs = schema["$defs"]
    have: dict[str, set[str]] = {"Runbook": set(schema["properties"])}
    for owner in ("Metadata", "Var", "Environment", "RollbackOption", "SuccessCriterion", "Notifications", "Channel", "ApprovalSettings", "ApprovalPolicy", "Step", "Retries", "Check"):
        have[owner] = set((defs.get(f"{owner}Mapping") or defs[owner])["properties"])
    have |= {f"step:{kind}": keys for kind, keys in _kind_keys(schema, "Step", "kind").items()}
    definition = definition_json_schema()
    have["Definition"] = set(definition["properties"])
    have["Parameter"] = set(definition["$defs"]["Parameter"]["properties"])
    documented = {owner: set(keys) for owner, keys in KEYS.items() if not owner.startswith("check:")}
    assert documented == have
