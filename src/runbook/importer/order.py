"""Stated orders: ``1. Migrate -> 2. Backfill -> 3. Deploy``, ``DO NOT deploy code before migration``."""

from __future__ import annotations

import re

from runbook.importer.draft import Ordering
from runbook.importer.markdown import Lines
from runbook.importer.text import plain, step_number

_ARROW = re.compile(r"\s*(?:→|->|=>|⟶|➜|➔|-->)\s*")
_NOT_BEFORE = re.compile(
    r"\b(?:do not|don't|never|must not|cannot|can't|should not|shouldn't)\s+(?P<later>.+?)\s+(?:before|until)\s+(?P<earlier>.+?)"
    r"(?=\s+[-–—(]|[.;,!:]|\s+(?:is|has|have|was|completes?|finishe[sd]|ran|runs?)\b|$)",
    re.I,
)
_ONLY_AFTER = re.compile(
    r"\b(?P<later>[\w][\w\s/-]*?)\s+(?:must|should|may|can)\s+(?:only\s+)?(?:run|happen|start|be (?:run|done|deployed|started))\s+(?:only\s+)?after\s+(?P<earlier>.+?)(?=[.;,!:(]|\s+[-–—]|$)",
    re.I,
)
_CAUSE = re.compile(r"\b(?:will|would|can|may)\s+(?:cause|raise|throw|fail with|result in|lead to)\s*:?\s*(?P<what>.+)$", re.I)


def orderings(markdown: str, lines: Lines) -> list[Ordering]:
    found: list[Ordering] = []
    text = plain(markdown)
    for line in text.split("\n"):
        parts = [p.strip() for p in _ARROW.split(line) if p.strip()]
        if len(parts) >= 2 and not line.lstrip().startswith(("$", "#")):
            for earlier, later in zip(parts, parts[1:]):
                e_number, e_title = step_number(earlier)
                l_number, l_title = step_number(later)
                found.append(Ordering(e_title, l_title, lines, e_number, l_number))
    for sentence in re.split(r"(?<=[.!?])\s+|\n", text):
        for pattern in (_NOT_BEFORE, _ONLY_AFTER):
            match = pattern.search(sentence)
            if match:
                cause = _CAUSE.search(sentence[match.end() :])
                found.append(Ordering(match["earlier"].strip(), match["later"].strip(), lines, consequence=cause["what"].strip(" .") if cause else None))
                break
    return found
