"""The key tables of docs/runbook-format.md, read as ``owner -> key -> meaning``.

``runbook.reference.KEYS`` must equal what this reads (tests/schema/test_reference.py),
so the descriptions in ``runbook schema`` and the format reference cannot drift.
Regenerate it with ``python -m tests.schema.reference_tables > src/runbook/reference_keys.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "runbook-format.md"

# The heading a key table is under, and the owner of each of its key tables in order.
OWNERS: dict[str, list[str]] = {
    "## 4. Top-level keys": ["Runbook"],
    "### 4.1 metadata": ["Metadata"],
    "### 4.2 vars": ["Var"],
    "### 4.3 environments": ["Environment"],
    "### 4.5 rollback options": ["RollbackOption"],
    "### 4.6 success_criteria": ["SuccessCriterion"],
    "### 4.7 notifications": ["Notifications", "Channel"],
    "### 4.8 approvals": ["ApprovalSettings", "ApprovalPolicy"],
    "## 5. Steps: common keys": ["Step", "Retries"],
    "## 7. Checks: common keys": ["Check"],
    "### Definition file format (`steps/NAME.yaml`)": ["Definition", "Parameter"],
}
_STEP_KIND_HEADING = re.compile(r"^### 12\.\d+ (\w+)$")
_CHECK_KINDS_HEADING = "## 13. Check kinds"


def _cells(line: str) -> list[str]:
    # A cell may hold an escaped pipe (`a \| b`).
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def read_tables(text: str | None = None) -> dict[str, dict[str, str]]:
    """``owner -> key -> meaning`` (the meaning column, else the type column when it is empty)."""
    lines = (text if text is not None else DOC.read_text()).splitlines()
    found: dict[str, dict[str, str]] = {}
    heading, seen_in_heading, i = "", 0, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading, seen_in_heading = line.strip(), 0
        if not (line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: ")):
            i += 1
            continue
        header = _cells(line)
        rows = []
        i += 2
        while i < len(lines) and lines[i].startswith("|"):
            rows.append(_cells(lines[i]))
            i += 1
        owner = _owner(heading, header, seen_in_heading)
        if header[0] in ("key", "check"):
            seen_in_heading += 1
        if owner is None:
            continue
        table = found.setdefault(owner, {}) if owner != "check:*" else {}
        for row in rows:
            key = row[0].strip("`")
            meaning = row[-1] or row[1]
            if owner == "check:*":
                found[f"check:{key}"] = {"": meaning}
            else:
                table[key] = meaning
    return found


def _owner(heading: str, header: list[str], index: int) -> str | None:
    if header[0] == "check" and heading == _CHECK_KINDS_HEADING:
        return "check:*"
    if header[0] != "key":
        return None
    kind = _STEP_KIND_HEADING.match(heading)
    if kind:
        return f"step:{kind[1]}"
    owners = OWNERS.get(heading, [])
    return owners[index] if index < len(owners) else None


if __name__ == "__main__":
    import pprint

    print('"""Generated from the key tables of docs/runbook-format.md by tests/schema/reference_tables.py; do not edit."""\n')
    print("KEYS: dict[str, dict[str, str]] = " + pprint.pformat(read_tables(), width=160, sort_dicts=False))
