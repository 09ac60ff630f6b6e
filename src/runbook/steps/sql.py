"""``kind: sql`` - run one or more SQL statements on a named connection.

``file`` is relative to the runbook's directory, where the runbook's own
files live. A string (``sql`` or the content of ``file``) is split into statements at
top-level semicolons: quotes, comments, PostgreSQL dollar-quoted bodies and
the ``BEGIN ... END`` body of a trigger or function are never cut. A list
passes each item through as one statement, untouched.

``:name`` in a statement is a bind parameter filled from ``params``; write
``\\:`` for a literal colon.

On MySQL and MariaDB, ``#`` also starts a comment and a backslash escapes a
quote inside a string. DDL there is not transactional: each DDL statement
commits what ran before it, so a failure after one leaves it applied (the
error says which statements stayed). Those DDL statements are kept in the
step's checkpoint; when the step runs again (``--resume``), each of them that
fails because its change is already there (the table exists, the column is
gone) counts as done and the script goes on.

Outputs: ``rowcount`` (rows changed by data-changing statements, RETURNING
rows included, SELECTs excluded), and from the last statement that returns
rows: ``rows`` (at most ``MAX_ROWS`` dicts), ``row`` (the first, or None) and
``value`` (its first column, or None).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runbook import mysql
from runbook.connections import ConnectionFailed, describe_db_error
from runbook.model import Duration
from runbook.steps.base import StepContext, StepOutcome
from runbook.steps.kept_ddl import KeptDdl

if TYPE_CHECKING:
    import sqlalchemy as sa

# Outputs land in the state store and in templates: a sample, not a data export.
MAX_ROWS = 100
DESCRIBE_CHARS = 300
# Statements whose RETURNING rows count as affected rows.
_DML_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT"})
_BLOCK_KINDS = frozenset({"TRIGGER", "FUNCTION", "PROCEDURE"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
# MySQL's compound statements close with END IF, END LOOP, ... which open with no BEGIN.
_END_OF_LOOP = re.compile(r"\s+(?:IF|LOOP|WHILE|REPEAT)\b", re.IGNORECASE)


class SqlParams(BaseModel):
    # "Exactly one of" (the validator below), for `runbook schema`.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"oneOf": [{"required": [k]} for k in ["sql", "file"]]})

    connection: str
    sql: str | list[str] | None = Field(default=None, description="Statements separated by ';', or a list of single statements.")
    file: str | None = Field(default=None, description="A SQL file, relative to the runbook's directory.")
    transaction: bool = Field(default=True, description="False runs each statement in autocommit (CREATE INDEX CONCURRENTLY).")
    lock_timeout: Duration | None = None
    statement_timeout: Duration | None = None
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_source(self) -> SqlParams:
        if (self.sql is None) == (self.file is None):
            raise ValueError("give exactly one of 'sql' or 'file'")
        if isinstance(self.sql, list) and not all(s.strip() for s in self.sql):
            raise ValueError("'sql' list items must be non-empty statements")
        return self


class SqlStep:
    name: ClassVar[str] = "sql"
    Params: ClassVar[type[BaseModel]] = SqlParams
    # SQL text: a templated value in it must be a number or a checked name (runbook.sqltext).
    sql_keys: ClassVar[frozenset[str]] = frozenset({"sql"})
    sql_binds: ClassVar[bool] = True
    changes_data: ClassVar[bool] = True
    needs_confirmation: ClassVar[bool] = False

    def describe(self, params: SqlParams) -> str:
        if params.file is not None:
            text = f"file {params.file}"
        elif isinstance(params.sql, list):
            text = ";\n".join(s.strip() for s in params.sql)
        else:
            text = str(params.sql).strip()
        if len(text) > DESCRIBE_CHARS:
            text = text[:DESCRIBE_CHARS].rstrip() + " ..."
        return f"[{params.connection}] {text}"

    def run(self, params: SqlParams, ctx: StepContext) -> StepOutcome:
        import sqlalchemy as sa

        try:
            engine = ctx.connections.engine(params.connection)
        except ConnectionFailed as err:
            return StepOutcome(False, error=err.message)
        dialect = engine.dialect.name
        try:
            statements = load_statements(params, ctx.runbook_file, dialect)
        except OSError as err:
            where = ctx.runbook_file(str(params.file))
            return StepOutcome(
                False, error=ctx.masker.mask(f"cannot read SQL file {params.file} ({where}, beside the runbook): {err.strerror or err}")
            )
        if not statements:
            return StepOutcome(False, error="no SQL statements to run")

        runner = _Runner(statements, params.params, ctx)
        try:
            if mysql.is_mysql(dialect):
                _run_mysql(engine, runner, params)
            else:
                _run_other(engine, runner, params)
        except sa.exc.SQLAlchemyError as err:
            return runner.failure(err)
        runner.finished()
        return StepOutcome(True, runner.outputs(), tail=runner.tail(), summary=runner.summary())


def load_statements(params: SqlParams, runbook_file: Callable[[str], Path], dialect: str = "") -> list[str]:
    """The statements to run; ``runbook_file`` finds ``file``, relative to the runbook's directory."""
    if isinstance(params.sql, list):
        return [s.strip() for s in params.sql]
    text = params.sql if params.sql is not None else runbook_file(str(params.file)).read_text(encoding="utf-8")
    return split_statements(text, mysql_syntax=mysql.is_mysql(dialect))


