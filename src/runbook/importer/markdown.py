"""A checklist's Markdown as a tree of sections and blocks, every one with its source lines.

markdown-it-py (CommonMark plus tables) does the parsing; this module only
reshapes its token stream into what the importer walks: sections by heading,
and in each the paragraphs, fenced blocks, lists (items with their checkbox
and nested blocks), tables and the rest. Line numbers are 1-based and
inclusive, as an editor shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

from markdown_it import MarkdownIt
from markdown_it.token import Token


@dataclass(frozen=True)
class Lines:
    """Source lines ``first``..``last``, 1-based, both included."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def span(self, other: Lines) -> Lines:
        return Lines(min(self.first, other.first), max(self.last, other.last))


@dataclass
class Paragraph:
    lines: Lines
    text: str  # the Markdown source of the paragraph, one line per source line


@dataclass
class Fence:
    lines: Lines
    lang: str
    content: str
    fenced: bool = True  # False: an indented code block (or a table cell), no fence lines around it

    @property
    def first_content_line(self) -> int:
        return self.lines.first + 1 if self.fenced else self.lines.first

    def fence_lines(self) -> list[Lines]:
        """The opening and closing fence lines."""
        return [Lines(self.lines.first, self.lines.first), Lines(self.lines.last, self.lines.last)] if self.fenced else []


@dataclass
class Item:
    lines: Lines
    text: str  # the first paragraph, without the list marker and the checkbox
    text_lines: Lines
    checkbox: bool | None  # None: no checkbox; else whether it is ticked
    number: int | None  # of an ordered list's item
    blocks: list[Block] = field(default_factory=list)  # what follows the first paragraph


@dataclass
class ListBlock:
    lines: Lines
    ordered: bool
    items: list[Item]


@dataclass
class Row:
    lines: Lines
    cells: list[str]


@dataclass
class Table:
    lines: Lines
    header: list[str]
    rows: list[Row]


@dataclass
class Other:
    """A rule, an HTML block, a block quote or an indented code block."""

    lines: Lines
    kind: str
    text: str


Block = Union[Paragraph, Fence, ListBlock, Table, Other]


def is_layout(block: Block) -> bool:
    """A rule or an HTML block (a comment to the checklist's authors): nothing of the procedure."""
    return isinstance(block, Other) and block.kind in ("rule", "html")


@dataclass
class Section:
    title: str
    level: int  # 0 for the text before the first heading
    heading: Lines | None
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def walk(self) -> list[Section]:
        """This section and every section below it, in document order."""
        found = [self]
        for child in self.children:
            found += child.walk()
        return found


@dataclass
class Document:
    lines: list[str]
    root: Section
    front_matter: str | None = None
    front_matter_lines: Lines | None = None


_CHECKBOX = re.compile(r"^\[([ xX])\][ \t]+")
_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$")


def parse(text: str) -> Document:
    lines = text.split("\n")
    front, front_lines, body = _front_matter(lines)
    parser = MarkdownIt("commonmark").enable("table")
    tokens = parser.parse("\n".join(body))
    root = Section("", 0, None)
    stack = [root]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            level = int(token.tag[1:])
            title = tokens[i + 1].content.strip()
            section = Section(title, level, _lines(token))
            while stack[-1].level >= level:
                stack.pop()
            stack[-1].children.append(section)
            stack.append(section)
            i += 3
            continue
        block, i = _block(tokens, i)
        if block is not None:
            stack[-1].blocks.append(block)
    if lines and lines[-1] == "":
        lines = lines[:-1]  # the newline that ends the last line starts no line of its own
    return Document(lines, root, front, front_lines)


def _front_matter(lines: list[str]) -> tuple[str | None, Lines | None, list[str]]:
    """YAML front matter between a first line ``---`` and the next ``---``; its lines are
    blanked in the body so that every later line keeps its number."""
    if not lines or lines[0].strip() != "---":
        return None, None, lines
    for end in range(1, len(lines)):
        if _FRONT_MATTER_END.match(lines[end]):
            body = [""] * (end + 1) + lines[end + 1 :]
            return "\n".join(lines[1:end]), Lines(1, end + 1), body
    return None, None, lines


def _lines(token: Token) -> Lines:
    start, end = token.map or (0, 1)
    return Lines(start + 1, max(start + 1, end))


def _block(tokens: list[Token], i: int) -> tuple[Block | None, int]:
    """The block starting at ``tokens[i]`` and the index after it."""
    token = tokens[i]
    kind = token.type
    if kind == "paragraph_open":
        return Paragraph(_lines(token), tokens[i + 1].content), i + 3
    if kind == "heading_open":  # inside a list item or a quote: a line of text like any other
        return Paragraph(_lines(token), tokens[i + 1].content), i + 3
    if kind == "fence":
        return Fence(_lines(token), token.info.strip().split(" ")[0].lower() if token.info else "", token.content), i + 1
    if kind == "code_block":
        return Other(_lines(token), "code", token.content), i + 1
    if kind == "hr":
        return Other(_lines(token), "rule", token.markup), i + 1
    if kind == "html_block":
        return Other(_lines(token), "html", token.content), i + 1
    if kind in ("bullet_list_open", "ordered_list_open"):
        return _list(tokens, i)
    if kind == "table_open":
        return _table(tokens, i)
    if kind == "blockquote_open":
        end = _closing(tokens, i)
        inner = [t.content for t in tokens[i:end] if t.type == "inline"]
        return Other(_lines(token), "quote", "\n".join(inner)), end + 1
    return None, i + 1


def _closing(tokens: list[Token], i: int) -> int:
    """Index of the token that closes ``tokens[i]``."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _list(tokens: list[Token], i: int) -> tuple[ListBlock, int]:
    opening = tokens[i]
    end = _closing(tokens, i)
    items: list[Item] = []
    j = i + 1
    while j < end:
        if tokens[j].type != "list_item_open":
            j += 1
            continue
        item_end = _closing(tokens, j)
        items.append(_item(tokens, j, item_end, opening.type == "ordered_list_open"))
        j = item_end + 1
    return ListBlock(_lines(opening), opening.type == "ordered_list_open", items), end + 1


def _item(tokens: list[Token], start: int, end: int, ordered: bool) -> Item:
    opening = tokens[start]
    blocks: list[Block] = []
    j = start + 1
    while j < end:
        block, j = _block(tokens, j)
        if block is not None:
            blocks.append(block)
    text, text_lines = "", _lines(opening)
    if blocks and isinstance(blocks[0], Paragraph):
        first = blocks.pop(0)
        assert isinstance(first, Paragraph)
        text, text_lines = first.text, first.lines
    checkbox: bool | None = None
    ticked = _CHECKBOX.match(text)
    if ticked:
        checkbox, text = ticked[1] != " ", text[ticked.end() :]
    number = int(opening.info) if ordered and opening.info.isdigit() else None
    return Item(_lines(opening), text, text_lines, checkbox, number, blocks)


def _table(tokens: list[Token], i: int) -> tuple[Table, int]:
    end = _closing(tokens, i)
    header: list[str] = []
    rows: list[Row] = []
    j = i
    while j < end:
        token = tokens[j]
        if token.type == "tr_open":
            row_end = _closing(tokens, j)
            cells = [t.content.strip() for t in tokens[j:row_end] if t.type == "inline"]
            if not header and tokens[j - 1].type == "thead_open":
                header = cells
            else:
                rows.append(Row(_lines(token), cells))
            j = row_end
        j += 1
    return Table(_lines(tokens[i]), header, rows), end + 1
