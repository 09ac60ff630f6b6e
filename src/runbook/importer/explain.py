"""``--explain``: per range of source lines, what it became. Every line is listed."""

from __future__ import annotations

import unicodedata

from runbook.importer.draft import TODO, Draft, Entry
from runbook.importer.markdown import Lines


def account_for_every_line(draft: Draft, lines: list[str]) -> None:
    """Blank lines are noted as such; any other line no part of the importer took becomes a
    TODO comment at the end of the draft, so that nothing is dropped silently."""
    covered = draft.ledger.covered()
    missing = [n for n in range(1, len(lines) + 1) if n not in covered]
    for run in _runs(missing):
        text = [lines[n - 1] for n in range(run.first, run.last + 1)]
        if not any(t.strip() for t in text):
            draft.ledger.note(run, "blank")
            continue
        draft.leftovers.append(f"{TODO}: lines {run} were not translated:\n" + "\n".join(text))
        draft.ledger.note(run, f"not understood: quoted in a {TODO} comment at the end")


def _runs(numbers: list[int]) -> list[Lines]:
    runs: list[Lines] = []
    for n in numbers:
        if runs and runs[-1].last == n - 1:
            runs[-1] = Lines(runs[-1].first, n)
        else:
            runs.append(Lines(n, n))
    return runs


def render(draft: Draft, lines: list[str]) -> str:
    entries = sorted(draft.ledger.entries, key=lambda e: (e.lines.first, e.lines.last))
    out = [f"{'lines':>9}  {'source':<44}  became"]
    for entry in entries:
        excerpt = _visible(lines[entry.lines.first - 1].strip()) if entry.lines.first <= len(lines) else ""
        if len(excerpt) > 44:
            excerpt = excerpt[:43] + "…"
        out.append(f"{str(entry.lines):>9}  {excerpt:<44}  {_what(entry)}")
    return "\n".join(out)


def _what(entry: Entry) -> str:
    if entry.step is None or not entry.step.place:
        return entry.what
    return f"{entry.what} [{entry.step.place}]"


def _visible(text: str) -> str:
    """Line and paragraph separators and format characters written as escapes: a terminal
    (or a table viewer) would break the row at them or show nothing."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Zl", "Zp", "Cf") else c for c in text)
