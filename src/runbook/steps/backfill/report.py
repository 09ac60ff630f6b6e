"""The CSV report of flagged rows and the summary block of a backfill."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Callable
from typing import TextIO

from runbook.safefile import open_for_writing
from runbook.steps.backfill.keys import KeyValue, encode
from runbook.steps.backfill.params import BackfillParams
from runbook.steps.backfill.progress import BatchTimes, Tally

SAMPLE_KEYS = 10
_PLAIN = (str, int)


def header(key: list[str]) -> tuple[str, ...]:
    # One column "key" for a one-column key, as reports always had; else the key's columns.
    return (*(["key"] if len(key) == 1 else key), "classification", "candidates")


@contextmanager
def report_file(
    path: Path, workdir: Path, key: list[str], resume_bytes: int | None, output: Callable[[str], None]
) -> Iterator[TextIO]:
    """The report, opened for appending; on resume cut back to what the checkpoint covers,
    so lines of a batch whose checkpoint was never saved are not written twice."""
    # Opened through runbook.safefile: a link planted at the report's path or any directory
    # on the way (it lives in the working directory) is refused, never written through.
    fresh = resume_bytes is None or not path.exists()
    fd = open_for_writing(path, workdir, what="the backfill report", append=not fresh)
    if resume_bytes and fresh:
        output(f"warning: {path} is gone; it will hold only the rows from here on")
    elif resume_bytes is not None and not fresh:
        if os.fstat(fd).st_size < resume_bytes:
            output(f"warning: {path} is shorter than its checkpoint records; rows of earlier batches are missing from it")
        else:
            os.ftruncate(fd, resume_bytes)
    with os.fdopen(fd, "w" if fresh else "a", newline="", encoding="utf-8") as report:
        if fresh:
            csv.writer(report).writerow(header(key))
            report.flush()
        yield report


def write_rows(report: TextIO, rows: list[tuple[KeyValue, str, int | None]]) -> None:
    if not rows:
        return
    if all(type(v) in _PLAIN for v in rows[0][0]):
        # Keys of text and integers (the usual) are written as they are: a batch may flag thousands of rows.
        lines = [(*key, classification, "" if n is None else n) for key, classification, n in rows]
    else:
        lines = [(*encode(key), classification, "" if n is None else n) for key, classification, n in rows]
    csv.writer(report).writerows(lines)
    # Flushed, not fsynced: the checkpoint saved next records this length, and only an
    # OS crash could leave the file shorter, which a resume notices and reports.
    report.flush()


class Samples:
    """The first keys of each kind of flagged row, for the summary."""

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {"ambiguous": [], "unresolved": []}

    def add(self, rows: list[tuple[KeyValue, str, int | None]], show: Callable[[KeyValue], str]) -> None:
        for key, classification, _ in rows:
            if self.full():
                return
            bucket = self.keys["unresolved" if classification == "unresolved" else "ambiguous"]
            if len(bucket) < SAMPLE_KEYS:
                bucket.append(show(key))

    def full(self) -> bool:
        return all(len(bucket) >= SAMPLE_KEYS for bucket in self.keys.values())


def summary(
    p: BackfillParams, tally: Tally, write: bool, report: Path, samples: Samples | None, times: BatchTimes | None = None
) -> str:
    needed = tally.total - tally.skipped_already_set
    if write:
        title, verb = f"Backfill Summary: {p.target}", "Updated successfully:"
    else:
        title, verb = f"Backfill Dry Run: {p.target} (nothing written)", "Would update:"
    ambiguous = f"{tally.ambiguous:,}"
    if p.resolve is not None and tally.ambiguous:
        ambiguous += f" ({tally.updated_ambiguous:,} set to the first candidate)" if p.ambiguous == "first" else " (left unset)"
    lines = [
        f"{title}",
        "=" * len(title),
        f"Total rows checked:      {tally.total:,}",
        f"{verb:<25}{tally.updated:,}",
        f"Skipped (already set):   {tally.skipped_already_set:,}",
        f"Skipped (no candidate):  {tally.unresolved:,}",
        f"Ambiguous cases:         {ambiguous}",
        f"Errors:                  {tally.errors:,}",
        "",
        f"Success Rate: {100.0 * tally.updated / needed if needed else 100.0:.1f}%",
    ]
    if tally.total and not needed:
        lines.append(f"No row matched where ({' '.join(p.where.split())}): nothing to do.")
    if not write and p.update is not None:
        lines.append("(update form: 'would update' counts rows matching where; use resolve to classify them)")
    if times is not None and times.ms:
        lines.append(f"Batch time: {times.text()} ({len(times.ms):,} batches in this attempt)")
    if samples is not None and any(samples.keys.values()):
        shown = "; ".join(f"{name} {', '.join(keys)}" for name, keys in samples.keys.items() if keys)
        lines.append(f"Sample keys: {shown}")
    lines.append(f"Report: {report}")
    return "\n".join(lines)
