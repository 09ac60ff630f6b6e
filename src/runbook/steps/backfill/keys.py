"""The walked key: its columns as the database has them, and whether it can be walked.

A backfill walks any ordered unique key (integer, UUID, text, or several
columns such as ``(tenant_id, id)``). Walking it in batches is only cheap when
an index serves ``ORDER BY key`` and only correct when the key is unique and
never NULL: otherwise every batch scans the table, or rows are visited twice
or never. ``inspect_key`` asks the database, so the step is refused before
any write when it can tell.

Key values travel through checkpoints and outputs as JSON: ``encode`` turns
them into JSON values and ``decode`` back, by the column's type.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from runbook.steps.backfill.params import BackfillParams

if TYPE_CHECKING:
    import sqlalchemy as sa

KeyValue = tuple[Any, ...]


class KeyRefused(Exception):
    """The key cannot be walked (a column or the index it needs is missing): nothing was written."""


@dataclass(frozen=True)
class Key:
    """The walked key's columns, with the table and the column to set, as SQLAlchemy Core objects."""

    columns: tuple[str, ...]
    table: sa.TableClause
    # Python types of the key columns (None when the type has none), for decoding checkpoints.
    python_types: tuple[type | None, ...]
    # The set column's Python type, for checking resolved values where the database does not.
    set_type: type | None

    @property
    def cols(self) -> list[sa.ColumnClause[Any]]:
        return [self.table.c[name] for name in self.columns]

    def text(self) -> str:
        return self.columns[0] if len(self.columns) == 1 else f"({', '.join(self.columns)})"

    def show(self, value: KeyValue | None) -> str:
        """A key value as the operator reads it in messages."""
        if value is None:
            return "the start"
        shown = [_show(v) for v in value]
        return shown[0] if len(shown) == 1 else f"({', '.join(shown)})"


def _show(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def inspect_key(conn: sa.Connection, params: BackfillParams) -> Key:
    """The key as the database defines it; ``KeyRefused`` naming what is missing."""
    import sqlalchemy as sa

    schema, _, name = params.table.rpartition(".")
    inspector = sa.inspect(conn)
    try:
        columns = {c["name"]: c for c in inspector.get_columns(name, schema=schema or None)}
    except sa.exc.NoSuchTableError:
        raise KeyRefused(f"table {params.table} does not exist") from None
    wanted = [*params.key, *([params.set_column] if params.set_column else [])]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise KeyRefused(
            f"{'key column' if missing[0] in params.key else 'set_column'} {missing[0]} does not exist in {params.table}"
            f" (its columns: {', '.join(columns)})"
        )
    _check_index(inspector, params, schema or None, name, columns)
    table = sa.table(name, *[sa.column(c, columns[c]["type"]) for c in dict.fromkeys(wanted)], schema=schema or None)
    return Key(
        columns=tuple(params.key),
        table=table,
        python_types=tuple(_python_type(columns[c]["type"]) for c in params.key),
        set_type=_python_type(columns[params.set_column]["type"]) if params.set_column else None,
    )


def _check_index(inspector: Any, params: BackfillParams, schema: str | None, name: str, columns: dict[str, Any]) -> None:
    """A primary key or unique index on exactly the key columns, in key order, none of them nullable."""
    key = list(params.key)
    pk = inspector.get_pk_constraint(name, schema=schema) or {}
    if list(pk.get("constrained_columns") or []) == key:
        return
    unique: list[tuple[str, list[str]]] = [
        (u.get("name") or "unnamed", list(u["column_names"])) for u in inspector.get_unique_constraints(name, schema=schema)
    ]
    plain: list[tuple[str, list[str]]] = []
    for index in inspector.get_indexes(name, schema=schema):
        names = list(index.get("column_names") or [])
        (unique if index.get("unique") else plain).append((index.get("name") or "unnamed", names))
    wanted = f"a unique index on {params.table} ({', '.join(key)})"
    for index_name, names in unique:
        if names == key:
            nullable = [c for c in key if columns[c].get("nullable")]
            if nullable:
                raise KeyRefused(
                    f"key column {nullable[0]} of {params.table} may be NULL: rows where it is NULL would never be"
                    f" visited; make it NOT NULL (it is unique through {index_name}) or walk the primary key"
                )
            return
    same = [n for n, names in plain if names == key]
    if same:
        raise KeyRefused(
            f"the key {params.key_text} of {params.table} is not unique: index {same[0]} allows duplicates."
            f" Missing: {wanted} (or walk the primary key{_pk_hint(pk)})"
        )
    reordered = [n for n, names in unique if sorted(names) == sorted(key)]
    hint = f"; {reordered[0]} has these columns in another order: walk them in its order" if reordered else ""
    raise KeyRefused(
        f"no unique index on {params.table} ({', '.join(key)}): every batch would scan the table."
        f" Missing: {wanted}{hint} (or walk the primary key{_pk_hint(pk)})"
    )


def _pk_hint(pk: dict[str, Any]) -> str:
    cols = list(pk.get("constrained_columns") or [])
    return f" {cols[0] if len(cols) == 1 else '[' + ', '.join(cols) + ']'}" if cols else ""


def _python_type(type_: Any) -> type | None:
    try:
        return type_.python_type
    except NotImplementedError:
        return None


# ------------------------------------------------------------------ JSON codec


def encode(value: KeyValue) -> list[Any]:
    return [_encode_one(v) for v in value]


def _encode_one(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def decode(values: list[Any], key: Key) -> KeyValue:
    if len(values) != len(key.columns):
        raise ValueError(f"{len(values)} values for the {len(key.columns)} key columns")
    return tuple(_decode_one(v, t) for v, t in zip(values, key.python_types, strict=True))


def _decode_one(value: Any, python_type: type | None) -> Any:
    if value is None or python_type is None or isinstance(value, python_type):
        return value
    if python_type is uuid.UUID:
        return uuid.UUID(str(value))
    if python_type is Decimal:
        return Decimal(str(value))
    if python_type is dt.datetime:
        return dt.datetime.fromisoformat(value)
    if python_type is dt.date:
        return dt.date.fromisoformat(value)
    if python_type is dt.time:
        return dt.time.fromisoformat(value)
    if python_type is bytes:
        return bytes.fromhex(value)
    if python_type is int and isinstance(value, str):
        return int(value)
    return value


def output_value(value: KeyValue | None) -> Any:
    """A key as a step output: the value itself for a one-column key, else a list."""
    if value is None:
        return None
    encoded = encode(value)
    return encoded[0] if len(encoded) == 1 else encoded
