"""YAML written as text, with comments where a reviewer needs them, and every scalar safe.

A scalar is written plain only when it is a simple word that YAML cannot read
as anything but that string; multi-line text becomes a literal block when that
round-trips exactly, and everything else is double-quoted with escapes. Text
from the checklist that Jinja would read as a template (``{{``, ``{%``,
``{#``) is escaped: where runbook renders the value, each opener is wrapped in
``{% raw %}...{% endraw %}`` so it renders back to itself; where runbook shows
the value unrendered (descriptions, hints, ``use_when``), a space is put after
the brace. ``Template`` marks the templates the importer writes on purpose.
"""

from __future__ import annotations

import re
from typing import Any


class Template(str):
    """A template the importer wrote itself (``{{ env.PATH }}``): written as it is."""


class Comment:
    """A comment: a dict key or a list item that is written as ``# text`` lines."""

    def __init__(self, text: str) -> None:
        self.text = text


class Flow(list):
    """A short list of words written on one line: ``[migrate, backfill]``."""


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NOT_PLAIN = frozenset("y n yes no on off true false null".split())
# What YAML accepts unescaped in a double-quoted scalar; C0/C1 controls and line separators are escaped.
_UNSAFE = re.compile("[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\\0", "\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P"}
_TEMPLATE_OPENER = re.compile(r"\{[{%#]")
_SOFT_OPENER = re.compile(r"\{(?=[{%#])")


def escape_rendered(text: str) -> str:
    """Text that renders back to ``text`` (each Jinja opener inside ``{% raw %}``)."""
    return _TEMPLATE_OPENER.sub(lambda m: "{% raw %}" + m[0] + "{% endraw %}", text)


def escape_shown(text: str) -> str:
    """Text runbook shows unrendered, but would still check as a template: ``{{`` -> ``{ {``."""
    return _SOFT_OPENER.sub("{ ", text)


def quoted(text: str) -> str:
    out = ['"']
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _UNSAFE.match(char):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def scalar(value: Any) -> str:
    """One line: a plain word, a number, or a double-quoted string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _NOT_PLAIN:
        return text
    return quoted(text)


def _literal_lines(text: str) -> list[str] | None:
    """``text`` as the lines of a literal block, or None when a block would not read back as ``text``."""
    if "\n" not in text or _UNSAFE.search(text.replace("\n", "").replace("\t", "")):
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines) or any(line != line.rstrip(" \t") for line in lines):
        return None
    if lines[0].startswith(("\t",)):
        return None
    return lines


def _block(text: str, indent: int) -> list[str] | None:
    lines = _literal_lines(text)
    if lines is None:
        return None
    trailing = len(text) - len(text.rstrip("\n"))
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    first = next(line for line in lines if line)
    indicator = "2" if first.startswith(" ") else ""
    pad = " " * (indent + 2)
    body = [pad + line if line else "" for line in lines]
    if chomp == "+":
        body += [""] * (trailing - 1)
    return [f"|{indicator}{chomp}", *body]


def dump(data: dict[str, Any], header: list[str] | None = None) -> str:
    out: list[str] = []
    for line in header or []:
        out += _comment(line, 0)
    _mapping(data, 0, out, ())
    return "\n".join(out) + "\n"


def _comment(text: str, indent: int) -> list[str]:
    return [" " * indent + ("# " + line).rstrip() for line in (text.splitlines() or [""])]


def _escaped(value: Any, path: tuple[Any, ...]) -> Any:
    if not isinstance(value, str) or isinstance(value, Template):
        return value
    mode = _escape_mode(path)
    if mode == "rendered":
        return escape_rendered(value)
    if mode == "shown":
        return escape_shown(value)
    return value


def _escape_mode(path: tuple[Any, ...]) -> str | None:
    """How runbook reads the value at ``path``: rendered, shown as is (but checked for
    templates), or neither (metadata and the runbook's own name and description)."""
    top, last = path[0], path[-1]
    if top in ("name", "description", "metadata", "vars", "connections", "environments"):
        return None
    if "hints" in path or last in ("description", "use_when"):
        return "shown"
    if top == "success_criteria" and (len(path) == 2 or last == "description"):
        return "shown"
    if last == "title" and (path[-2] in ("rollback", "dry_run") or (top == "rollback" and len(path) == 3)):
        return "shown"
    return "rendered"


def _value(key_text: str, value: Any, indent: int, out: list[str], path: tuple[Any, ...]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            out.append(f"{pad}{key_text}: {{}}")
            return
        out.append(f"{pad}{key_text}:")
        _mapping(value, indent + 2, out, path)
    elif isinstance(value, list):
        if not value:
            out.append(f"{pad}{key_text}: []")
        elif isinstance(value, Flow):
            items = ", ".join(scalar(_escaped(v, (*path, i))) for i, v in enumerate(value))
            out.append(f"{pad}{key_text}: [{items}]")
        else:
            out.append(f"{pad}{key_text}:")
            _sequence(value, indent + 2, out, path)
    else:
        value = _escaped(value, path)
        block = _block(value, indent) if isinstance(value, str) else None
        if block is not None:
            out.append(f"{pad}{key_text}: {block[0]}")
            out += block[1:]
        else:
            out.append(f"{pad}{key_text}: {scalar(value)}")


def _mapping(data: dict[Any, Any], indent: int, out: list[str], path: tuple[Any, ...]) -> None:
    for key, value in data.items():
        if isinstance(key, Comment):
            out += _comment(key.text, indent)
            continue
        _value(scalar(key), value, indent, out, (*path, key))


def _sequence(items: list[Any], indent: int, out: list[str], path: tuple[Any, ...]) -> None:
    pad = " " * indent
    for i, item in enumerate(items):
        if isinstance(item, Comment):
            out += _comment(item.text, indent)
            continue
        if isinstance(item, dict) and item:
            keys = list(item)
            while keys and isinstance(keys[0], Comment):
                out += _comment(keys.pop(0).text, indent)
            if not keys:
                continue
            inner: list[str] = []
            _mapping({k: item[k] for k in keys}, indent + 2, inner, (*path, i))
            out.append(pad + "- " + inner[0][indent + 2 :])
            out += inner[1:]
        else:
            value = _escaped(item, (*path, i))
            block = _block(value, indent) if isinstance(value, str) else None
            if block is not None:
                out.append(f"{pad}- {block[0]}")
                out += block[1:]
            else:
                out.append(f"{pad}- {scalar(value)}")
