"""A fenced SQL block -> checks (a query with ``-- Expected: ...``) or a ``sql`` step.

An expectation becomes an ``expect:`` where it can (``0`` -> ``== 0``, ``at
least 1`` -> ``>= 1``, ``no rows`` -> a row count). A query of the
information schema whose expected row names a column, a foreign key, a table
or an index becomes that check (``column_exists`` with its type and
nullability, ``foreign_key_exists``, ...), and a query of ``alembic_version``
an ``alembic_revision`` check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runbook.importer.draft import TODO
from runbook.importer.markdown import Fence, Lines

DB = "db"

_EXPECTED = re.compile(r"^(?:expected(?:\s+result|\s+output)?|expect|should\s+(?:be|return|show))\s*[:\-]?\s*", re.I)
_STATEMENT_START = re.compile(r"^(?:select|with|update|insert|delete|alter|create|drop|begin|commit|rollback|set|show|explain|truncate|grant|vacuum|analyze|reindex)\b", re.I)
_READ_ONLY = re.compile(r"^\s*(?:select|with|show|explain|table|values)\b", re.I)
_WRITES = re.compile(r"\b(?:update|insert|delete|alter|create|drop|truncate|grant|revoke|vacuum|reindex|copy|merge|call)\b", re.I)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = r"-?\d+(?:\.\d+)?"
_LOOSE = re.compile(r"\b(?:or|small|some|few|approx\w*|about|around|roughly|less|fewer|up to|usually|may|might)\b|~", re.I)


@dataclass
class Statement:
    sql: str
    lines: Lines
    comments: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    @property
    def title(self) -> str | None:
        return self.comments[-1] if self.comments else None

    @property
    def read_only(self) -> bool:
        body = "\n".join(line for line in self.sql.split("\n") if not line.strip().startswith("--"))
        return bool(_READ_ONLY.match(body)) and not _WRITES.search(_without_strings(body))


def _without_strings(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def statements(fence: Fence) -> tuple[list[Statement], list[tuple[int, str]]]:
    """The statements of a block, and the comments after the last one."""
    raw = fence.content.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    found: list[Statement] = []
    pending: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0

    def close(last: int) -> None:
        nonlocal current
        if current:
            text = "\n".join(current).strip("\n")
            first = pending[0][0] if pending else start
            found.append(Statement(text, Lines(first, last), [c for _, c in pending]))
            pending.clear()
            current = []

    for i, line in enumerate(raw):
        number = fence.first_content_line + i
        stripped = line.strip()
        if stripped.startswith("--") and not current:
            comment = stripped[2:].strip()
            if found and not pending and _EXPECTED.match(comment):
                found[-1].expected.append(_EXPECTED.sub("", comment))
                found[-1].lines = found[-1].lines.span(Lines(number, number))
            elif comment:
                pending.append((number, comment))
            continue
        if stripped.startswith("--") and _EXPECTED.match(stripped[2:].strip()):
            close(number - 1)
            found[-1].expected.append(_EXPECTED.sub("", stripped[2:].strip()))
            found[-1].lines = found[-1].lines.span(Lines(number, number))
            continue
        if not stripped:
            following = next((r.strip() for r in raw[i + 1 :] if r.strip()), "")
            if current and (following.startswith("--") or _STATEMENT_START.match(following)):
                close(number - 1)
            elif current:
                current.append(line)
            continue
        if not current:
            start = number
        current.append(line)
        if re.sub(r"--.*$", "", stripped).rstrip().endswith(";"):
            close(number)
    close(fence.first_content_line + len(raw) - 1)
    return found, pending


@dataclass
class Translated:
    check: dict[str, Any]
    comments: list[str] = field(default_factory=list)


def check_for(statement: Statement) -> Translated:
    """The check a query and its expectation become."""
    expected = " ".join(statement.expected).strip()
    if expected and statement.title:
        name = f"{statement.title}: {expected}"
    else:
        name = f"expected: {expected}" if expected else (statement.title or _first_line(statement.sql))
    query = _query_text(statement.sql)
    recognised = _recognised(statement, expected, name)
    if recognised is not None:
        return recognised
    expectation = _expectation(expected)
    if expectation is None:
        note = f"{TODO}: no expectation was written for this query; say what it must return (expect:)" if not expected else (
            f"{TODO}: the checklist expects: {expected}; write that as an expectation (expect: == 0, > 0, is null, ...)"
        )
        check = {"check": "sql", "name": name, "connection": DB, "query": query, "expect": "is not null", "on_fail": "warn"}
        return Translated(check, [note])
    kind, expect, loose = expectation
    check = {"check": kind, "name": name, "connection": DB, "query": query, "expect": expect}
    return Translated(check, [loose] if loose else [])


def _first_line(text: str) -> str:
    line = text.strip().split("\n")[0]
    return line if len(line) <= 72 else line[:69] + "..."


def _query_text(sql: str) -> str:
    """The query as a check runs it: without its trailing semicolon."""
    lines = [line for line in sql.strip().split("\n")]
    text = "\n".join(lines).rstrip()
    return text[:-1].rstrip() if text.endswith(";") else text


def _expectation(text: str) -> tuple[str, str, str | None] | None:
    """(check kind, expect, a TODO note or None) for an expectation written in words."""
    text = text.strip().rstrip(".")
    if not text:
        return None
    lowered = text.lower()
    if re.match(r"^(?:no rows?|none|empty|nothing|0 rows?|zero rows?)\b", lowered):
        return "row_count", "== 0", None
    found = re.match(rf"^(?:(one)|({_NUMBER}))\s+rows?\b", lowered)
    if found:
        return "row_count", f"== {1 if found[1] else found[2]}", None
    found = re.match(rf"^(==|=|!=|<>|>=|<=|>|<)\s*({_NUMBER})\b(.*)$", text)
    if found:
        operator = {"=": "==", "<>": "!="}.get(found[1], found[1])
        return "sql", f"{operator} {found[2]}", _loose(found[3], text)
    words = {"at least": ">=", "more than": ">", "greater than": ">", "at most": "<=", "no more than": "<=", "less than": "<", "fewer than": "<"}
    for phrase, operator in words.items():
        found = re.match(rf"^{phrase}\s+({_NUMBER})\b(.*)$", lowered)
        if found:
            return "sql", f"{operator} {found[1]}", _loose(found[2], text)
    found = re.match(rf"^({_NUMBER})\b(.*)$", text)
    if found and "|" not in text:
        return "sql", f"== {found[1]}", _loose(found[2], text)
    if lowered in ("true", "t", "yes"):
        return "sql", "== true", None
    if lowered in ("false", "f"):
        return "sql", "== false", None
    if lowered in ("null", "is null"):
        return "sql", "is null", None
    if lowered in ("not null", "is not null"):
        return "sql", "is not null", None
    if re.fullmatch(r"[\w.:-]+", text) and "|" not in text:
        return "sql", f"== '{text}'", None
    if "|" in text:
        first = text.split("|")[0].strip()
        if re.fullmatch(r"[\w.:-]+", first):
            return "sql", f"== '{first}'", f"{TODO}: the checklist expects the row {text}; only its first column is checked"
    return None


def _loose(rest: str, text: str) -> str | None:
    """A note when the words after the number allow more than the number: ``0 (or small number ...)``."""
    if _LOOSE.search(rest):
        return f"{TODO}: the checklist says {text!r}; the check expects exactly the number, adjust it if more is fine"
    return None


# ---------------------------------------------------------------- schema queries


def _recognised(statement: Statement, expected: str, name: str) -> Translated | None:
    query = statement.sql
    source = re.search(r"\bFROM\s+([\w.]+)", query, re.I)
    if source is None:
        return None
    table = source[1].lower()
    where = {k.lower(): v for k, v in re.findall(r"\b(\w+)\s*=\s*'([^']*)'", query)}
    row = _expected_row(query, expected)
    values = {**row, **where}
    if table == "alembic_version" and expected and re.fullmatch(r"[0-9a-f]{4,40}(?:\s*[, ]\s*[0-9a-f]{4,40})*", expected):
        revisions = re.split(r"[\s,]+", expected.strip())
        return Translated({"check": "alembic_revision", "name": name, "connection": DB, "current": revisions[0] if len(revisions) == 1 else revisions})
    if table == "information_schema.columns" and _identifiers(values, "table_name", "column_name"):
        check: dict[str, Any] = {"check": "column_exists", "name": name, "connection": DB, "table": values["table_name"], "column": values["column_name"]}
        if "data_type" in row:
            check["type"] = row["data_type"]
        if row.get("is_nullable", "").upper() in ("YES", "NO"):
            check["nullable"] = row["is_nullable"].upper() == "YES"
        if not expected or expected.lower() in ("0 rows", "no rows", "none", "empty"):
            if not expected:
                return None
            check["exists"] = False
        return Translated(check)
    if table == "information_schema.table_constraints" and _identifiers(values, "table_name", "constraint_name"):
        if values.get("constraint_type", "").upper() == "FOREIGN KEY" or "FOREIGN KEY" in expected.upper():
            check = {"check": "foreign_key_exists", "name": name, "connection": DB, "table": values["table_name"], "constraint": values["constraint_name"]}
            return Translated(check)
    if table == "information_schema.tables" and _identifiers(values, "table_name") and expected:
        return Translated({"check": "table_exists", "name": name, "connection": DB, "table": values["table_name"]})
    if table == "pg_indexes" and _identifiers(values, "tablename", "indexname") and expected:
        return Translated({"check": "index_exists", "name": name, "connection": DB, "table": values["tablename"], "index": values["indexname"]})
    return None


def _identifiers(values: dict[str, str], *keys: str) -> bool:
    return all(_IDENTIFIER.fullmatch(values.get(key, "")) for key in keys)


def _expected_row(query: str, expected: str) -> dict[str, str]:
    """The expected row ``a | b | c`` by the names of the selected columns."""
    if "|" not in expected and not _IDENTIFIER.fullmatch(expected.strip() or "-"):
        return {}
    select = re.search(r"\bSELECT\s+(.*?)\s+FROM\b", query, re.I | re.S)
    if select is None or "(" in select[1] or "*" in select[1]:
        return {}
    columns = [c.strip().split()[-1].split(".")[-1].lower() for c in select[1].split(",")]
    cells = [c.strip() for c in expected.split("|")]
    if len(cells) != len(columns):
        return {}
    return dict(zip(columns, cells))


def sql_step_params(fence: Fence) -> dict[str, Any]:
    return {"connection": DB, "sql": fence.content.rstrip("\n")}
