"""A shell block of a checklist as commands, each with the comments around it.

Not a shell parser: enough to cut a block where a person would (a command
continues over a trailing backslash, an open quote or a here-document), to
keep the comment above a command as its title, an ``# Expected: ...`` comment
below it as its expectation, and to notice an ``# Or ...`` alternative.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from runbook.importer.markdown import Fence, Lines

_EXPECTED = re.compile(r"^(?:expected(?:\s+output)?|expect|should\s+(?:show|print|return|output|be))\s*[:\-]?\s*", re.I)
_ALTERNATIVE = re.compile(r"^(?:or|alternatively|otherwise)\b[\s,:]*", re.I)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_PROMPT = re.compile(r"^(?:\$|#\s*\$|[\w.@-]+\$|>)\s+")


@dataclass
class Command:
    text: str
    lines: Lines
    comments: list[str] = field(default_factory=list)  # the comment lines right above it
    expected: list[str] = field(default_factory=list)  # ``# Expected: ...`` right below it
    alternative: str | None = None  # the ``# Or via CI/CD`` it follows, if any

    @property
    def title(self) -> str | None:
        return self.comments[-1] if self.comments else None

    def words(self) -> list[str]:
        try:
            return shlex.split(self.text, comments=True)
        except ValueError:
            return self.text.split()


@dataclass
class ShellBlock:
    commands: list[Command]
    trailing: list[tuple[int, str]]  # comments after the last command: (line, text)
    output: list[tuple[int, str]]  # lines of a console transcript that are output, not commands


def split(fence: Fence) -> ShellBlock:
    raw = fence.content.split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    console = fence.lang == "console" or any(_PROMPT.match(line) for line in raw)
    commands: list[Command] = []
    pending: list[tuple[int, str]] = []
    output: list[tuple[int, str]] = []
    alternative: str | None = None
    i = 0
    while i < len(raw):
        number = fence.first_content_line + i
        line = raw[i]
        stripped = line.strip()
        if console:
            prompt = _PROMPT.match(stripped)
            if prompt is None and not stripped.startswith("#"):
                if stripped:
                    output.append((number, line))
                i += 1
                continue
            if prompt is not None:
                line = stripped[prompt.end() :]
                stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if commands and not pending and _EXPECTED.match(comment):
                commands[-1].expected.append(_EXPECTED.sub("", comment))
                commands[-1].lines = commands[-1].lines.span(Lines(number, number))
            elif comment:
                if commands and _ALTERNATIVE.match(comment):
                    alternative = comment
                pending.append((number, comment))
            i += 1
            continue
        end = _command_end(raw, i)
        text = "\n".join(raw[i : end + 1]) if not console else "\n".join([line, *raw[i + 1 : end + 1]])
        first = pending[0][0] if pending else number
        commands.append(Command(text.strip("\n"), Lines(first, fence.first_content_line + end), [c for _, c in pending], alternative=alternative))
        pending = []
        i = end + 1
    return ShellBlock(commands, pending, output)


def _command_end(lines: list[str], start: int) -> int:
    """The last line of the command starting at ``lines[start]``."""
    quote: str | None = None
    heredoc: str | None = None
    i = start
    while i < len(lines):
        line = lines[i]
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
                if quote is None:
                    return i
            i += 1
            continue
        quote, continued = _scan(line, quote)
        found = _HEREDOC.search(line) if quote is None else None
        if found:
            heredoc = found[2]
        elif quote is None and not continued:
            return i
        i += 1
    return len(lines) - 1


def _scan(line: str, quote: str | None) -> tuple[str | None, bool]:
    """The quote still open at the end of ``line``, and whether it ends in a continuation backslash."""
    i = 0
    while i < len(line):
        char = line[i]
        if quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            if i == len(line) - 1:
                return quote, True
            i += 1
        elif quote == '"':
            if char == '"':
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t;|&"):
            break
        i += 1
    return quote, False


def segments(text: str) -> list[list[str]]:
    """The simple commands of a command line (split at ``|``, ``&&``, ``||``, ``;``), as words."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:
        tokens = text.split()
    found: list[list[str]] = [[]]
    for token in tokens:
        if token and set(token) <= set(";&|"):
            found.append([])
        else:
            found[-1].append(token)
    return [words for words in found if words]
