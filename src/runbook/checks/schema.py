"""``check: table_exists``, ``column_exists``, ``foreign_key_exists``, ``index_exists``.

Each asserts presence, or absence with ``exists: false`` (after a rollback).
Names are compared exactly as the database stores them (PostgreSQL folds
unquoted names to lower case, so write them in lower case there).

On PostgreSQL a foreign key added ``NOT VALID`` and an index left invalid by a
failed ``CREATE INDEX CONCURRENTLY`` exist in the catalog but do not do their
job, so they count as present for ``exists: false`` and as failures otherwise;
that is read from ``pg_constraint`` and ``pg_index``, not from SQLAlchemy.

Also home of the helpers the other database checks share: identifier
validation and quoting, and the always-rolled-back connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from runbook import mysql
from runbook.checks.base import CheckContext, CheckResult

if TYPE_CHECKING:
    import sqlalchemy as sa

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def check_identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain identifier (letters, digits, _ and $; not starting with a digit)")
    return value


def check_table_name(value: str) -> str:
    parts = value.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(f"{value!r} is not a table name: write table or schema.table with plain identifiers")
    return value


# Validated at load time so nothing but a plain name is ever quoted into SQL.
Identifier = Annotated[str, AfterValidator(check_identifier)]
TableName = Annotated[str, AfterValidator(check_table_name)]


def split_table(table: str, schema: str | None = None) -> tuple[str | None, str]:
    """``(schema, table)`` from ``schema.table`` or from ``table`` plus a separate schema."""
    if "." in table:
        prefix, name = table.split(".", 1)
        if schema is not None and schema != prefix:
            raise ValueError(f"table {table!r} names schema {prefix!r} but schema is {schema!r}")
        return prefix, name
    return schema, table


def quote_table(conn: sa.Connection, table: str) -> str:
    """A validated ``table`` or ``schema.table`` quoted for the connection's dialect."""
    quote = conn.dialect.identifier_preparer.quote_identifier
    return ".".join(quote(part) for part in check_table_name(table).split("."))


