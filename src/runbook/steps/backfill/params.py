"""The keys of a ``kind: backfill`` step, checked when the runbook is loaded."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from runbook.expect import ExpectationText
from runbook.model import Duration, parse_duration

# Identifiers are spliced into SQL (quoted for the dialect), so only plain
# (optionally schema-qualified) names pass.
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
_BIND = re.compile(r"(?<![:\w]):((?:lo|hi)(?:_[A-Za-z0-9_]+)?)\b")
_EVERY_BATCHES = re.compile(r"^\s*(\d+)\s*batch(?:es)?\s*$", re.I)

ColumnName = Annotated[str, Field(pattern=COLUMN_PATTERN)]


def _key_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class PauseCheck(BaseModel):
    """One condition under which the backfill waits: exactly one of the three forms."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    replication_lag: Duration | None = Field(None, description="Pause while a replica replays more than this behind.")
    transactions_older_than: Duration | None = Field(
        None, description="Pause while a transaction open longer than this holds a lock on the table."
    )
    sql: str | None = Field(None, description="A query whose first value is compared with 'is'.")
    is_: ExpectationText | None = Field(None, alias="is", description="Pause while the sql value satisfies this, e.g. '> 5'.")
    name: str | None = None
    connection: str | None = Field(None, description="Where to evaluate it; the step's connection by default.")

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        forms = [f for f in ("replication_lag", "transactions_older_than", "sql") if getattr(self, f) is not None]
        if len(forms) != 1:
            raise ValueError("each pause_when item needs exactly one of replication_lag, transactions_older_than or sql")
        if (self.sql is None) != (self.is_ is None):
            raise ValueError("'is' goes with 'sql' (pause while the query's value is, e.g., '> 5'), and sql needs it")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.replication_lag is not None:
            return "replication lag"
        if self.transactions_older_than is not None:
            return "long transaction"
        return " ".join((self.sql or "").split())[:60]


def _parse_every(value: Any) -> Any:
    """``10s`` (seconds) or ``20 batches``."""
    if isinstance(value, (dict, Every)):
        return value
    if isinstance(value, str) and (match := _EVERY_BATCHES.match(value)):
        return {"batches": int(match[1])}
    return {"seconds": parse_duration(value)}


class Every(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float | None = None
    batches: int | None = Field(None, ge=1)


class BackfillParams(BaseModel):
    # "Exactly one of" (the validator below), for `runbook schema`.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"oneOf": [{"required": [k]} for k in ["update", "resolve"]]})

    connection: str
    table: str = Field(pattern=TABLE_PATTERN)
    # json_schema_input_type: the editor schema describes the key as written (one column or a list).
    key: Annotated[list[ColumnName], BeforeValidator(_key_list, json_schema_input_type=ColumnName | list[ColumnName])] = Field(
        description="Ordered unique key walked in keyset batches: one column or a list, e.g. [tenant_id, id]."
    )
    where: str = Field(description="SQL predicate for the rows still to do, e.g. 'subscriber_id IS NULL'.")
    update: str | None = Field(None, description="UPDATE for the key range :lo..:hi (guarded by where).")
    resolve: str | None = Field(None, description="SELECT key, value, candidates for the rows still to do in :lo..:hi.")
    set_column: ColumnName | None = None
    ambiguous: Literal["skip", "first"] = "skip"
    batch_size: int = Field(1000, ge=1)
    min_batch: int = Field(100, ge=1)
    max_batch: int = Field(20000, ge=1)
    target_batch_time: Duration = 0.1
    throttle: Duration = 0.0
    max_errors: int = Field(0, ge=0)
    lock_timeout: Duration = 2.0
    statement_timeout: Duration = 30.0
    report: str | None = None
    # The seed's "dry run first, review, then commit" inside one real run: classify
    # and report as a dry run does, whatever mode the run is in.
    preview: bool = False
    pause_when: list[PauseCheck] = Field(default_factory=list)
    health_every: Annotated[Every, BeforeValidator(_parse_every, json_schema_input_type=str | float | Every)] = Every(seconds=10.0)
    max_pause: Duration = 900.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.update is None) == (self.resolve is None):
            raise ValueError("give exactly one of 'update' or 'resolve'")
        if not self.key:
            raise ValueError("'key' needs at least one column")
        if len(set(self.key)) != len(self.key):
            raise ValueError(f"'key' names a column twice: {self.key}")
        sql = self.update if self.update is not None else self.resolve
        assert sql is not None
        problem = bind_problem(sql, self.key)
        if problem:
            raise ValueError(problem)
        if self.resolve is not None and self.set_column is None:
            raise ValueError("'set_column' is required with 'resolve'")
        if self.update is not None and "ambiguous" in self.model_fields_set:
            raise ValueError("'ambiguous' applies only with 'resolve': an UPDATE does not classify rows")
        if not self.min_batch <= self.batch_size <= self.max_batch:
            raise ValueError(
                f"need min_batch <= batch_size <= max_batch, got {self.min_batch}, {self.batch_size}, {self.max_batch}"
            )
        if self.target_batch_time <= 0:
            raise ValueError("target_batch_time must be positive")
        if self.health_every.seconds is not None and self.health_every.seconds <= 0:
            raise ValueError("health_every must be positive")
        return self

    @property
    def report_path(self) -> str:
        return self.report or f"backfill_{self.table.replace('.', '_')}_report.csv"

    @property
    def target(self) -> str:
        return f"{self.table}.{self.set_column}" if self.set_column else self.table

    @property
    def key_text(self) -> str:
        return self.key[0] if len(self.key) == 1 else f"({', '.join(self.key)})"


def bind_names(key: list[str]) -> tuple[list[str], list[str]]:
    """The bind parameters of a batch's bounds: ``:lo``/``:hi``, or ``:lo_<col>``/``:hi_<col>`` per column."""
    if len(key) == 1:
        return ["lo"], ["hi"]
    return [f"lo_{c}" for c in key], [f"hi_{c}" for c in key]


def bind_problem(sql: str, key: list[str]) -> str | None:
    lo, hi = bind_names(key)
    used = {m.group(1) for m in _BIND.finditer(sql)}
    missing = [f":{name}" for name in (*lo, *hi) if name not in used]
    unknown = sorted(f":{name}" for name in used - {*lo, *hi})
    if len(key) == 1:
        if missing or unknown:
            return "the update/resolve SQL must use both bind parameters :lo and :hi" + (
                f" (a one-column key has no {', '.join(unknown)})" if unknown else ""
            )
        return None
    if missing:
        example = f"({', '.join(key)}) BETWEEN ({', '.join(':' + n for n in lo)}) AND ({', '.join(':' + n for n in hi)})"
        return f"the update/resolve SQL must use the bounds of the key {', '.join(missing)}, e.g. {example}"
    if unknown:
        return f"the update/resolve SQL uses {', '.join(unknown)}, which is not a bound of the key ({', '.join(key)})"
    return None
