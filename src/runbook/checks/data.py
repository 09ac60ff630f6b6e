"""``check: no_nulls``, ``check: no_orphans``, ``check: row_count`` - data
preconditions for a migration (backfill done, no dangling references).

Table and column names are validated as plain identifiers and quoted; they are
never formatted into SQL as text. ``where`` (and ``row_count``'s ``query``) is
an SQL fragment taken as written: it comes from the runbook file, which is
trusted like any other code in the repository, never from run-time input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from runbook.checks.base import CheckContext, CheckResult
from runbook.checks.schema import (
    Identifier,
    TableName,
    check_identifier,
    check_table_name,
    quote_column,
    quote_table,
    reading,
    split_table,
)
from runbook.expect import ExpectationText, parse_expectation

if TYPE_CHECKING:
    import sqlalchemy as sa

SAMPLE_SIZE = 5


def _missing(conn: sa.Connection, table: str, columns: list[str]) -> str | None:
    """Why the query cannot run, when a table or column is not there (yet)."""
    import sqlalchemy as sa

    schema, name = split_table(table)
    inspector = sa.inspect(conn)
    if not inspector.has_table(name, schema=schema):
        return f"table {table} does not exist"
    present = {c["name"] for c in inspector.get_columns(name, schema=schema)}
    absent = [c for c in columns if c not in present]
    return f"{table} has no column {', '.join(absent)}" if absent else None


def _and_where(where: str | None) -> str:
    return f" AND ({where})" if where else ""


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _sample(rows: Sequence[Any]) -> str:
    return ", ".join(str(r[0]) if len(r) == 1 else str(tuple(r)) for r in rows)


class NoNullsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str
    table: TableName
    column: Identifier
    where: str | None = None


class NoNullsCheck:
    name: ClassVar[str] = "no_nulls"
    Params: ClassVar[type[BaseModel]] = NoNullsParams
    # SQL text: a templated value in it must be a number or a checked name (runbook.sqltext).
    sql_keys: ClassVar[frozenset[str]] = frozenset({"where"})
    read_only: ClassVar[bool] = True

    def describe(self, params: NoNullsParams) -> str:
        scope = f" where {params.where}" if params.where else ""
        return f"[{params.connection}] no NULL in {params.table}.{params.column}{scope}"

    def evaluate(self, params: NoNullsParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        expected = _rows(0)
        with reading(ctx, params.connection) as conn:
            problem = _missing(conn, params.table, [params.column])
            if problem:
                return CheckResult(False, "no such column", expected, problem)
            table, column = quote_table(conn, params.table), quote_column(conn, params.column)
            condition = f"{column} IS NULL{_and_where(params.where)}"
            count = int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {condition}")).scalar_one())
            if count == 0:
                return CheckResult(True, _rows(0), expected)
            schema, name = split_table(params.table)
            key = sa.inspect(conn).get_pk_constraint(name, schema=schema)["constrained_columns"]
            if not key:
                return CheckResult(False, _rows(count), expected, f"{params.table} has no primary key to show")
            keys = ", ".join(quote_column(conn, k) for k in key)
            sample_sql = f"SELECT {keys} FROM {table} WHERE {condition} ORDER BY {keys} LIMIT {SAMPLE_SIZE}"
            sample = conn.execute(sa.text(sample_sql)).all()
        detail = f"{', '.join(key)} of rows with NULL {params.column}: {_sample(sample)}"
        return CheckResult(False, _rows(count), expected, detail)


class NoOrphansParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str
    table: TableName
    column: Identifier
    references: str
    where: str | None = None

    @field_validator("references")
    @classmethod
    def _reference(cls, value: str) -> str:
        table, _, key = value.rpartition(".")
        if not table:
            raise ValueError(f"references {value!r} must be parent_table.key (or schema.parent_table.key)")
        check_table_name(table)
        check_identifier(key)
        return value

    @property
    def parent(self) -> tuple[str, str]:
        table, _, key = self.references.rpartition(".")
        return table, key


class NoOrphansCheck:
    name: ClassVar[str] = "no_orphans"
    Params: ClassVar[type[BaseModel]] = NoOrphansParams
    # SQL text: a templated value in it must be a number or a checked name (runbook.sqltext).
    sql_keys: ClassVar[frozenset[str]] = frozenset({"where"})
    read_only: ClassVar[bool] = True

    def describe(self, params: NoOrphansParams) -> str:
        scope = f" where {params.where}" if params.where else ""
        return f"[{params.connection}] every {params.table}.{params.column} has a {params.references}{scope}"

    def evaluate(self, params: NoOrphansParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        expected = _rows(0)
        parent_table, parent_key = params.parent
        with reading(ctx, params.connection) as conn:
            problem = _missing(conn, params.table, [params.column]) or _missing(conn, parent_table, [parent_key])
            if problem:
                return CheckResult(False, "cannot count", expected, problem)
            table, column = quote_table(conn, params.table), quote_column(conn, params.column)
            # Unaliased child, aliased parent: ``where`` may name child columns
            # as ``child.col``, and a self-reference still resolves correctly.
            orphans = (
                f"FROM {table} WHERE {table}.{column} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {quote_table(conn, parent_table)} AS runbook_parent "
                f"WHERE runbook_parent.{quote_column(conn, parent_key)} = {table}.{column})"
                f"{_and_where(params.where)}"
            )
            count = int(conn.execute(sa.text(f"SELECT COUNT(*) {orphans}")).scalar_one())
            if count == 0:
                return CheckResult(True, _rows(0), expected)
            sample = conn.execute(
                sa.text(f"SELECT DISTINCT {table}.{column} {orphans} ORDER BY 1 LIMIT {SAMPLE_SIZE}")
            ).all()
        return CheckResult(
            False, _rows(count), expected, f"{params.column} values missing from {params.references}: {_sample(sample)}"
        )


class RowCountParams(BaseModel):
    # "Exactly one of" (the validator below), for `runbook schema`.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"oneOf": [{"required": [k]} for k in ["table", "query"]]})

    connection: str
    table: TableName | None = None
    where: str | None = None
    query: str | None = None
    expect: ExpectationText = "> 0"

    @model_validator(mode="after")
    def _source(self) -> RowCountParams:
        if (self.table is None) == (self.query is None):
            raise ValueError("give either table (with an optional where) or query")
        if self.query is not None and self.where is not None:
            raise ValueError("where goes with table; put the condition in the query")
        return self


class RowCountCheck:
    name: ClassVar[str] = "row_count"
    Params: ClassVar[type[BaseModel]] = RowCountParams
    # SQL text: a templated value in it must be a number or a checked name (runbook.sqltext).
    sql_keys: ClassVar[frozenset[str]] = frozenset({"where", "query"})
    read_only: ClassVar[bool] = True

    def describe(self, params: RowCountParams) -> str:
        if params.query is not None:
            source = "rows of " + " ".join(params.query.split())
        else:
            source = f"rows in {params.table}" + (f" where {params.where}" if params.where else "")
        return f"[{params.connection}] {source}  -> expect {parse_expectation(params.expect)}"

    def evaluate(self, params: RowCountParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        expectation = parse_expectation(params.expect)
        with reading(ctx, params.connection) as conn:
            if params.query is not None:
                sql = f"SELECT COUNT(*) FROM ({params.query.strip().rstrip(';')}) AS runbook_counted"
            else:
                assert params.table is not None  # the validator guarantees table or query
                problem = _missing(conn, params.table, [])
                if problem:
                    return CheckResult(False, "no such table", str(expectation), problem)
                where = f" WHERE {params.where}" if params.where else ""
                sql = f"SELECT COUNT(*) FROM {quote_table(conn, params.table)}{where}"
            count = int(conn.execute(sa.text(sql)).scalar_one())
        return CheckResult(expectation.holds(count), str(count), str(expectation))


NO_NULLS = NoNullsCheck()
NO_ORPHANS = NoOrphansCheck()
ROW_COUNT = RowCountCheck()
