"""``runbook docs``: the project's docs/*.md, shipped inside the package.

``src/runbook/docs`` is a symbolic link to the repository's ``docs/``, declared
as package data, so the wheel carries the very files the repository has (no
second copy to drift) and an editable install reads them in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from runbook.errors import UsageError

# Topic names are the file names without ``.md``; the format reference, the one
# `runbook init` points at, is also reachable by the short name it is asked for.
ALIASES = {"format": "runbook-format"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Topic:
    name: str
    title: str
    source: Traversable

    def text(self) -> str:
        return self.source.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Section:
    level: int
    heading: str
    start: int  # line index of the heading
    end: int  # line index after the section, its subsections included


def topics() -> list[Topic]:
    """Every shipped document, the format reference first, then by name."""
    directory = files("runbook").joinpath("docs")
    found = [_topic(entry) for entry in directory.iterdir() if entry.name.endswith(".md")]
    return sorted(found, key=lambda t: (t.name != "format", t.name))


def _topic(entry: Traversable) -> Topic:
    stem = entry.name.removesuffix(".md")
    name = next((short for short, full in ALIASES.items() if full == stem), stem)
    first = next((line for line in entry.read_text(encoding="utf-8").splitlines() if line.startswith("# ")), stem)
    return Topic(name=name, title=first.removeprefix("# ").strip(), source=entry)


def find_topic(name: str) -> Topic:
    known = topics()
    for topic in known:
        if name in (topic.name, topic.source.name.removesuffix(".md")):
            return topic
    raise UsageError(f"no documentation topic {name!r}; the topics are: {', '.join(t.name for t in known)}", hint="`runbook docs` lists them with their titles")


def sections(lines: list[str]) -> list[Section]:
    """The headings outside code blocks, each with the extent of its section."""
    found: list[tuple[int, int, str]] = []
    fence: str | None = None
    for index, line in enumerate(lines):
        opened = _FENCE.match(line)
        if opened:
            marker = opened.group(1)
            if fence is None:
                fence = marker
            elif marker.startswith(fence[0]) and len(marker) >= len(fence):
                fence = None
            continue
        heading = _HEADING.match(line) if fence is None else None
        if heading:
            found.append((index, len(heading.group(1)), heading.group(2)))
    result = []
    for position, (index, level, text) in enumerate(found):
        end = next((other for other, other_level, _ in found[position + 1 :] if other_level <= level), len(lines))
        result.append(Section(level=level, heading=text, start=index, end=end))
    return result


def matching_sections(topic: Topic, queries: tuple[str, ...]) -> str:
    """The sections whose heading holds one of ``queries`` (as words, any case), each once:
    a section inside another printed section comes with it."""
    lines = topic.text().splitlines()
    every = sections(lines)
    chosen: list[Section] = []
    for query in queries:
        pattern = re.compile(rf"(?<![\w.-]){re.escape(query.strip())}(?![\w-])", re.IGNORECASE)
        hits = [s for s in every if s.level > 1 and pattern.search(s.heading.replace("`", ""))]
        if not hits:
            headings = "\n".join(f"  {'  ' * (s.level - 2)}{s.heading}" for s in every if s.level > 1)
            raise UsageError(f"no section of {topic.name!r} has {query!r} in its heading; its sections:\n{headings}")
        chosen.extend(s for s in hits if s not in chosen)
    outermost = [s for s in chosen if not any(o is not s and o.start <= s.start and s.end <= o.end for o in chosen)]
    return "\n\n".join("\n".join(lines[s.start : s.end]).rstrip() for s in sorted(outermost, key=lambda s: s.start)) + "\n"


def listing() -> Iterator[str]:
    known = topics()
    width = max(len(t.name) for t in known)
    for topic in known:
        yield f"{topic.name:<{width}}  {topic.title}"