def quote_column(conn: sa.Connection, column: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(check_identifier(column))


@contextmanager
def reading(ctx: CheckContext, connection: str) -> Iterator[sa.Connection]:
    """A connection whose transaction is always rolled back: checks never change data."""
    engine = ctx.connections.engine(connection)
    with engine.connect() as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def display_table(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


class _TableParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: str
    table: TableName
    # Aliased: a field called ``schema`` would shadow BaseModel.schema.
    schema_name: Identifier | None = Field(None, alias="schema")
    exists: bool = True

    @model_validator(mode="after")
    def _one_schema(self) -> _TableParams:
        split_table(self.table, self.schema_name)
        return self

    @property
    def target(self) -> tuple[str | None, str]:
        return split_table(self.table, self.schema_name)

    @property
    def shown(self) -> str:
        return display_table(*self.target)


def _presence(exists: bool) -> str:
    return "present" if exists else "absent"


def _table_missing(params: _TableParams) -> CheckResult:
    """A missing table has no column, key or index: fine for ``exists: false``."""
    return CheckResult(not params.exists, "absent", _presence(params.exists), f"table {params.shown} does not exist")


# ---------------------------------------------------------------- tables


class TableExistsParams(_TableParams):
    pass


class TableExistsCheck:
    name: ClassVar[str] = "table_exists"
    Params: ClassVar[type[BaseModel]] = TableExistsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: TableExistsParams) -> str:
        return f"[{params.connection}] table {params.shown} {'exists' if params.exists else 'does not exist'}"

    def evaluate(self, params: TableExistsParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        schema, table = params.target
        with reading(ctx, params.connection) as conn:
            found = sa.inspect(conn).has_table(table, schema=schema)
        return CheckResult(found == params.exists, _presence(found), _presence(params.exists))


# ---------------------------------------------------------------- columns

# Loose comparison: ``varchar`` matches VARCHAR(20), CHARACTER VARYING and TEXT;
# ``integer`` matches INT4 and BIGINT. Unknown names must match exactly.
_TYPE_FAMILIES: dict[str, frozenset[str]] = {
    "string": frozenset(
        {"varchar", "character varying", "char", "character", "bpchar", "nchar", "nvarchar", "text", "string",
         "clob", "citext", "tinytext", "mediumtext", "longtext"}
    ),
    "integer": frozenset(
        {"int", "integer", "int2", "int4", "int8", "smallint", "bigint", "tinyint", "mediumint",
         "serial", "smallserial", "bigserial", "serial4", "serial8"}
    ),
    "numeric": frozenset({"numeric", "decimal", "number"}),
    "float": frozenset({"real", "float", "float4", "float8", "double", "double precision"}),
    "boolean": frozenset({"bool", "boolean"}),
    "timestamp": frozenset(
        {"timestamp", "datetime", "timestamptz", "timestamp with time zone", "timestamp without time zone"}
    ),
    "date": frozenset({"date"}),
    "time": frozenset({"time", "timetz", "time with time zone", "time without time zone"}),
    "binary": frozenset({"bytea", "blob", "binary", "varbinary"}),
    "json": frozenset({"json", "jsonb"}),
    "uuid": frozenset({"uuid"}),
}
_FAMILY_OF = {alias: family for family, aliases in _TYPE_FAMILIES.items() for alias in aliases}


# What MySQL and MariaDB report for types they only have as aliases: BOOLEAN is
# TINYINT(1), and MariaDB's JSON is LONGTEXT (with a json_valid check).
_ALIAS_OF: dict[str, str] = {"tinyint(1)": "boolean", "longtext": "json"}
_COLUMN_OPTIONS = re.compile(r"\b(?:character set|charset|collate)\s+\w+|\bunsigned\b|\bzerofill\b")


def type_family(type_name: str) -> str:
    base = re.sub(r"\(.*?\)", "", _COLUMN_OPTIONS.sub("", type_name.lower()))
    base = " ".join(base.split())
    return _FAMILY_OF.get(base, base)


def same_type_family(expected: str, observed: str) -> bool:
    """Whether an observed column type is of the family ``expected`` names."""
    wanted = type_family(expected)
    if wanted == type_family(observed):
        return True
    bare = " ".join(_COLUMN_OPTIONS.sub("", observed.lower()).replace(", ", ",").split())
    return _ALIAS_OF.get(bare) == wanted


class ColumnExistsParams(_TableParams):
    column: Identifier
    type: str | None = None
    nullable: bool | None = None


def _column_expectation(params: ColumnExistsParams) -> str:
    if not params.exists:
        return "absent"
    if params.type is None and params.nullable is None:
        return "present"
    parts = [params.type or "any type"]
    if params.nullable is not None:
        parts.append("NULL" if params.nullable else "NOT NULL")
    return " ".join(parts)


class ColumnExistsCheck:
    name: ClassVar[str] = "column_exists"
    Params: ClassVar[type[BaseModel]] = ColumnExistsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: ColumnExistsParams) -> str:
        if not params.exists:
            return f"[{params.connection}] column {params.shown}.{params.column} does not exist"
        return f"[{params.connection}] column {params.shown}.{params.column} exists ({_column_expectation(params)})"

    def evaluate(self, params: ColumnExistsParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        schema, table = params.target
        with reading(ctx, params.connection) as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(table, schema=schema):
                return _table_missing(params)
            columns = {c["name"]: c for c in inspector.get_columns(table, schema=schema)}
            column = columns.get(params.column)
            type_name = None if column is None else column["type"].compile(dialect=conn.dialect)
        expected = _column_expectation(params)
        if column is None:
            return CheckResult(not params.exists, "absent", expected, f"{params.shown} has no column {params.column}")
        observed = f"{type_name} {'NULL' if column['nullable'] else 'NOT NULL'}"
        if not params.exists:
            return CheckResult(False, observed, expected)
        problems = []
        assert type_name is not None  # the column exists: answered above when it does not
        if params.type is not None and not same_type_family(params.type, type_name):
            problems.append(f"type {type_name} is not a {params.type}")
        if params.nullable is not None and bool(column["nullable"]) != params.nullable:
            problems.append("column is nullable" if column["nullable"] else "column is NOT NULL")
        return CheckResult(not problems, observed, expected, "; ".join(problems) or None)


# ---------------------------------------------------------------- foreign keys


@dataclass(frozen=True)
class _ForeignKey:
    name: str | None
    columns: tuple[str, ...]
    referred_schema: str | None
    referred_table: str
    referred_columns: tuple[str, ...]
    valid: bool

    def __str__(self) -> str:
        target = display_table(self.referred_schema, self.referred_table)
        return f"{self.name or '(unnamed)'} ({', '.join(self.columns)}) -> {target} ({', '.join(self.referred_columns)})"


_PG_FOREIGN_KEYS = """
SELECT c.conname, c.convalidated,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       rn.nspname, rt.relname,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class rt ON rt.oid = c.confrelid
JOIN pg_namespace rn ON rn.oid = rt.relnamespace
WHERE c.contype = 'f' AND t.relname = :table AND n.nspname = coalesce(:schema, current_schema())
ORDER BY c.conname
"""


def _foreign_keys(conn: sa.Connection, schema: str | None, table: str) -> tuple[list[_ForeignKey], str | None]:
    """The table's keys and its schema; a referenced table in that same schema
    has ``referred_schema`` None, as SQLAlchemy reflects it."""
    import sqlalchemy as sa

    home = schema or sa.inspect(conn).default_schema_name

    def elsewhere(referred: str | None) -> str | None:
        return None if referred in (None, home) else referred

    if conn.dialect.name == "postgresql":
        rows = conn.execute(sa.text(_PG_FOREIGN_KEYS), {"table": table, "schema": schema})
        return [_ForeignKey(r[0], tuple(r[2]), elsewhere(r[3]), r[4], tuple(r[5]), bool(r[1])) for r in rows], home
    return [
        _ForeignKey(
            fk["name"],
            tuple(fk["constrained_columns"]),
            elsewhere(fk["referred_schema"]),
            fk["referred_table"],
            tuple(fk["referred_columns"]),
            True,
        )
        for fk in sa.inspect(conn).get_foreign_keys(table, schema=schema)
    ], home


class ForeignKeyExistsParams(_TableParams):
    # ``constraint``, not ``name``: ``name`` is every check's label key.
    constraint: Identifier | None = None
    columns: list[Identifier] | None = None
    referenced_table: TableName | None = None
    referenced_columns: list[Identifier] | None = None

    @model_validator(mode="after")
    def _identified(self) -> ForeignKeyExistsParams:
        if self.constraint is None and not (self.columns and self.referenced_table):
            raise ValueError("give the foreign key's constraint name, or columns and referenced_table")
        if (self.columns is None) != (self.referenced_table is None):
            raise ValueError("columns and referenced_table go together")
        if self.referenced_columns is not None and self.columns is None:
            raise ValueError("referenced_columns needs columns and referenced_table")
        if self.referenced_columns is not None and len(self.referenced_columns) != len(self.columns or []):
            raise ValueError("columns and referenced_columns must have the same length")
        return self

    def matches(self, fk: _ForeignKey, home: str | None) -> bool:
        if self.constraint is not None and fk.name != self.constraint:
            return False
        if self.columns is not None and fk.columns != tuple(self.columns):
            return False
        if self.referenced_table is not None:
            ref_schema, ref_table = split_table(self.referenced_table)
            if fk.referred_table != ref_table or (ref_schema is not None and (fk.referred_schema or home) != ref_schema):
                return False
        return self.referenced_columns is None or fk.referred_columns == tuple(self.referenced_columns)

    @property
    def wanted(self) -> str:
        text = self.constraint or ""
        if self.columns is not None:
            target = f"{self.referenced_table}"
            if self.referenced_columns:
                target += f" ({', '.join(self.referenced_columns)})"
            text = f"{text} ({', '.join(self.columns)}) -> {target}".strip()
        return text


class ForeignKeyExistsCheck:
    name: ClassVar[str] = "foreign_key_exists"
    Params: ClassVar[type[BaseModel]] = ForeignKeyExistsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: ForeignKeyExistsParams) -> str:
        verb = "exists" if params.exists else "does not exist"
        return f"[{params.connection}] foreign key {params.wanted} on {params.shown} {verb}"

    def evaluate(self, params: ForeignKeyExistsParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        schema, table = params.target
        with reading(ctx, params.connection) as conn:
            if not sa.inspect(conn).has_table(table, schema=schema):
                return _table_missing(params)
            keys, home = _foreign_keys(conn, schema, table)
        matching = [k for k in keys if params.matches(k, home)]
        return _judge(params.exists, matching, keys, "NOT VALID", f"foreign keys on {params.shown}")


# ---------------------------------------------------------------- indexes


@dataclass(frozen=True)
class _Index:
    name: str
    columns: tuple[str, ...]
    valid: bool

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(self.columns)})"


