"""The checkpoint a backfill saves after each committed batch, and reading it back.

Format 2 keeps the key as JSON: ``key`` (the column names), ``last_key`` and
``max_key`` (lists, one value per column). Format 1, written before any
ordered key could be walked, kept integers in ``last_key`` and ``max_key``;
it resumes as long as the step still walks one integer column, and is
refused with a clear message otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from runbook.steps.backfill.keys import Key, KeyValue, decode, encode
from runbook.steps.backfill.progress import Tally

FORMAT = 2


class CheckpointRefused(Exception):
    """A saved checkpoint that this step cannot continue from."""


@dataclass
class Position:
    """Where the backfill stands: resumed from a checkpoint or fresh."""

    after: KeyValue | None
    max_key: KeyValue | None
    size: int
    # Rows to check in all, for progress: an estimate until the walk ends.
    total: int
    estimated: bool
    tally: Tally
    # Length of the report the checkpoint covers; None starts a new report.
    report_bytes: int | None

    def data(self, report_bytes: int, key: Key) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": list(key.columns),
            "last_key": None if self.after is None else encode(self.after),
            "max_key": None if self.max_key is None else encode(self.max_key),
            "batch_size": self.size,
            "report_bytes": report_bytes,
            # Rows to check in all, so that `runbook status` on any machine sharing the
            # store can show "rows done / total" (done is the tally's ``total``).
            "rows_total": self.total,
            "rows_estimated": self.estimated,
            **asdict(self.tally),
        }


def position_from(saved: dict[str, Any], key: Key) -> Position:
    """The position a saved checkpoint records; ``CheckpointRefused`` if it is not this key's."""
    tally = Tally.from_checkpoint(saved)
    last: KeyValue | None
    upto: KeyValue | None
    try:
        if saved.get("format") is None:
            last, upto = _format_1(saved, key)
        else:
            if saved["format"] != FORMAT:
                raise CheckpointRefused(
                    f"the checkpoint has format {saved['format']}, newer than this runbook reads ({FORMAT}): resume with"
                    " the runbook version that saved it"
                )
            if list(saved["key"]) != list(key.columns):
                raise CheckpointRefused(
                    f"the checkpoint walked the key ({', '.join(saved['key'])}), this step walks {key.text()}:"
                    " start a new run (without --resume) to backfill from the beginning"
                )
            last = None if saved["last_key"] is None else decode(saved["last_key"], key)
            upto = None if saved["max_key"] is None else decode(saved["max_key"], key)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointRefused(f"the checkpoint cannot be read ({type(err).__name__}: {err})") from err
    total = int(saved.get("rows_total") or 0)
    return Position(last, upto, int(saved["batch_size"]), total, bool(saved.get("rows_estimated")), tally, saved["report_bytes"])


def _format_1(saved: dict[str, Any], key: Key) -> tuple[KeyValue, KeyValue]:
    """Integers ``last_key``/``max_key`` of a one-column integer key."""
    last, upto = saved["last_key"], saved["max_key"]
    if len(key.columns) != 1 or key.python_types[0] is not int:
        raise CheckpointRefused(
            f"the checkpoint was saved by an older runbook that walked integer keys (it stopped after {last});"
            f" this step walks {key.text()}, which is not one integer column: start a new run (without --resume)"
            " to backfill from the beginning (rows already set no longer match where and are skipped)"
        )
    return (int(last),), (int(upto),)
