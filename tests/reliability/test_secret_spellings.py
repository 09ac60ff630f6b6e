"""Secrets in spellings that drivers, HTTP clients and templates give them (found by an attack).

Each case leaked before its fix: a MariaDB syntax error echoing a bound value escaped by
PyMySQL (``x\\'y\\"w``), a server echoing the URL httpx sent (``y%22w$v!%20``), and
templates that took a secret apart past the taint (``| list``, ``| list | reverse | join``,
a loop over its characters, ``[:2]``, ``.encode().hex()``)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pymysql.converters import escape_string

from runbook.masking import Masker

TOKEN = "Tk9f/Q+z=x'y\"w$v! é\\{a}<b>`%41"


def _runbook(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    return subprocess.run([sys.executable, "-m", "runbook", *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)


def _stored(tmp_path: Path) -> str:
    db = sqlite3.connect(tmp_path / ".runbook" / "state.db")
    try:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) + "\n" + "\n".join(str(v) for v in row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
    finally:
        db.close()


def _files(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (tmp_path / ".runbook").rglob("*") if p.is_file() and not p.name.startswith("state.db"))


def test_mysql_and_httpx_spellings_are_masked() -> None:
    masker = Masker([TOKEN])
    # As PyMySQL sends a bound value, and MariaDB then quotes it in a syntax error.
    assert masker.mask(f"near '1, '{escape_string(TOKEN)}'' at line 1") == "near '1, '***'' at line 1"
    # As httpx writes it into a query and a path (what a server that echoes the URL shows).
    query = httpx.URL(f"http://h/p?t={TOKEN}").query.decode()
    assert masker.mask(f"path was /next?{query}") == "path was /next?t=***"
    path = httpx.URL(f"http://h/{TOKEN}").raw_path.decode()
    assert masker.mask(path) == "/***"
    # The SQL standard's doubled quote.
    assert masker.mask("'" + TOKEN.replace("'", "''") + "'") == "'***'"


def test_secret_in_a_mariadb_syntax_error_is_masked(tmp_path: Path, mariadb_url: str) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "m.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: m
            vars:
              tok: {{secret: true, env: TOK}}
            connections:
              db: "{mariadb_url}"
            steps:
              - id: q
                kind: sql
                connection: db
                irreversible: true
                sql: "SELECT 1 1, :p"
                params: {{p: "{{{{ vars.tok }}}}"}}
            """
        )
    )
    done = _runbook(tmp_path, "run", "m", "--plain", env={"TOK": TOKEN})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "near '1, '***''" in done.stdout, done.stdout
    for place, text in {"terminal": done.stdout + done.stderr, "files": _files(tmp_path), "store": _stored(tmp_path)}.items():
        assert escape_string(TOKEN) not in text, place
        assert "Tk9f" not in text, place


class _EchoPath(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"path was {self.path}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_secret_in_a_url_echoed_by_the_server_is_masked(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoPath)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "runbooks").mkdir()
        (tmp_path / "runbooks" / "h.yaml").write_text(
            textwrap.dedent(
                f"""\
                name: h
                vars:
                  tok: {{secret: true, env: TOK}}
                steps:
                  - id: h
                    kind: http
                    irreversible: true
                    url: "http://127.0.0.1:{server.server_address[1]}/x?t={{{{ vars.tok }}}}"
                """
            )
        )
        done = _runbook(tmp_path, "run", "h", "--plain", env={"TOK": TOKEN})
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "path was /x?t=***" in done.stdout, done.stdout
    for place, text in {"terminal": done.stdout + done.stderr, "files": _files(tmp_path), "store": _stored(tmp_path)}.items():
        assert "Tk9f" not in text, place


SECRET = "hunter2secret"


@pytest.mark.parametrize(
    ("template", "leak"),
    [
        ("{{ vars.tok | list }}", "'h', 'u', 'n'"),
        ("{{ vars.tok | list | reverse | join }}", SECRET[::-1]),
        ("{% set x = vars.tok | list %}{{ x | reverse | join('.') }}", ".".join(SECRET[::-1])),
        ("{{ vars.tok | map('upper') | join }}", SECRET.upper()),
    ],
)
def test_secret_taken_apart_by_a_template_is_masked(tmp_path: Path, template: str, leak: str) -> None:
    _write_echo(tmp_path, template)
    for verb in ("plan", "run"):
        done = _runbook(tmp_path, verb, "t", *(["--plain"] if verb == "run" else []))
        assert done.returncode == 0, done.stdout + done.stderr
        assert leak not in done.stdout and "***" in done.stdout, done.stdout
    assert leak not in _files(tmp_path) and leak not in _stored(tmp_path)


@pytest.mark.parametrize(
    "template",
    [
        "{% for c in vars.tok %}{{ c }}-{% endfor %}",
        "{{ vars.tok[:2] }}",
        "{{ vars.tok | first }}",
        "{% macro m(s) %}{% for c in s %}{{ c }}.{% endfor %}{% endmacro %}{{ m(vars.tok) }}",
        "{{ vars.tok.encode().hex() }}",
        "{{ vars.tok.encode() | list | join(',') }}",
    ],
)
def test_secret_printed_in_pieces_no_masker_can_hide_is_refused(tmp_path: Path, template: str) -> None:
    _write_echo(tmp_path, template)
    for verb in ("plan", "run"):
        done = _runbook(tmp_path, verb, "t", *(["--plain"] if verb == "run" else []))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "template error:" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / ".runbook" / "logs").exists()


def _write_echo(tmp_path: Path, template: str) -> None:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "runbooks" / "t.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: t
            vars:
              tok: {{secret: true, default: {SECRET}}}
            steps:
              - id: a
                kind: command
                irreversible: true
                run: ["echo", {template!r}]
            """
        )
    )