# Key columns only (not INCLUDE); expressions come back as their SQL text.
_PG_INDEXES = """
SELECT i.relname, ix.indisvalid,
       ARRAY(SELECT pg_get_indexdef(ix.indexrelid, k, true) FROM generate_series(1, ix.indnkeyatts) AS k ORDER BY k)
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.relname = :table AND n.nspname = coalesce(:schema, current_schema())
ORDER BY i.relname
"""


def _indexes(conn: sa.Connection, schema: str | None, table: str) -> list[_Index]:
    import sqlalchemy as sa

    if conn.dialect.name == "postgresql":
        rows = conn.execute(sa.text(_PG_INDEXES), {"table": table, "schema": schema})
        return [_Index(r[0], tuple(c.strip('"') for c in r[2]), bool(r[1])) for r in rows]
    # Auto indexes back UNIQUE and PRIMARY KEY constraints, as on PostgreSQL.
    inspector = sa.inspect(conn)
    found = inspector.get_indexes(table, schema=schema, include_auto_indexes=True)
    indexes = [_Index(ix["name"] or "<unnamed>", tuple(c or "<expression>" for c in ix["column_names"]), True) for ix in found]
    if mysql.is_mysql(conn.dialect.name):
        # SQLAlchemy leaves out MySQL's primary key, which is the index named PRIMARY.
        key = inspector.get_pk_constraint(table, schema=schema)["constrained_columns"]
        if key:
            indexes.insert(0, _Index("PRIMARY", tuple(key), True))
    return indexes


