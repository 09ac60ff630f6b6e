"""Templated values in SQL text: refused at validation unless certain to be harmless.

The oracle is the database itself: hostile values go through the forms that
are accepted (bind parameters, ``| int``, ``| sql_name``) on SQLite,
PostgreSQL and MariaDB, and every table the attack tries to drop is still
there afterwards, with the value stored literally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

HOSTILE = [
    "x'); DROP TABLE victim; --",
    "x\\'); DROP TABLE victim; -- ",
    "x'' OR 1=1; DROP TABLE victim; --",
    "$$; DROP TABLE victim; $$",
    "1; DROP TABLE victim",
    "é' || (SELECT 'x') || '",
]


def _runbook(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    return subprocess.run([sys.executable, "-m", "runbook", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _write(tmp_path: Path, url: str, steps: list[dict[str, Any]]) -> None:
    runbook = {"name": "sqlt", "vars": {"who": {"default": "x"}, "n": {"default": "3"}, "tbl": {"default": "notes"}}, "connections": {"db": url}, "steps": steps}
    (tmp_path / "sqlt.yaml").write_text(json.dumps(runbook))


SPLICED = {
    "sql step, quoted": {"id": "s", "kind": "sql", "connection": "db", "irreversible": True, "sql": "INSERT INTO notes (n) VALUES ('{{ vars.who }}')"},
    "sql step, list item": {"id": "s", "kind": "sql", "connection": "db", "irreversible": True, "sql": ["SELECT 1", "DELETE FROM notes WHERE n = {{ vars.who }}"]},
    "inside a loop": {"id": "s", "kind": "sql", "connection": "db", "irreversible": True, "sql": "{% for x in [vars.who] %}SELECT '{{ x }}'{% endfor %}"},
    "a number filter whose default is a value": {"id": "s", "kind": "sql", "connection": "db", "irreversible": True, "sql": "SELECT ({{ vars.n | int(vars.who) }})"},
    "a float filter whose default is a value": {"id": "s", "kind": "sql", "connection": "db", "irreversible": True, "sql": "SELECT {{ vars.n | float(default=vars.who) }}"},
    "a string filter": {"id": "s", "kind": "sql", "connection": "db", "irreversible": True, "sql": "SELECT '{{ vars.who | replace(\"'\", \"''\") }}'"},
    "sql check": {"id": "s", "kind": "manual", "instruction": "x", "gates": [{"check": "sql", "connection": "db", "query": "SELECT '{{ vars.who }}'"}]},
    "row_count where": {"id": "s", "kind": "manual", "instruction": "x", "gates": [{"check": "row_count", "connection": "db", "table": "notes", "where": "n = '{{ vars.who }}'"}]},
    "backfill pause_when": {
        "id": "s", "kind": "backfill", "connection": "db", "table": "notes", "key": "id", "where": "n IS NULL", "irreversible": True,
        "update": "UPDATE notes SET n = 'a' WHERE id BETWEEN :lo AND :hi AND n IS NULL",
        "pause_when": [{"sql": "SELECT '{{ vars.who }}'", "is": "== 'x'"}],
    },
}  # fmt: skip


@pytest.mark.parametrize("case", SPLICED)
def test_a_value_spliced_into_sql_is_refused_at_validation(tmp_path: Path, case: str) -> None:
    _write(tmp_path, "sqlite:///db.sqlite", [SPLICED[case]])
    result = _runbook(tmp_path, "validate", "sqlt.yaml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "spliced into SQL text" in result.stderr and "sqlt.yaml:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_hostile_values_through_the_accepted_forms_stay_values(tmp_path: Path, any_db_url: str) -> None:
    """Bind parameters, ``| int`` and ``| sql_name`` on the real server: every hostile value is
    stored as written, the victim table survives, a hostile name is refused before any SQL."""
    engine = sa.create_engine(any_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, n VARCHAR(200))"))
        conn.execute(sa.text("CREATE TABLE victim (id INTEGER)"))
    steps = [
        {
            "id": "insert", "kind": "sql", "connection": "db", "irreversible": True,
            "sql": ["INSERT INTO {{ vars.tbl | sql_name }} (id, n) VALUES ({{ vars.n | int }}, :who)"],
            "params": {"who": "{{ vars.who }}"},
            "gates": [{"check": "sql", "connection": "db", "query": "SELECT count(*) FROM notes WHERE n = :who", "params": {"who": "{{ vars.who }}"}, "expect": "== 1"}],
        }
    ]  # fmt: skip
    _write(tmp_path, any_db_url, steps)
    for i, value in enumerate(HOSTILE, start=1):
        result = _runbook(tmp_path, "run", "sqlt.yaml", "--yes", "--var", f"who={value}", "--var", f"n={i}")
        assert result.returncode == 0, result.stdout + result.stderr
    with engine.connect() as conn:
        stored = [row[0] for row in conn.execute(sa.text("SELECT n FROM notes ORDER BY id"))]
        assert stored == HOSTILE
        assert conn.execute(sa.text("SELECT count(*) FROM victim")).scalar() == 0
    for name in ["notes; DROP TABLE victim", "notes --", 'no"tes', "a.b.c"]:
        result = _runbook(tmp_path, "run", "sqlt.yaml", "--yes", "--var", f"tbl={name}", "--var", "n=99")
        assert result.returncode == 2, result.stdout + result.stderr
        assert "sql_name" in result.stderr and name not in result.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM victim")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM notes")).scalar() == len(HOSTILE)
    engine.dispose()