def split_statements(text: str, *, mysql_syntax: bool = False) -> list[str]:
    """Statements of a SQL script, split at top-level ``;``, without the
    comments that precede each one; comment-only statements are dropped.

    ``mysql_syntax``: ``#`` starts a comment, a backslash escapes the next
    character inside a string, and ``$`` quotes nothing."""
    statements: list[str] = []
    current: list[str] = []
    words: list[str] = []  # the statement's first words, to spot CREATE TRIGGER/FUNCTION
    depth = 0  # BEGIN/CASE ... END nesting inside such a statement's body
    has_code = False
    i, n = 0, len(text)

    def finish() -> None:
        nonlocal depth, has_code
        if has_code:
            statements.append("".join(current).strip())
        current.clear()
        words.clear()
        depth = 0
        has_code = False

    while i < n:
        ch = text[i]
        if ch in "'\"`":
            end = _quote_end(text, i, backslash=mysql_syntax and ch != "`")
        elif text.startswith("--", i) or (mysql_syntax and ch == "#"):
            newline = text.find("\n", i)
            end = n if newline < 0 else newline
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            end = n if close < 0 else close + 2
        elif ch == "$" and not mysql_syntax and (tag := _DOLLAR_TAG.match(text, i)):
            close = text.find(tag[0], tag.end())
            end = n if close < 0 else close + len(tag[0])
        elif ch.isalpha() or ch == "_":
            word = _WORD.match(text, i)
            assert word is not None
            end = word.end()
            upper = word[0].upper()
            if len(words) < 5:
                words.append(upper)
            if words[0] == "CREATE" and _BLOCK_KINDS.intersection(words[1:]):
                if upper in ("BEGIN", "CASE"):
                    depth += 1
                elif upper == "END" and depth and not _END_OF_LOOP.match(text, end):
                    depth -= 1
        elif ch == ";" and depth == 0:
            finish()
            i += 1
            continue
        else:
            end = i + 1
        chunk = text[i:end]
        if not chunk.isspace() and not chunk.startswith(("--", "/*", "#" if mysql_syntax else "--")):
            has_code = True
        # Comments before a statement's first token stay out of it, so
        # progress lines and the DML check see the statement itself.
        if has_code:
            current.append(chunk)
        i = end
    finish()
    return statements


def _quote_end(text: str, start: int, *, backslash: bool = False) -> int:
    """Index just past a quoted string or identifier; a doubled quote is an escaped
    one, and so, with ``backslash`` (MySQL strings), is a quote after a backslash."""
    quote = text[start]
    i = start + 1
    while True:
        close = text.find(quote, i)
        if close < 0:
            return len(text)
        if backslash and _escaped(text, i, close):
            i = close + 1
            continue
        if text.startswith(quote * 2, close):
            i = close + 2
            continue
        return close + 1