class IndexExistsParams(_TableParams):
    # ``index``, not ``name``: ``name`` is every check's label key.
    index: Identifier | None = None
    columns: list[Identifier] | None = None

    @model_validator(mode="after")
    def _identified(self) -> IndexExistsParams:
        if self.index is None and not self.columns:
            raise ValueError("give the index name, or its columns")
        return self

    def matches(self, index: _Index) -> bool:
        if self.index is not None and index.name != self.index:
            return False
        return self.columns is None or index.columns == tuple(self.columns)

    @property
    def wanted(self) -> str:
        columns = f" ({', '.join(self.columns)})" if self.columns else ""
        return f"{self.index or ''}{columns}".strip()


class IndexExistsCheck:
    name: ClassVar[str] = "index_exists"
    Params: ClassVar[type[BaseModel]] = IndexExistsParams
    read_only: ClassVar[bool] = True

    def describe(self, params: IndexExistsParams) -> str:
        verb = "exists" if params.exists else "does not exist"
        return f"[{params.connection}] index {params.wanted} on {params.shown} {verb}"

    def evaluate(self, params: IndexExistsParams, ctx: CheckContext) -> CheckResult:
        import sqlalchemy as sa

        schema, table = params.target
        with reading(ctx, params.connection) as conn:
            if not sa.inspect(conn).has_table(table, schema=schema):
                return _table_missing(params)
            indexes = _indexes(conn, schema, table)
        matching = [i for i in indexes if params.matches(i)]
        return _judge(params.exists, matching, indexes, "INVALID", f"indexes on {params.shown}")


def _judge(exists: bool, matching: list[Any], everything: list[Any], broken: str, listing: str) -> CheckResult:
    """Shared verdict for keys and indexes, which may be present but unusable
    (``valid`` false): that fails ``exists: true`` and ``exists: false`` alike."""
    expected = _presence(exists)
    usable = [m for m in matching if m.valid]
    if not exists:
        if not matching:
            return CheckResult(True, "absent", expected)
        observed = "present" if usable else f"present but {broken}"
        return CheckResult(False, observed, expected, ", ".join(map(str, matching)))
    if usable:
        return CheckResult(True, "present", expected, str(usable[0]))
    if matching:
        if broken == "NOT VALID":
            hint = "validate it (ALTER TABLE ... VALIDATE CONSTRAINT)"
        else:
            hint = "drop it and create it again"
        return CheckResult(False, f"present but {broken}", expected, f"{', '.join(map(str, matching))}: {hint}")
    return CheckResult(False, "absent", expected, f"{listing}: {', '.join(map(str, everything)) or 'none'}")


TABLE_EXISTS = TableExistsCheck()
COLUMN_EXISTS = ColumnExistsCheck()
FOREIGN_KEY_EXISTS = ForeignKeyExistsCheck()
INDEX_EXISTS = IndexExistsCheck()
