"""Safe YAML loading that remembers where every value came from.

The document is composed into nodes (never constructed by PyYAML, so no tag
can instantiate an object) and then turned into plain dicts, lists and
scalars by :func:`load_yaml`, which records the line and column of every key
path. Hostile files fail fast: size, nesting depth, the number of nodes
visited and the characters of scalars visited (which bound alias expansion:
the "billion laughs" and one big string aliased thousands of times) are limited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is shipped by the PyYAML wheels
    from yaml import SafeLoader as _Loader

from runbook.errors import Diagnostic, InvalidRunbook

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000
# Values reached a second time through an alias; real runbooks reuse a few small blocks.
MAX_ALIAS_VALUES = 10_000
# Characters of all scalars once aliases are expanded: one big anchored string
# referenced thousands of times is small on disk and gigabytes once dumped.
MAX_EXPANDED_CHARS = 4 * MAX_FILE_BYTES

KeyPath = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
# Escapes in double-quoted strings ("\e[2J", "\r") would reach the operator's terminal as
# control sequences: a plan could hide or overwrite what a step really runs.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


@dataclass
class SourceMap:
    """Line and column (1-based) of each key path in one file."""

    file: str
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[int, int]:
        """Position of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def diagnostic(self, path: KeyPath, message: str, severity: str = "error") -> Diagnostic:
        line, col = self.locate(path)
        return Diagnostic(self.file, line, col, format_path(path), message, severity)


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class YamlDocument:
    data: Any
    source: SourceMap


def read_file(path: Path, display: str | None = None) -> str:
    """Read a runbook file as UTF-8 text, refusing oversized or non-text files."""
    name = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _single(name, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
        # At most one byte past the limit: a file that grows, or claims size 0 (/proc), is never read whole.
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise _single(name, f"cannot read file: {err.strerror or err}") from err
    if len(raw) > MAX_FILE_BYTES:
        raise _single(name, f"file is larger than {MAX_FILE_BYTES:,} bytes, the limit")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _single(name, "file is UTF-16 text (it starts with a UTF-16 byte order mark); save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InvalidRunbook(
            [Diagnostic(name, line, 1, "", "file is not valid UTF-8 text; save it as UTF-8")]
        ) from err


def load_yaml(text: str, file: str) -> YamlDocument:
    """Parse one YAML document into plain data plus its source map."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise _single(file, f"document is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = err.problem or err.context or "invalid YAML"
        raise InvalidRunbook([Diagnostic(file, line, col, "", f"YAML syntax error: {problem}")]) from err
    except yaml.reader.ReaderError as err:
        # A character YAML forbids (NUL, other control characters): located, on one line.
        before = text[: err.position]
        line, col = before.count("\n") + 1, err.position - (before.rfind("\n") + 1) + 1
        hint = "; is the file UTF-16? save it as UTF-8" if err.character in (0, "\0") else ""
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise InvalidRunbook([Diagnostic(file, line, col, "", f"character #x{code:04x} is not allowed in YAML{hint}")]) from err
    except yaml.YAMLError as err:
        raise _single(file, f"YAML error: {err}") from err
    source = SourceMap(file)
    if node is None:
        return YamlDocument({}, source)
    builder = _Builder(source)
    return YamlDocument(builder.build(node, (), 0), source)


class _Builder:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.visited = 0
        self.seen: set[int] = set()
        self.alias_values = 0
        self.chars = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            self._fail(node, path, f"document expands to more than {MAX_NODES:,} values (alias bomb?)")
        if id(node) in self.seen:
            self.alias_values += 1
            if self.alias_values > MAX_ALIAS_VALUES:
                self._fail(node, path, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (alias bomb?)")
        else:
            self.seen.add(id(node))
        if depth > MAX_DEPTH:
            self._fail(node, path, f"nesting is deeper than {MAX_DEPTH} levels")
        self.source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                self._fail(node, path, f"tag {node.tag!r} is not allowed")
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self._fail(node, path, f"tag {node.tag!r} is not allowed")
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            self._fail(node, path, f"tag {node.tag!r} is not allowed; only plain YAML values are")
        self.chars += len(node.value)
        if self.chars > MAX_EXPANDED_CHARS:
            self._fail(node, path, f"document expands to more than {MAX_EXPANDED_CHARS:,} characters (alias bomb?)")
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._fail(key_node, path, "merge keys (<<) are not supported")
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                self._fail(key_node, path, "mapping keys must be plain strings")
            self._plain_text(key_node, path)
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                self._fail(key_node, child, f"duplicate key {key!r}")
            self.source.positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _plain_text(self, node: yaml.Node, path: KeyPath) -> None:
        control = _CONTROL.search(node.value)
        if control:
            self._fail(node, path, f"control character U+{ord(control[0]):04X} is not allowed in a runbook; write plain text")

    def _scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        self._plain_text(node, path)
        # Dates stay text: runbooks template them into commands, never compute with them.
        if node.tag in (_STR, "tag:yaml.org,2002:timestamp"):
            return node.value
        return self.constructor.construct_object(node)

    def _fail(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        mark = node.start_mark
        raise InvalidRunbook(
            [Diagnostic(self.source.file, mark.line + 1, mark.column + 1, format_path(path), message)]
        )


def _single(file: str, message: str) -> InvalidRunbook:
    return InvalidRunbook([Diagnostic(file, 1, 1, "", message)])