def _escaped(text: str, start: int, at: int) -> bool:
    """Whether an odd run of backslashes (from ``start`` on) ends just before ``at``."""
    run = 0
    while at - run - 1 >= start and text[at - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _timeout_settings(params: SqlParams) -> list[tuple[str, int]]:
    """PostgreSQL settings in milliseconds (an int, so nothing user-written reaches the SQL)."""
    settings = [("lock_timeout", params.lock_timeout), ("statement_timeout", params.statement_timeout)]
    return [(name, round(seconds * 1000)) for name, seconds in settings if seconds is not None]


def _run_other(engine: sa.Engine, runner: _Runner, params: SqlParams) -> None:
    """PostgreSQL, SQLite and any other database SQLAlchemy speaks."""
    import sqlalchemy as sa

    dialect = engine.dialect.name
    settings = _timeout_settings(params)
    if settings and dialect != "postgresql":
        names = " and ".join(name for name, _ in settings)
        runner.ctx.output(f"note: {names} apply to PostgreSQL, MySQL and MariaDB only; ignored on {dialect}")
        settings = []
    if not params.transaction:
        _run_autocommit(engine, runner, settings)
    elif dialect == "sqlite":
        _run_sqlite_transaction(engine, runner)
    else:
        with engine.connect() as conn, conn.begin():
            for name, ms in settings:
                conn.execute(sa.text(f"SET LOCAL {name} = {ms}"))
            runner.run_all(conn)


def _run_autocommit(engine: sa.Engine, runner: _Runner, settings: list[tuple[str, int]]) -> None:
    import sqlalchemy as sa

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name, ms in settings:
            conn.execute(sa.text(f"SET {name} = {ms}"))
        try:
            runner.run_all(conn)
        finally:
            if settings:
                # Session-level SETs would outlive this step in the pool: drop the connection.
                conn.invalidate()


def _run_mysql(engine: sa.Engine, runner: _Runner, params: SqlParams) -> None:
    """MySQL and MariaDB: session-level timeouts, and DDL that commits as it runs."""
    with engine.connect() as conn:
        if not params.transaction:
            conn.execution_options(isolation_level="AUTOCOMMIT")
        # Known once connected: which server, so which timeout variables.
        sets, notes = mysql.timeout_statements(conn.dialect, params.lock_timeout, params.statement_timeout)
        for note in notes:
            runner.ctx.output(f"note: {note}")
        runner.on_mysql(mysql.flavour(conn.dialect), autocommit=not params.transaction)
        try:
            with conn.begin():
                for statement in sets:
                    conn.exec_driver_sql(statement)
                runner.run_all(conn)
        finally:
            if sets:
                # No SET LOCAL here: the session's settings would outlive this step in the pool.
                conn.invalidate()


def _run_sqlite_transaction(engine: sa.Engine, runner: _Runner) -> None:
    # pysqlite opens its implicit transaction only before INSERT/UPDATE/DELETE,
    # so DDL would commit on its own; an explicit BEGIN makes the whole list atomic.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN")
        try:
            runner.run_all(conn)
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            # SQLite ends the transaction itself after some errors (SQLITE_FULL, interrupts).
            if conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
                conn.exec_driver_sql("ROLLBACK")
            raise


class _Runner:
    """Runs the statements on one connection and gathers outputs and progress."""

    def __init__(self, statements: list[str], binds: dict[str, Any], ctx: StepContext) -> None:
        self.statements = statements
        self.binds = binds
        self.ctx = ctx
        self.current = 0  # 1-based index of the statement running, 0 before the first
        self.rowcount = 0
        self.rows: list[dict[str, Any]] | None = None
        self.lines: list[str] = []
        # MySQL and MariaDB only: the server's name, and statements 1..committed are committed.
        self.flavour: str | None = None
        self.autocommit = False
        self.committed = 0
        self.kept: KeptDdl | None = None

    def on_mysql(self, flavour: str, *, autocommit: bool) -> None:
        self.flavour, self.autocommit = flavour, autocommit
        self.kept = KeptDdl(self.ctx.checkpoints, self.ctx.masker)
        ddl = [s for s in self.statements if mysql.commits_implicitly(s)]
        if not autocommit and ddl and len(self.statements) > 1:
            self.output(f"note: {flavour} commits each DDL statement, and what ran before it, as it runs: "
                        "if a later statement fails, those stay applied")

    def output(self, line: str) -> None:
        # Kept for the outcome's tail, which does not pass through the output sink.
        line = self.ctx.masker.mask(line)
        self.lines.append(line)
        self.ctx.output(line)

    def run_all(self, conn: sa.Connection) -> None:
        import sqlalchemy as sa

        total = len(self.statements)
        for index, statement in enumerate(self.statements, 1):
            self.current = index
            # Masked before _first_line cuts it: a secret cut in two escapes masking.
            self.output(f"[{self.current}/{total}] {_first_line(self.ctx.masker.mask(statement))}")
            started = time.monotonic()
            execute = partial(conn.execute, sa.text(statement), self.binds)
            result, done_before = self.kept.run_again("", statement, execute) if self.kept else (execute(), None)
            elapsed = _ms(time.monotonic() - started)
            ddl = self.flavour is not None and mysql.commits_implicitly(statement)
            if ddl or self.autocommit:
                self._committed(index, statement)
            if done_before:
                self.output(f"    already applied by an earlier attempt ({done_before}): taken as done")
                continue
            if result.returns_rows:
                rows = [_jsonable_row(row._mapping) for row in result.fetchmany(MAX_ROWS)]
                self.rows = rows
                if _first_word(statement) in _DML_WORDS:
                    changed = len(rows) + sum(1 for _ in result)
                    self.rowcount += changed
                    self.output(f"    {_plural(changed, 'row')} affected ({elapsed})")
                else:
                    result.close()
                    more = "+" if len(rows) == MAX_ROWS else ""
                    self.output(f"    {_plural(len(rows), 'row')}{more} returned ({elapsed})")
            elif result.rowcount >= 0 and not ddl:
                self.rowcount += result.rowcount
                self.output(f"    {_plural(result.rowcount, 'row')} affected ({elapsed})")
            else:
                self.output(f"    done ({elapsed})")

    def _committed(self, index: int, statement: str) -> None:
        self.committed = index
        if self.kept is not None and mysql.commits_implicitly(statement):
            self.kept.keep("", statement)

    def finished(self) -> None:
        if self.kept is not None:
            self.kept.clear()

    def outputs(self) -> dict[str, Any]:
        rows = self.rows or []
        row = rows[0] if rows else None
        value = next(iter(row.values()), None) if row else None
        return {"rowcount": self.rowcount, "rows": rows, "row": row, "value": value}

    def failure(self, err: BaseException) -> StepOutcome:
        reason = describe_db_error(err, self.ctx.masker)
        if self.current:
            statement = self.statements[self.current - 1]
            if len(self.statements) > 1:
                reason = f"statement {self.current} of {len(self.statements)} failed{self._left_applied()}: {reason}"
            self.output(f"failed: {reason}")
            details = [self.ctx.masker.mask(line) for line in statement.splitlines()[:10]]
        else:
            self.output(f"failed: {reason}")
            details = []
        return StepOutcome(False, self.outputs(), reason, self.tail() + details)

    def _left_applied(self) -> str:
        """On MySQL, what a failure cannot take back: DDL has committed itself and what ran before it."""
        if not self.committed or self.autocommit:
            return ""
        which = "statement 1" if self.committed == 1 else f"statements 1-{self.committed}"
        return f" ({which} stayed applied: {self.flavour} commits each DDL statement and what ran before it)"

    def tail(self) -> list[str]:
        return self.lines[-20:]

    def summary(self) -> str:
        return f"{_plural(len(self.statements), 'statement')}, {_plural(self.rowcount, 'row')} affected"


def _first_word(statement: str) -> str:
    word = _WORD.match(statement.lstrip())
    return word[0].upper() if word else ""


def _first_line(statement: str) -> str:
    line = next((ln.strip() for ln in statement.splitlines() if ln.strip()), "")
    more = len(line) > 120 or "\n" in statement.strip()
    return line[:120] + (" ..." if more else "")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _jsonable_row(mapping: Any) -> dict[str, Any]:
    return {str(key): _jsonable(value) for key, value in mapping.items()}


def _jsonable(value: Any) -> Any:
    """Driver values as JSON the state store and templates can hold."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


KIND = SqlStep()
