"""Secrets: a run that uses a database password and an API token everywhere they
can go (SQL, an HTTP header, a shell command, an argv, a confirmation, step
outputs, notifications, driver errors, a failing step's tail) never lets them,
or their URL-, HTML-, JSON- or shell-quoted forms, reach the terminal (console
and JSON), the logs, the state store (SQLite or PostgreSQL), the events, the
reports or ``runbook show``. The state directory is 0700, its files 0600.

The database password belongs to a PostgreSQL role created for the test. The
embedded server trusts its Unix socket, so the password is not what lets the
role in: it is there to be leaked, and PostgreSQL is made to echo the whole
URL back in an error (``CAST(url AS integer)``). A second connection points at
127.0.0.1:1, where nothing listens, so the driver's connection error is seen too.
"""

from __future__ import annotations

import base64
import html
import json
import os
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa

from runbook.masking import MIN_SECRET_LENGTH, Masker

PASSWORD = "S3cr3t-p@ss!"
TOKEN = "tk_9f/Q+z=x'y\"w$v!"  # quotes, $, /, + and = all have escaped forms somewhere


def forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` that an output could carry."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        html.escape(secret),
        json.dumps(secret)[1:-1],
        shlex.quote(secret),
        secret.replace("'", "'\\''"),
    }


RUNBOOK = r"""
name: secrets
vars:
  db_url: {env: DB_URL, secret: true, required: true, description: the application database}
  api_token: {env: API_TOKEN, secret: true, required: true}
  api: {env: API_BASE, required: true}
  fail_at: none
connections:
  app: "{{ vars.db_url }}"
  down: "postgresql://nobody:{{ vars.api_token | urlencode }}@127.0.0.1:1/x?connect_timeout=3"
steps:
  - id: whoami
    kind: sql
    connection: app
    sql: SELECT current_user AS who, CAST(:token AS text) AS token, CAST(:url AS text) AS url
    params: {token: "{{ vars.api_token }}", url: "{{ vars.db_url }}"}
    irreversible: true
    preconditions:
      - check: sql
        name: the unreachable database answers
        connection: down
        query: SELECT 1
        on_fail: warn
  - id: echo-url
    kind: sql
    connection: app
    sql: "{% if vars.fail_at == 'sql' %}SELECT CAST(:url AS integer){% else %}SELECT 1{% endif %}"
    params: {url: "{{ vars.db_url }}"}
    irreversible: true
  - id: call-api
    kind: http
    url: "{{ vars.api }}/{{ 'fail' if vars.fail_at == 'http' else 'echo' }}"
    headers:
      Authorization: "Bearer {{ vars.api_token }}"
      X-Custom: "{{ vars.api_token }}"
    irreversible: true
  - id: shell
    kind: command
    run: echo token={{ vars.api_token }}; echo url={{ vars.db_url }}; echo "env=$API_TOKEN"; exit {{ 1 if vars.fail_at == 'command' else 0 }}
    irreversible: true
  - id: argv
    kind: command
    run: ["printf", "%s|%s\n", "{{ vars.api_token }}", "{{ vars.db_url }}"]
    irreversible: true
    outputs:
      copy: "{{ result.stdout }}"
    gates:
      - check: command
        name: the token {{ vars.api_token }} is set
        run: test -n {{ vars.api_token }}
  - id: approve-me
    kind: command
    run: echo approved {{ vars.api_token }}
    confirm: Send {{ vars.api_token }} to {{ vars.db_url }}?
    irreversible: true
success_criteria:
  - description: the token works
    check: {check: command, run: "echo {{ vars.api_token }}"}
notifications:
  channels: [{type: console}, {type: file, path: notify.log}]
  messages:
    failure: "failed using {{ vars.api_token }} on {{ vars.db_url }}"
"""


class _Echo(BaseHTTPRequestHandler):
    """/echo answers the request headers as JSON; /fail answers 500 quoting the Authorization header."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/fail"):
            body, status = f"denied: {self.headers.get('Authorization')}\n".encode(), 500
        else:
            body, status = json.dumps({"headers": dict(self.headers)}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def role_url(pg_server_url: str, pg_url: str) -> Iterator[str]:
    """A URL for a new role with PASSWORD that owns the test database."""
    role = f"r_{uuid.uuid4().hex[:10]}"
    database = sa.make_url(pg_url).database
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"))
        conn.execute(sa.text(f'ALTER DATABASE "{database}" OWNER TO {role}'))
    url = sa.make_url(pg_url).set(drivername="postgresql", username=role, password=PASSWORD)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


@dataclass
class Session:
    """Everything the operator saw, and where the state went."""

    root: Path
    env: dict[str, str]
    state_url: str | None
    seen: list[str] = field(default_factory=list)

    def runbook(self, *args: str, code: int | None = None) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "runbook", *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        output = proc.stdout + proc.stderr
        self.seen.append(f"$ runbook {' '.join(args)}\n{output}")
        assert "Traceback" not in output and "internal error" not in output, output
        if code is not None:
            assert proc.returncode == code, (args, proc.returncode, output)
        return proc.stdout


def _session(tmp_path: Path, db_url: str, api: str, state_url: str | None) -> Session:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "secrets.yaml").write_text(textwrap.dedent(RUNBOOK))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env.update({"DB_URL": db_url, "API_TOKEN": TOKEN, "API_BASE": api})
    if state_url:
        env["RUNBOOK_STATE_URL"] = state_url
    return Session(tmp_path, env, state_url)


def _json_lines(text: str) -> list[dict[str, object]]:
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert events and all(isinstance(e, dict) and "event" in e for e in events)
    return events


def _walk(session: Session) -> str:
    """Run the runbook through every failure and outcome, then every way of looking at it."""
    s = session
    s.runbook("plan", "secrets.yaml", code=0)
    # 1. PostgreSQL echoes the URL: invalid input syntax for type integer: "postgresql://...".
    out = s.runbook("run", "secrets.yaml", "--var", "fail_at=sql", code=1)
    assert 'invalid input syntax for type integer: "***"' in out, out
    assert "precondition ! the unreachable database answers" in out  # the driver's connection error, as a warning
    (run_id,) = {line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("▶ run ")}
    # 2. The API answers 500 quoting the Authorization header.
    out = s.runbook("run", "secrets.yaml", "--resume", "--var", "fail_at=http", "--accept-changes", code=1)
    assert "| denied: ***" in out, out
    # 3. The command prints the token and the URL, then fails: the tail is shown.
    out = s.runbook("run", "secrets.yaml", "--resume", "--var", "fail_at=command", "--accept-changes", code=1)
    assert "| token=***" in out and "| url=***" in out and "| env=***" in out, out
    # 4. The confirmation has no terminal: the question (with the token) is shown, the run pauses.
    out = s.runbook("run", "secrets.yaml", "--resume", "--var", "fail_at=none", "--accept-changes", code=4)
    assert "Send *** to ***?" in out, out
    s.runbook("approve", run_id, "approve-me", code=0)
    # 5. The rest, as JSON events (no notification on success: see test_json_events_of_a_notifying_run).
    events = _json_lines(s.runbook("run", "secrets.yaml", "--resume", "--var", "fail_at=none", "--accept-changes", "--log-format", "json", code=0))
    assert any(e["event"] == "output" and e.get("line") == "approved ***" for e in events), events
    for fmt in ("md", "json", "html"):
        s.runbook("report", run_id, "--format", fmt, code=0)
    s.runbook("show", run_id, "--events", code=0)
    s.runbook("status", run_id, code=0)
    s.runbook("history", code=0)
    return run_id


def _files(root: Path) -> str:
    text = ""
    for path in [*(root / ".runbook").rglob("*"), root / "notify.log"]:
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm") and not path.name.startswith("state.db"):
            text += f"\n--- {path}\n" + path.read_bytes().decode("utf-8", "replace")
    return text


def _sqlite_dump(root: Path) -> str:
    """Every value of every table, as stored (``iterdump`` would double the quotes inside them)."""
    db = sqlite3.connect(root / ".runbook" / "state.db")
    try:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"runs", "events", "step_attempts"} <= set(tables), tables
        return "\n".join(str(value) for table in tables for row in db.execute(f'SELECT * FROM "{table}"') for value in row)
    finally:
        db.close()


def _pg_dump(url: str) -> str:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            # The store keeps its tables in schema runbook, none in public.
            tables = conn.execute(sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'runbook'")).scalars().all()
            assert {"runs", "events", "step_attempts"} <= set(tables), tables
            return "\n".join(
                str(row) for table in tables for row in conn.execute(sa.text(f'SELECT row_to_json(t)::text FROM runbook."{table}" t')).scalars()
            )
    finally:
        engine.dispose()


def _assert_nowhere(where: dict[str, str], secrets: dict[str, str]) -> None:
    leaks = [
        f"{name} ({form!r}) in {place}: ...{text[max(text.index(form) - 150, 0):text.index(form) + 60]!r}..."
        for place, text in where.items()
        for name, secret in secrets.items()
        for form in forms(secret)
        if form in text
    ]
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_secrets_never_leave_the_process_unmasked(tmp_path: Path, role_url: str, echo_server: str, backend: str) -> None:
    """Run, fail three ways, pause, approve, resume, report, show: no secret anywhere, in no spelling."""
    session = _session(tmp_path, role_url, echo_server, role_url if backend == "postgresql" else None)
    _walk(session)
    where = {"terminal": "\n".join(session.seen), "files": _files(tmp_path)}
    where["state store"] = _pg_dump(role_url) if backend == "postgresql" else _sqlite_dump(tmp_path)
    assert "***" in where["state store"] and "***" in where["files"] and "failed using *** on ***" in where["files"]
    _assert_nowhere(where, {"database password": PASSWORD, "database URL": role_url, "API token": TOKEN})


def test_state_directory_and_files_are_private(tmp_path: Path, role_url: str, echo_server: str) -> None:
    """``.runbook/`` is 0700; the SQLite store (and its -wal/-shm) and every log file 0600."""
    session = _session(tmp_path, role_url, echo_server, None)
    session.runbook("run", "secrets.yaml", "--yes", code=0)
    state = tmp_path / ".runbook"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    stores = list(state.glob("state.db*"))
    logs = [p for p in (state / "logs").rglob("*") if p.is_file()]
    assert stores and len(logs) >= 3
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in stores + logs} == {p.name: oct(0o600) for p in stores + logs}
    for run_dir in (state / "logs").iterdir():
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700


def test_state_directory_is_private_with_a_postgresql_store(tmp_path: Path, role_url: str, echo_server: str) -> None:
    """The logs stay under a 0700 ``.runbook/`` whichever store holds the state."""
    session = _session(tmp_path, role_url, echo_server, role_url)
    session.runbook("run", "secrets.yaml", "--yes", code=0)
    assert stat.S_IMODE((tmp_path / ".runbook").stat().st_mode) == 0o700


# ---------------------------------------------------------------- the masker's contract, and its documented limits


def test_masker_covers_quoted_forms_and_url_passwords() -> None:
    """A secret is masked as written, URL-quoted, shell-quoted (every context), and a secret
    URL's password is masked on its own, decoded or not, before any connection is opened."""
    masker = Masker([TOKEN, "postgresql://app:S3cr3t-p%40ss%21@db.internal/app"])
    quoted = {f for f in forms(TOKEN) if f not in (html.escape(TOKEN), json.dumps(TOKEN)[1:-1])}
    for text in [*quoted, PASSWORD, quote(PASSWORD, safe="")]:
        assert masker.mask(f"<{text}>") == "<***>", text
    assert masker.mask("postgres://x:other@h/d") == "postgres://x:***@h/d"  # any URL's password


def test_documented_limits_of_masking(tmp_path: Path) -> None:
    """docs/reliability.md ("Secrets") lists what masking cannot do; these stay true until fixed."""
    short = Masker(["ab"])
    assert short.mask("ab") == "ab" and MIN_SECRET_LENGTH == 3  # shorter than 3: not masked
    transformed = base64.b64encode(TOKEN.encode()).decode()
    assert Masker([TOKEN]).mask(transformed) == transformed  # a transformed secret is not recognised
    assert Masker([PASSWORD]).mask("host 'ss!@127.0.0.1'") == "host 'ss!@127.0.0.1'"  # nor a fragment of one


def _vars_runbook(tmp_path: Path) -> Path:
    (tmp_path / "rb.yaml").write_text(
        "name: v\nvars:\n  token: {env: API_TOKEN, secret: true}\n  version: '1.0'\n"
        "steps:\n  - id: a\n    kind: command\n    run: printf '%s|%s' {{ vars.token }} {{ vars.version }} > out\n    irreversible: true\n"
    )
    return tmp_path / "rb.yaml"


def _plain_run(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")} | env
    return subprocess.run([sys.executable, "-m", "runbook", "run", "rb.yaml", *args], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60)


def test_secret_from_the_environment_is_used_literally(tmp_path: Path) -> None:
    """A password that happens to contain ``{{``, ``{%`` or ``{#`` is a password, not a template."""
    _vars_runbook(tmp_path)
    secret = "p{%ss{{w0rd}}"
    result = _plain_run(tmp_path, env={"API_TOKEN": secret})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out").read_text() == f"{secret}|1.0"


def test_var_value_cannot_read_secrets_through_a_template(tmp_path: Path) -> None:
    """``--var version={{ vars.token }}`` (say, a branch name chosen by someone else in CI) must not
    copy the secret into a non-secret var, where it would be printed unmasked."""
    _vars_runbook(tmp_path)
    result = _plain_run(tmp_path, "--var", "version={{ vars.token }}{{ env.HOME }}", env={"API_TOKEN": TOKEN})
    assert (tmp_path / "out").read_text() == f"{TOKEN}|{{{{ vars.token }}}}{{{{ env.HOME }}}}"


def test_json_events_of_a_notifying_run(tmp_path: Path) -> None:
    """``--log-format json`` works for a runbook that sends a notification."""
    (tmp_path / "rb.yaml").write_text("name: n\nnotifications:\n  messages: {success: done}\nsteps:\n  - id: a\n    kind: command\n    run: 'true'\n    irreversible: true\n")
    result = _plain_run(tmp_path, "--log-format", "json", env={})
    assert result.returncode == 0 and "internal error" not in result.stderr, result.stderr
    assert any(json.loads(line)["event"] == "notified" for line in result.stdout.splitlines())


def test_secret_in_a_check_name_is_masked_in_the_store(tmp_path: Path) -> None:
    """A check's name is a template too: rendered with a secret, it is masked in the state store
    (and so in status, show and report) as it is on the terminal."""
    (tmp_path / "rb.yaml").write_text(
        "name: g\nvars:\n  token: {env: API_TOKEN, secret: true}\nsteps:\n  - id: a\n    kind: command\n    run: 'true'\n"
        "    irreversible: true\n    gates:\n      - {check: command, name: 'token {{ vars.token }} works', run: 'false'}\n"
    )
    result = _plain_run(tmp_path, env={"API_TOKEN": TOKEN})
    assert result.returncode == 1 and TOKEN not in result.stdout + result.stderr
    _assert_nowhere({"state store": _sqlite_dump(tmp_path)}, {"API token": TOKEN})


# ---------------------------------------------------------------- issue 11, item 8: secrets that escaped masking

QUOTED = 'qu"o$te9988'  # JSON writes it qu\"o$te9988
TRANSFORMS = r"""
name: transforms
vars:
  token: {env: API_TOKEN, secret: true, required: true}
  api: {env: API_BASE, required: true}
  fail_at: none
steps:
  - id: shout
    kind: command
    run: ["printf", "%s\n", "{{ vars.token | upper }}", "{{ vars.token | reverse }}", "{{ vars.token[::-1] }}", "{{ vars.token[2:] }}",
          "{{ vars.token.split('_') }}", "{{ vars.token | tojson }}", "{{ vars.token | title }}", "{{ vars.token | e }}"]
    irreversible: true
    outputs:
      upper: "{{ vars.token | upper }}"
  - id: shell
    kind: command
    run: echo {{ vars.token | upper }} {{ vars.token[::-1] }}
    irreversible: true
  - id: keys
    kind: http
    url: "{{ vars.api }}/keys"
    irreversible: true
  - id: long
    kind: http
    url: "{{ vars.api }}/{{ 'long' if vars.fail_at == 'http' else 'keys' }}"
    irreversible: true
  - id: gated
    kind: command
    run: "true"
    irreversible: true
    gates:
      - check: http
        name: the API has no {{ vars.token | title }}
        url: "{{ vars.api }}/keys"
        body_matches: "{{ 'nothing-matches-this' if vars.fail_at == 'gate' else 'keys' }}"
notifications:
  channels: [{type: console}, {type: file, path: notify.log}]
  messages:
    failure: "failed with {{ vars.token | upper }}, {{ vars.token[::-1] }} and {{ vars.token.split('_') | join('+') }}"
"""


class _Keys(BaseHTTPRequestHandler):
    """/keys: a JSON document with the token as a key and as a value (JSON-escaped);
    /long: 500 with the token at characters 490-510 of one line."""

    token = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/long"):
            body, status = ("x" * 490 + self.token + " and more\n").encode(), 500
        else:
            body, status = json.dumps({"keys": {self.token: 1}, "echo": self.token}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def transformed(secret: str) -> dict[str, str]:
    """Every spelling the transforms in TRANSFORMS give ``secret``, and its JSON escape."""
    return {
        "upper": secret.upper(),
        "reversed": secret[::-1],
        "tail": secret[2:],
        "title": secret.title(),
        "json-escaped": json.dumps(secret)[1:-1],
        "tojson": html.unescape(json.dumps(secret).replace("'", "\\u0027")),
        "escaped": html.escape(secret).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        "piece": secret.split("_")[0],
    }


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_transformed_and_escaped_secrets_are_masked_everywhere(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Template transforms of a secret (upper, reverse, [::-1], [2:], split, tojson, title, e), its
    JSON-escaped spelling in an HTTP body, a dict key holding it and a line cut at 500 characters
    across it reach neither the terminal, the logs, the state store (every table), the notification
    file nor the reports, on either store."""
    token = QUOTED + "_Zk7wQ"
    handler = type("Keys", (_Keys,), {"token": token})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    try:
        (tmp_path / "runbooks").mkdir()
        (tmp_path / "runbooks" / "transforms.yaml").write_text(textwrap.dedent(TRANSFORMS))
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
        env.update({"API_TOKEN": token, "API_BASE": f"http://127.0.0.1:{server.server_address[1]}"})
        if state_url:
            env["RUNBOOK_STATE_URL"] = state_url
        s = Session(tmp_path, env, state_url)
        s.runbook("plan", "transforms.yaml", code=0)
        out = s.runbook("run", "transforms.yaml", "--var", "fail_at=http", code=1)
        assert "| " + "x" * 100 in out and "***" in out, out  # the cut tail is shown, masked
        s.runbook("run", "transforms.yaml", "--resume", "--var", "fail_at=gate", "--accept-changes", code=1)
        (run_id,) = {line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("▶ run ")}
        for fmt in ("md", "json", "html"):
            s.runbook("report", run_id, "--format", fmt, code=0)
        s.runbook("show", run_id, "--events", code=0)
        s.runbook("status", run_id, code=0)
        s.runbook("history", code=0)
    finally:
        server.shutdown()
        server.server_close()
    where = {"terminal": "\n".join(s.seen), "files": _files(tmp_path)}
    where["state store"] = _pg_dump(state_url) if state_url else _sqlite_dump(tmp_path)
    assert "failed with ***" in where["files"], where["files"][-2000:]
    leaks = [
        f"{name} ({form!r}) in {place}: ...{text[max(text.index(form) - 120, 0):text.index(form) + 40]!r}..."
        for place, text in where.items()
        for name, form in {**transformed(token), **{f"as {k}": f for k, f in ((str(i), f) for i, f in enumerate(forms(token)))}}.items()
        if form in text
    ]
    # 10 of the token's 17 characters: what the cut at 500 used to leave visible.
    leaks += [f"a cut token in {place}" for place, text in where.items() if token[:10] in text]
    assert not leaks, "\n".join(leaks)


def test_masking_covers_dict_keys_and_escaped_spellings() -> None:
    """mask_data masks keys; JSON-, HTML- and repr-escaped spellings are masked like the secret."""
    masker = Masker([QUOTED])
    assert masker.mask_data({"keys": {QUOTED: 1}, "body": json.dumps({"t": QUOTED})}) == {"keys": {"***": 1}, "body": '{"t": "***"}'}
    for spelling in (json.dumps(QUOTED)[1:-1], html.escape(QUOTED), repr(QUOTED + "'")[1:-3]):
        assert masker.mask(f"<{spelling}>") == "<***>", spelling


URL_PASSWORD = "zq7-Urlpass-0042"


def _runbook_cmd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    return subprocess.run([sys.executable, "-m", "runbook", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "source",
    ["default", "environment", "var", "var-file", "extra-var"],
)
def test_url_password_of_a_plain_var_is_masked_in_every_plan_form(tmp_path: Path, source: str) -> None:
    """A database URL with a password in a var that is not secret (its default, an environment's
    value, --var, a var file, -e) is masked in every plan form, the saved plan file included,
    and in a dry run, even where a description is cut short inside the URL (a SQL text over 300
    characters, a JSON body over 200) or a template takes the password out of it; the run itself
    gets the real value."""
    url = f"postgresql://app:{URL_PASSWORD}@127.0.0.1:5432/app"
    default = url if source == "default" else "postgresql://app@127.0.0.1:5432/app"
    (tmp_path / "rb.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: urls
            vars:
              db: {{default: "{default}"}}
            environments:
              prod:
                vars:
                  db: "{url if source == "environment" else default}"
            connections:
              local: sqlite:///local.db
            steps:
              - id: record
                kind: sql
                connection: local
                sql: "SELECT :pad AS pad, :db AS db"
                params: {{pad: "{{{{ 'a' * 270 }}}}", db: "{{{{ vars.db }}}}"}}
                irreversible: true
              - id: notify
                kind: http
                url: http://127.0.0.1:1/
                json: {{pad: "{{{{ 'b' * 160 }}}}", db: "{{{{ vars.db }}}}"}}
                irreversible: true
              - id: password
                kind: command
                run: "printf '%s' {{{{ vars.db.split(':')[2].split('@')[0] }}}} > out"
                irreversible: true
            """
        )
    )
    (tmp_path / "vars.yaml").write_text(f"db: {url}\n")
    given = {
        "default": [],
        "environment": ["--env", "prod"],
        "var": ["--var", f"db={url}"],
        "var-file": ["--var-file", "vars.yaml"],
        "extra-var": ["-e", "@vars.yaml"],
    }[source]
    seen: dict[str, str] = {}
    for form in ("text", "json", "markdown"):
        result = _runbook_cmd(tmp_path, "plan", "rb.yaml", "--format", form, *given)
        assert result.returncode == 0, result.stderr
        seen[f"plan --format {form}"] = result.stdout + result.stderr
    assert "postgresql://app:*" in seen["plan --format text"]
    result = _runbook_cmd(tmp_path, "plan", "rb.yaml", "-o", "plan.json", *given)
    assert result.returncode == 0, result.stderr
    seen["plan -o"] = result.stdout + result.stderr
    seen["plan.json"] = (tmp_path / "plan.json").read_text()
    dry = _runbook_cmd(tmp_path, "run", "rb.yaml", "--dry-run", "--plain", *given)
    seen["run --dry-run"] = dry.stdout + dry.stderr
    validate = _runbook_cmd(tmp_path, "validate", "rb.yaml")
    seen["validate"] = validate.stdout + validate.stderr
    # The password's first characters are enough to leak a good part of it.
    for where, text in seen.items():
        assert URL_PASSWORD[:6] not in text, f"{where}:\n{text}"
    assert "*** > out" in seen["plan --format text"]
    # The run is given the real value.
    run = _runbook_cmd(tmp_path, "run", "rb.yaml", "--only", "password", *given)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out").read_text() == URL_PASSWORD
    assert URL_PASSWORD[:6] not in run.stdout + run.stderr


def test_secret_cut_short_in_a_plan_is_masked(tmp_path: Path) -> None:
    """A secret var inside a SQL text cut at 300 characters in the plan: its first characters
    are not shown (the description is made from masked values)."""
    (tmp_path / "rb.yaml").write_text(
        "name: cut\nvars:\n  token: {env: API_TOKEN, secret: true}\nconnections:\n  local: sqlite:///l.db\n"
        "steps:\n  - id: q\n    kind: sql\n    connection: local\n"
        # A name, as SQL text takes a value only through sql_name (or a bind parameter).
        f"    sql: \"SELECT {'a' * 291}{{{{ vars.token | sql_name }}}}\"\n    irreversible: true\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")} | {"API_TOKEN": "Tok3nSecretValue99"}
    result = subprocess.run([sys.executable, "-m", "runbook", "plan", "rb.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Tok3n" not in result.stdout and "** ..." in result.stdout, result.stdout


def test_strings_inside_a_secret_mapping_or_list_are_masked(tmp_path: Path) -> None:
    """A secret var whose value is a mapping or a list (``{user, password}``): every string in
    it is a secret, so ``{{ vars.creds.password }}`` and ``{{ vars.keys[1] }}`` print ``***`` on
    the terminal, in the step log and in the store, while the command gets the real values."""
    (tmp_path / "rb.yaml").write_text(
        textwrap.dedent(
            """\
            name: nested
            vars:
              creds: {secret: true, default: {user: someone, password: NestedPw-0001}}
              keys: {secret: true, default: [ListKey-0002, ListKey-0003]}
            environments:
              prod:
                vars:
                  creds: {user: someone, password: EnvNestedPw-0004}
            steps:
              - id: use
                kind: command
                run: "echo {{ vars.creds.password }} {{ vars.keys[1] }} {{ vars.creds.password | upper }}; printf '%s' {{ vars.creds.password }} > out"
                irreversible: true
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    for args, secret in (([], "NestedPw-0001"), (["--env", "prod"], "EnvNestedPw-0004")):
        shutil.rmtree(tmp_path / ".runbook", ignore_errors=True)
        result = subprocess.run([sys.executable, "-m", "runbook", "run", "rb.yaml", "--plain", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "out").read_text() == secret
        assert "*** *** ***" in result.stdout, result.stdout
        logs = subprocess.run([sys.executable, "-m", "runbook", "logs", result.stdout.split()[2]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        where = {"terminal": result.stdout + result.stderr, "logs": logs.stdout, "files": _files(tmp_path), "store": _sqlite_dump(tmp_path)}
        for name, text in where.items():
            for leaked in (secret, secret.upper(), "ListKey-0003"):
                assert leaked not in text, f"{leaked} in {name}"


@pytest.mark.parametrize(
    "run",
    [
        "echo {{ vars.token * 100000000 }}",  # the template size bound quotes the operand
        "cat <<EOF\n{{ vars.token }}\nEOF\n",  # a value that cannot be placed in a here-document
        "# {{ vars.token }}\necho hi\n",  # nor in a comment
    ],
    ids=["size-bound", "heredoc", "comment"],
)
def test_template_errors_do_not_quote_the_first_characters_of_a_secret(tmp_path: Path, run: str) -> None:
    """Template errors quote the value at fault cut to 20 characters: for a secret, those
    first characters were shown (no masker recognises a secret's first characters). A secret
    is quoted as ``***``; the error is still exit 2 and says what to do."""
    secret = "LongSecretTokenValue-0123\nEOF\nrm -rf x"
    body = textwrap.indent(run, "      ")
    (tmp_path / "rb.yaml").write_text(
        f"name: errs\nvars:\n  token: {{secret: true, env: TOKX}}\nsteps:\n  - id: a\n    kind: command\n    irreversible: true\n    run: |\n{body}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")} | {"TOKX": secret}
    for verb in ("plan", "run"):
        result = subprocess.run([sys.executable, "-m", "runbook", verb, "rb.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "template error" in result.stderr and "***" in result.stderr, result.stderr
        assert "LongSecret" not in result.stdout + result.stderr, result.stderr
