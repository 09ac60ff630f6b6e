"""Differential property: a runbook ``runbook validate`` accepts is valid against ``runbook schema``.

The documents are tests/foundation/test_fuzz.py's valid runbook with one to
four random edits; most are invalid, and those the loader still accepts are
the interesting ones (a type the loader converts, a shorthand, a template).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings

from runbook.errors import RunbookError
from runbook.loader import load_runbook
from tests.foundation.test_fuzz import _dump, mutated_runbooks
from tests.schema.oracle import schema_errors


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated_runbooks())
def test_what_validate_accepts_the_schema_accepts(doc: Any) -> None:
    text = _dump(doc)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "rb.yaml"
        path.write_text(text)
        try:
            load_runbook(path)
        except RunbookError:
            return
    assert schema_errors(yaml.safe_load(text)) == [], text
