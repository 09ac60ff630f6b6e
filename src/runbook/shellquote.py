"""Templated values in shell command lines: quoted for where they land, or refused.

A ``run:`` string goes to ``/bin/sh -c`` (dash here, bash elsewhere). Every
``{{ }}`` value in it must reach the shell as literal text, never as code, so
it is quoted for the place it lands in. That needs to know how the shell reads
the text around it, and shells have many constructs whose extent is hard to
find (``$(( ))``, ``${x:-"..."}``, ``case`` patterns inside ``$( )``, backslash
line joins inside here-documents, backticks...). A scanner that misreads one of
them quotes a value for the wrong place, and the value runs.

So ``_ShellScanner`` fails closed. It follows only a small set of constructs it
is certain of, the same in dash and bash:

- words and operators (``; & | < > ( )``, redirections, ``\\`` escapes and
  line joins), comments, ``$NAME``, ``${NAME}`` and special parameters;
- ``'...'`` and ``"..."``;
- one level of ``$( ... )`` holding the above;
- here-documents ``<<WORD``, ``<<-WORD``, ``<<'WORD'``, ``<<"WORD"``, ``<<\\WORD``.

At the first construct outside that set it stops: every value after it is
refused (``ShellPlacementError``) with a message saying how to pass it safely
(``env:`` and a quoted ``"$NAME"``, or the argv form of ``run``). Jinja control
structures are followed too: each branch of an ``{% if %}`` must leave the
shell in the same state, and so must one pass of a ``{% for %}`` body.

``| unquoted`` splices a value in as shell code on purpose; it must still
leave the shell where the scanner expects it (no open quote, no comment, no
here-document ended).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError

from runbook.masking import brief

__all__ = ["Deferred", "ShellPlacementError", "Unquoted", "dash_drops_a_byte", "install", "quote_template", "refuse_corrupted_lines", "shell_quote", "shell_template_problem"]

HOW_INSTEAD = (
    "pass the value through the step's env: (env: {NAME: \"{{ ... }}\"}) and write \"$NAME\" in the script, "
    "or use the argv form of run (a list: run: [program, arg, \"{{ ... }}\"], no shell at all)"
)


class ShellPlacementError(SecurityError):
    """A value in a shell string lands where it cannot be quoted with certainty."""


class Unquoted(str):
    """A value the author chose (``| unquoted``) to splice into a shell string as shell code."""

    __slots__ = ()


class Deferred:
    """A reference to be rendered later, written back as its template text (a ``uses:``
    definition's reference to vars or steps): ``shell_quote`` leaves it as it is, and the
    value is quoted where it lands when the step is rendered for real."""

    __slots__ = ("_expression",)

    def __init__(self, expression: str) -> None:
        self._expression = expression

    def __str__(self) -> str:
        return "{{ " + self._expression + " }}"


# ---------------------------------------------------------------- the scanner

_WORD_END = frozenset(" \t\n;&|<>()")
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_SPECIAL_PARAMETERS = frozenset("@*#?$!-0123456789")
_BRACED_NAME = re.compile(r"\$\{(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")
_BRACED_PREFIX = re.compile(r"\$\{(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)?")
# <<WORD, <<-WORD, <<'WORD', <<"WORD", <<\WORD, the word plain (any quoting makes the body literal).
_HEREDOC = re.compile(r"<<(-?)[ \t]*(?:([A-Za-z0-9_.-]+)|'([A-Za-z0-9_.-]+)'|\"([A-Za-z0-9_.-]+)\"|\\([A-Za-z0-9_.-]+))")
_HEREDOC_PREFIX = re.compile(r"<<-?[ \t]*(?:[A-Za-z0-9_.-]*|'[A-Za-z0-9_.-]*|\"[A-Za-z0-9_.-]*|\\[A-Za-z0-9_.-]*)")
# Words that open constructs whose parentheses do not balance (case patterns, [[ =~ ]]).
_UNBALANCED_KEYWORDS = frozenset({"case", "[["})
# Characters a value may keep bare in a word: none of them starts an expansion, a
# pattern, a brace list (,), an assignment (=) or a tilde prefix, whatever surrounds it.
_BARE_SAFE = re.compile(r"[A-Za-z0-9_@%+:./-]+")
# Runs of characters that mean only themselves, by mode (the rest go one by one).
_PLAIN = {
    "word": re.compile(r"[^\s;&|()<>'\"`#\\$]+"),
    "double": re.compile(r"[^\"\\`$\n]+"),
    "heredoc": re.compile(r"[^\n\\`$]+"),
}
_NAME = re.compile(r"[A-Za-z0-9_]+")
_MORE = -1  # a construct continues past the text fed so far


@dataclass(frozen=True)
class _Heredoc:
    delimiter: str
    strip_tabs: bool  # <<-
    literal: bool  # the delimiter was quoted: no expansion in the body


@dataclass
class _Slot:
    """An interpolated value in a here-document line: whether it must be checked
    against the delimiter is known only at the end of the line."""

    delimiter: nodes.Const


class _ScannerState:
    """What the scanner knows at a point of a shell string, captured and restored
    around Jinja's branches and loops, and the primitives that read or stop it."""

    def __init__(self, mode: str = "word") -> None:
        self.mode = mode  # word | single | double | comment | heredoc
        self.frames: tuple[str, ...] = ()  # open $( ... ): the mode outside it
        self.parens = 0  # ( open inside the current $( ... )
        self.word = ""  # the current unquoted word, to spot keywords and ~
        self.word_start: bool | None = True  # a # here starts a comment (None: not known)
        self.parameter = ""  # "name" after $NAME (more name characters continue it), "one" after $1, $@...
        self.carry = ""  # text whose meaning depends on what follows
        self.pending: tuple[_Heredoc, ...] = ()  # here-documents whose body starts at the next line
        self.heredoc: _Heredoc | None = None
        self.line = ""  # the here-document line so far; \0 stands for a value
        self.line_no = 1
        self.poison: str | None = None  # why nothing after this point can be placed
        self.slots: list[_Slot] = []
        self.final = False

    # -- state, for Jinja's branches and loops

    def snapshot(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("slots", "final")}

    def restore(self, snapshot: dict[str, Any]) -> None:
        vars(self).update(snapshot)

    @staticmethod
    def join(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
        """One state standing for both ``a`` and ``b`` (the ends of two branches), or None if later
        text could be read differently after them. Only whether a word has started may differ:
        then a ``#`` is a comment after one and not after the other, so it becomes unknown."""
        if _key(a) != _key(b):
            return None
        return a if a["word_start"] == b["word_start"] else {**a, "word_start": None}

    def _stop(self, why: str) -> int:
        if self.mode == "heredoc":
            self._check_line_head()  # what stops the scan is ASCII: the line's head is known already
        self.poison = f"after {why} (line {self.line_no} of the string)"
        return _MORE

    def _check_line_head(self) -> None:
        """Refuse a here-document line that dash would corrupt, once its text up to the first
        value decides it (a line with values is checked again once rendered: ``refuse_corrupted_lines``)."""
        assert self.heredoc is not None
        head = self.line.split("\0", 1)[0]
        if dash_drops_a_byte(head, self.heredoc.delimiter, self.heredoc.strip_tabs):
            raise ShellPlacementError(
                f"line {self.line_no} of the string, in a here-document, starts with the first characters of its delimiter "
                f"{self.heredoc.delimiter} followed by a non-ASCII character: dash (the /bin/sh of Debian and Ubuntu) "
                "drops that character's first byte, so the command would read other text; start the line with other text, "
                "or pass a value through the step's env: and write \"$NAME\" on the line"
            )

    def _need(self, buffer: str, i: int, count: int) -> bool:
        """Whether fewer than ``count`` characters are left at ``i`` and more text may follow."""
        return not self.final and len(buffer) - i < count

    def _track_parameter(self, c: str) -> None:
        if self.parameter == "one" or (self.parameter == "name" and c not in _NAME_CHARS):
            self.parameter = ""

    def _end_heredoc_line(self) -> None:
        """A here-document line ended: check its values against the delimiter, or close it."""
        assert self.heredoc is not None
        heredoc, line = self.heredoc, self.line
        self._check_line_head()
        self.line_no += 1
        self.line, self.parameter = "", ""
        if "\0" in line:
            # A value has no line break, but with the text around it (or alone) it may spell
            # the delimiter: unless the line holds a character the delimiter lacks, check it.
            if not _cannot_be_delimiter(line, heredoc):
                for slot in self.slots:
                    slot.delimiter.value = heredoc.delimiter
            self.slots = []
        elif (line.lstrip("\t") if heredoc.strip_tabs else line) == heredoc.delimiter:
            self.heredoc = None
            if self.pending:
                self.heredoc, self.pending = self.pending[0], self.pending[1:]
            else:
                self.mode, self.word, self.word_start = "word", "", True

    def finish(self) -> None:
        """The end of the string: a here-document line still open has no line after it to end."""
        if self.mode == "heredoc" and self.poison is None:
            self._check_line_head()
        self.slots = []


class _ShellScanner(_ScannerState):
    """Follows a shell string far enough to know how the text at the current
    point is read, or stops (``poison``) at the first thing it is not sure of."""

    # -- feeding text

    def feed(self, text: str) -> None:
        if self.poison is not None:
            return
        buffer, self.carry = self.carry + text, ""
        i = 0
        while i < len(buffer) and self.poison is None:
            plain = _PLAIN[self.mode].match(buffer, i) if self.mode in _PLAIN else None
            if plain:
                i = self._plain(plain[0], plain.end())
                continue
            if self.mode == "heredoc":
                step = self._heredoc_char(buffer, i)
            elif self.mode == "single":
                step = self._single(buffer, i)
            elif self.mode == "comment":
                step = self._comment(buffer, i)
            elif self.mode == "double":
                step = self._double(buffer, i)
            else:
                step = self._word_char(buffer, i)
            if step == _MORE:
                self.carry = buffer[i:]
                return
            i = step

    def _plain(self, text: str, end: int) -> int:
        """A run of characters with no meaning but themselves, taken at once."""
        if self.parameter:
            self.parameter = "name" if self.parameter == "name" and _NAME.fullmatch(text) else ""
        if self.mode == "word":
            self.word, self.word_start = self.word + text, False
        elif self.mode == "heredoc":
            self.line += text
        return end

    def _word_char(self, buffer: str, i: int) -> int:
        c = buffer[i]
        self._track_parameter(c)
        if c in " \t;&|":
            return self._end_word(i + 1)
        if c == "\n":
            self._end_word(i)
            return self._newline(i + 1)
        if c == "(":
            if self._need(buffer, i, 2):
                return _MORE
            if buffer.startswith("((", i):
                return self._stop("`((` (arithmetic, or nested subshells)")
            self._end_word(i)
            self.parens += bool(self.frames)
            return i + 1
        if c == ")":
            self._end_word(i)
            if self.frames and self.parens:
                self.parens -= 1
            elif self.frames:
                self.mode, self.frames, self.parens = self.frames[-1], self.frames[:-1], 0
                self.word, self.word_start = "\0", False
            return i + 1
        if c in "<>":
            if self._need(buffer, i, 2):
                return _MORE
            if buffer.startswith(("<(", ">("), i):
                return self._stop(f"`{c}(` (process substitution)")
            if buffer.startswith("<<", i):
                return self._heredoc_operator(buffer, i)
            return self._end_word(i + 1)
        if c == "'":
            self.mode, self.word, self.word_start = "single", self.word + "'", False
            return i + 1
        if c == '"':
            self.mode, self.word, self.word_start = "double", self.word + '"', False
            return i + 1
        if c == "`":
            return self._stop("a backtick (write $(...) instead)")
        if c == "#" and self.word_start and self.frames:
            return self._stop("a comment inside $(...) (shells disagree on whether a ) in it ends the $(...))")
        if c == "#" and self.word_start:
            self.mode = "comment"
            return i + 1
        if c == "#" and self.word_start is None:
            return self._stop("`#` right after an `| unquoted` value (a comment or not)")
        if c == "\\":
            if self._need(buffer, i, 2):
                return _MORE
            if buffer.startswith("\\\n", i):
                self.line_no += 1  # a line join: the word (or the blank before it) goes on
            else:
                self.word, self.word_start = self.word + buffer[i : i + 2], False
            return i + 2
        if c == "$":
            return self._dollar(buffer, i, quoted=False)
        self.word, self.word_start = self.word + c, False
        return i + 1

    def _end_word(self, i: int) -> int:
        if self.frames and self.word in _UNBALANCED_KEYWORDS:
            return self._stop(f"`{self.word}` inside $(...) (its parentheses do not balance)")
        self.word, self.word_start = "", True
        return i

    def _newline(self, i: int) -> int:
        self.line_no += 1
        self.word, self.word_start = "", True
        if self.pending:
            if self.frames:
                return self._stop("a here-document inside $(...)")
            self.heredoc, self.pending = self.pending[0], self.pending[1:]
            self.mode, self.line = "heredoc", ""
        return i

    def _heredoc_operator(self, buffer: str, i: int) -> int:
        if self._need(buffer, i, 3):
            return _MORE
        if buffer.startswith("<<<", i):
            return self._stop("`<<<` (a here-string, which /bin/sh does not have)")
        if self.frames:
            return self._stop("a here-document inside $(...)")
        match = _HEREDOC.match(buffer, i)
        if match and match.end() < len(buffer) and buffer[match.end()] in _WORD_END:
            strip, *words = match.groups()
            literal = words[0] is None
            self.pending += (_Heredoc(next(w for w in words if w), bool(strip), literal),)
            return self._end_word(match.end())
        prefix = _HEREDOC_PREFIX.match(buffer, i)
        if not self.final and prefix and prefix.end() == len(buffer):
            return _MORE
        return self._stop("a here-document whose delimiter is not a plain word (write <<EOF or <<'EOF')")

    def _dollar(self, buffer: str, i: int, *, quoted: bool) -> int:
        if self._need(buffer, i, 2):
            return _MORE
        after = buffer[i + 1 : i + 2]
        if after == "(":
            if self._need(buffer, i, 3):
                return _MORE
            if buffer.startswith("$((", i):
                return self._stop("`$((` (arithmetic expansion)")
            if self.frames:
                return self._stop("$(...) inside another $(...)")
            self.frames += (self.mode,)
            self.mode, self.parens, self.word, self.word_start = "word", 0, "", True
            return i + 2
        if after == "{":
            self.word, self.word_start = self.word + "$", False
            return self._braced_name(buffer, i)
        if after == "[":
            return self._stop("`$[` (bash arithmetic)")
        if after in ("'", '"') and not quoted:
            return self._stop(f"`${after}` (quoting that /bin/sh and bash read differently)")
        self.word, self.word_start = self.word + "$", False
        if after in _SPECIAL_PARAMETERS:
            self.parameter = "one"
            return i + 2
        if after in _NAME_CHARS:
            self.parameter = "name"
        return i + 1

    def _braced_name(self, buffer: str, i: int) -> int:
        """``${NAME}`` at ``i``: the index after it."""
        match = _BRACED_NAME.match(buffer, i)
        if match:
            return match.end()
        prefix = _BRACED_PREFIX.match(buffer, i)
        if not self.final and prefix and prefix.end() == len(buffer):
            return _MORE
        return self._stop("`${` with more than a plain name (a parameter expansion with an operator)")

    def _single(self, buffer: str, i: int) -> int:
        end = buffer.find("'", i)
        stop = len(buffer) if end < 0 else end
        newlines = buffer.count("\n", i, stop)
        if newlines and self.pending:
            return self._stop("a line break inside quotes while a here-document waits for its body")
        self.line_no += newlines
        if end < 0:
            return len(buffer)
        self.mode = "word"
        return end + 1

    def _comment(self, buffer: str, i: int) -> int:
        end = buffer.find("\n", i)
        if end < 0:
            return len(buffer)
        self.mode = "word"
        return self._newline(end + 1)

    def _double(self, buffer: str, i: int) -> int:
        c = buffer[i]
        self._track_parameter(c)
        if c == '"':
            self.mode = "word"
            return i + 1
        if c == "\\":
            if self._need(buffer, i, 2):
                return _MORE
            self.line_no += buffer.startswith("\\\n", i)
            return i + 2
        if c == "`":
            return self._stop("a backtick (write $(...) instead)")
        if c == "$":
            return self._dollar(buffer, i, quoted=True)
        if c == "\n":
            if self.pending:
                return self._stop("a line break inside quotes while a here-document waits for its body")
            self.line_no += 1
        return i + 1

    def _heredoc_char(self, buffer: str, i: int) -> int:
        assert self.heredoc is not None
        c = buffer[i]
        self._track_parameter(c)
        if c == "\n":
            self._end_heredoc_line()
            return i + 1
        if not self.heredoc.literal:
            if c == "\\":
                if self._need(buffer, i, 2):
                    return _MORE
                if buffer.startswith("\\\n", i):
                    return self._stop("a here-document line ending in a backslash (it joins the next line, even the delimiter)")
                self.line += buffer[i : i + 2]
                return i + 2
            if c == "`":
                return self._stop("a backtick in a here-document")
            if c == "$":
                if self._need(buffer, i, 2):
                    return _MORE
                after = buffer[i + 1 : i + 2]
                if after == "{":
                    end = self._braced_name(buffer, i)
                    self.line += buffer[i:end] if end != _MORE else ""
                    return end
                if after in ("(", "["):
                    return self._stop(f"`${after}` in a here-document")
                if after in _SPECIAL_PARAMETERS:
                    self.parameter, self.line = "one", self.line + buffer[i : i + 2]
                    return i + 2
                self.parameter = "name" if after in _NAME_CHARS else ""
        self.line += c
        return i + 1

    # -- values

    def value_here(self, unquoted: bool, delimiter: nodes.Const) -> str:
        """Where a value output here lands (a ``shell_quote`` place); ``delimiter`` will
        hold the here-document delimiter it must not spell. Refuses places it is not certain of."""
        if self.poison is None and self.carry:
            self._settle_carry()
        if self.poison is not None:
            raise _refusal(self.poison)
        if self.parameter:
            raise _refusal("right after a $NAME parameter (write ${NAME} to end the name)")
        if self.mode == "heredoc":
            assert self.heredoc is not None
            self.line += "\0"
            self.slots.append(_Slot(delimiter))
            return "heredoc-literal" if self.heredoc.literal else "heredoc"
        if self.mode == "word":
            where = "word-quoted" if self.word.endswith("~") else "word"
            self.word += "\0"
            self.word_start = None if unquoted else False
            return where
        return self.mode

    def _settle_carry(self) -> None:
        """A value follows text whose meaning depended on what comes next."""
        carry = self.carry  # escaped pairs are consumed as they come: a backslash here is alone
        if carry.endswith("\\"):
            raise _refusal("right after a backslash")
        if carry.startswith("$") and carry != "$(":
            raise _refusal("right after a $")
        if carry.startswith("<<"):
            raise _refusal("in a here-document delimiter")
        self.carry, self.final = "", True
        try:
            self.feed(carry)
        finally:
            self.final = False


def _key(state: dict[str, Any]) -> tuple[Any, ...]:
    """What decides how later text is read (line numbers, the exact words do not)."""
    word = state["word"]
    word = word if state["frames"] or word.endswith("~") else ""
    line, heredoc = state["line"], state["heredoc"]
    if heredoc is not None and _cannot_be_delimiter(line, heredoc):
        line = "\x01"
    return (state["mode"], state["frames"], state["parens"], word, state["parameter"], state["carry"], state["pending"], heredoc, line, state["poison"])


def dash_drops_a_byte(line: str, delimiter: str, strip_tabs: bool) -> bool:
    """Whether dash 0.5.12 corrupts here-document line ``line``: while it compares a line with the
    delimiter, the first byte that differs is lost when it is the lead byte of a non-ASCII character
    and at least one byte matched ("E\u00e9" under <<EOF reads as E and a stray byte). bash reads it
    as written; runbook cannot tell which sh runs a command (a remote host's too), so it refuses."""
    text = (line.lstrip("\t") if strip_tabs else line).encode()
    expected = delimiter.encode()
    matched = 0
    while matched < min(len(text), len(expected)) and text[matched] == expected[matched]:
        matched += 1
    return matched > 0 and matched < len(text) and text[matched] >= 0x80


def refuse_corrupted_lines(script: str) -> None:
    """Raise ``ShellPlacementError`` if a here-document line of ``script``, a rendered shell
    string, would reach the command corrupted (see ``dash_drops_a_byte``)."""
    if "<<" not in script or script.isascii():
        return
    scanner = _ShellScanner()
    scanner.final = True
    scanner.feed(script)
    scanner.finish()


def _cannot_be_delimiter(line: str, heredoc: _Heredoc) -> bool:
    """Whether ``line`` holds a character that no line equal to the delimiter has."""
    static = line.replace("\0", "")
    if heredoc.strip_tabs:
        static = static.replace("\t", "")
    return any(c not in heredoc.delimiter for c in static)


def _refusal(where: str) -> ShellPlacementError:
    return ShellPlacementError(f"a {{{{ }}}} value {where} cannot be quoted with certainty in a shell string; {HOW_INSTEAD}")


# ---------------------------------------------------------------- quoting


def shell_quote(value: Any, where: str = "word", delimiter: str = "", declared_unquoted: bool = False) -> Any:
    """``value`` as literal text for the shell at a place of kind ``where``
    (see ``_ShellScanner.value_here``); ``delimiter``: the here-document's, when
    the value could spell it."""
    if isinstance(value, Deferred):
        return value
    if isinstance(value, Unquoted):
        return _checked_unquoted(value, where, delimiter, declared_unquoted)
    text = str(value)
    if "\0" in text:
        raise ShellPlacementError(f"value {_short(value)} holds a NUL character, which no command line can")
    if where == "single":
        return text.replace("'", "'\\''")
    if where == "double":
        return re.sub(r'([\\"$`])', r"\\\1", text)
    if where in ("word", "word-quoted"):
        # shlex.quote's spelling (masking knows it), also for the characters it leaves bare.
        bare = where == "word" and _BARE_SAFE.fullmatch(text)
        return text if bare else "'" + text.replace("'", "'\"'\"'") + "'"
    # A here-document or comment ends at a line break (or at its delimiter line).
    if "\n" in text or "\r" in text:
        kind = "comment" if where == "comment" else "here-document"
        raise ShellPlacementError(f"value {_short(value)} cannot be placed in a shell {kind} safely; {HOW_INSTEAD}")
    quoted = re.sub(r"([\\$`])", r"\\\1", text) if where == "heredoc" else text
    if delimiter and quoted.lstrip("\t") in delimiter:
        raise ShellPlacementError(f"value {_short(value)} cannot be placed in a shell here-document safely: it could end it; {HOW_INSTEAD}")
    return quoted


def _checked_unquoted(value: Unquoted, where: str, delimiter: str, declared: bool) -> Unquoted:
    """Shell code the author spliced on purpose must leave the shell where the scanner expects it."""
    if not declared:
        raise ShellPlacementError("an `| unquoted` value must be written as {{ x | unquoted }} in the shell string itself")
    if where in ("heredoc", "heredoc-literal", "comment"):
        shell_quote(str(value), where, delimiter)
        if where == "heredoc" and value.endswith("\\"):
            raise ShellPlacementError(f"`| unquoted` value {_short(value)} ends in a backslash, which would join the next line")
        return value
    mode = "word" if where.startswith("word") else where
    scanner = _ShellScanner(mode)
    scanner.word_start, scanner.final = False, True
    scanner.feed(value)
    if scanner.poison or scanner.mode != mode or scanner.frames or scanner.pending or scanner.parameter or scanner.carry:
        raise ShellPlacementError(
            f"`| unquoted` value {_short(value)} does not leave the shell where it was "
            f"(an open quote, $(, here-document, comment or unknown construct): {scanner.poison or 'unbalanced'}"
        )
    return value


def _unquoted(value: Any) -> Any:
    if isinstance(value, Deferred):
        return Deferred(value._expression + " | unquoted")
    return Unquoted(str(value))


def _short(value: Any) -> str:
    # A secret (a SecretText: ``value``, not its ``str``) is not quoted, not even its first characters.
    return brief(value)


# ---------------------------------------------------------------- the template hook


class _ShellQuoting:
    """Wraps every ``{{ }}`` output of a shell string in ``shell_quote`` for the place it lands in."""

    def __init__(self) -> None:
        self.scanner = _ShellScanner()
        self.placed: set[int] = set()  # the shell_quote filters already put in

    def apply(self, tree: nodes.Template) -> nodes.Template:
        self._body(tree.body)
        self.scanner.finish()
        return tree

    def _body(self, body: list[nodes.Node]) -> None:
        for node in body:
            self._visit(node)

    def _visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Output):
            self._output(node)
        elif isinstance(node, nodes.If):
            self._branches(node)
        elif isinstance(node, nodes.For):
            if node.recursive:
                raise ShellPlacementError("a shell string cannot use a recursive {% for %}; " + HOW_INSTEAD)
            start = self.scanner.snapshot()
            self._loop(node.body, "a {% for %} body")
            after_loop = self.scanner.snapshot()
            self.scanner.restore(start)
            self._body(node.else_)
            merged = _ShellScanner.join(after_loop, self.scanner.snapshot())
            if merged is None:
                raise ShellPlacementError("the {% else %} of a {% for %} leaves the shell in another state than its body; " + HOW_INSTEAD)
            self.scanner.restore(merged)
        elif isinstance(node, (nodes.With, nodes.Scope, nodes.ScopedEvalContextModifier)):
            self._body(node.body)
        elif isinstance(node, (nodes.Assign, nodes.AssignBlock)):
            return  # a value, quoted where it is output
        elif isinstance(node, (nodes.Macro, nodes.CallBlock, nodes.FilterBlock)):
            raise ShellPlacementError("a shell string cannot use {% macro %}, {% call %} or {% filter %}; " + HOW_INSTEAD)
        else:
            raise ShellPlacementError(f"a shell string cannot use {{% {type(node).__name__.lower()} %}}; " + HOW_INSTEAD)

    def _output(self, node: nodes.Output) -> None:
        for i, child in enumerate(node.nodes):
            if isinstance(child, nodes.TemplateData):
                self.scanner.feed(child.data)
            elif id(child) in self.placed:
                # A loop body's second pass: the value must land where it did on the first.
                assert isinstance(child, nodes.Filter)
                where_const, delimiter, unquoted = child.args
                assert isinstance(where_const, nodes.Const) and isinstance(delimiter, nodes.Const) and isinstance(unquoted, nodes.Const)
                if self.scanner.value_here(unquoted.value, delimiter) != where_const.value:
                    raise _refusal("in a {% for %} body lands in a different place on the next pass")
            else:
                flag = nodes.Const(isinstance(child, nodes.Filter) and child.name == "unquoted")
                delimiter = nodes.Const("")
                where = self.scanner.value_here(flag.value, delimiter)
                quoted = nodes.Filter(child, "shell_quote", [nodes.Const(where), delimiter, flag], [], None, None, lineno=child.lineno)
                self.placed.add(id(quoted))
                node.nodes[i] = quoted

    def _branches(self, node: nodes.If) -> None:
        start = self.scanner.snapshot()
        merged: dict[str, Any] | None = None
        for body in [node.body, *(elif_.body for elif_ in node.elif_), node.else_]:
            self.scanner.restore(start)
            self._body(body)
            end = self.scanner.snapshot()
            merged = end if merged is None else _ShellScanner.join(merged, end)
            if merged is None:
                raise ShellPlacementError(
                    f"the branches of an {{% if %}} (line {start['line_no']} of the string) leave the shell in different states "
                    "(an open quote, a here-document...), so values after it cannot be quoted with certainty; " + HOW_INSTEAD
                )
        assert merged is not None
        self.scanner.restore(merged)

    def _loop(self, body: list[nodes.Node], what: str) -> None:
        """Zero, one or more passes of ``body`` must leave the shell in one state: scan it
        twice, from the state before it joined with the state after one pass."""
        if not body:
            return
        start = self.scanner.snapshot()
        self._body(body)
        joined = _ShellScanner.join(start, self.scanner.snapshot())
        if joined is not None:
            self.scanner.restore(joined)
            self._body(body)
            again = _ShellScanner.join(joined, self.scanner.snapshot())
            joined = joined if again is not None and _key(again) == _key(joined) and again["word_start"] == joined["word_start"] else None
        if joined is None:
            raise ShellPlacementError(
                f"{what} (line {start['line_no']} of the string) does not leave the shell as it found it, "
                "so values in or after it cannot be quoted with certainty; " + HOW_INSTEAD
            )
        self.scanner.restore(joined)


def quote_template(tree: nodes.Template) -> nodes.Template:
    """``tree`` with every value quoted for its place; raises ``ShellPlacementError``."""
    return _ShellQuoting().apply(tree)


def install(env: Any, passthrough: tuple[type, ...] = ()) -> None:
    """Register the ``shell_quote`` and ``unquoted`` filters; values of the
    ``passthrough`` types (plan placeholders) are left as they are."""

    def quote(value: Any, *args: Any) -> Any:
        return value if isinstance(value, passthrough) else shell_quote(value, *args)

    env.filters["shell_quote"] = quote
    env.filters["unquoted"] = _unquoted


def shell_template_problem(source: str, quote: Callable[[str], object]) -> str | None:
    """Why ``source``, a shell string, places a value where it cannot be quoted; None if it does not.
    ``quote`` parses and quotes (``templating.shell_quoted``, which keeps the result for rendering),
    or checks plain text (``refuse_corrupted_lines``)."""
    try:
        quote(source)
    except ShellPlacementError as err:
        return str(err)
    except (TemplateError, RecursionError):
        return None  # not a template at all: reported as such where templates are checked
    return None
