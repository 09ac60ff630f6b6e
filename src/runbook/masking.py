"""Secret masking: every string that leaves the process passes through a Masker.

Secrets are registered once (secret vars, passwords inside connection URLs,
values a template derived from a secret) and replaced by ``***`` wherever they
occur: terminal output, log files, the state store, events, reports and error
messages. Each secret is masked in every spelling an output may give it:
URL-quoted (drivers echo URLs back in their errors), shell-quoted as
templating writes it into a command line (``'it'\\''s'``, ``\\$x``), and
JSON-, HTML- and ``repr``-escaped (HTTP bodies, reports, dict dumps).

Masking is linear in the length of the text, whatever the text: it runs on
every output line, and a step's output is input an attacker may shape. So no
backtracking regular expression touches the text. Each secret's spellings
share a run of characters that no escaping changes (its *anchor*); one C-level
``in`` per anchor finds the few secrets present, and only their spellings are
replaced (``str.replace``, linear). URL passwords are found by scanning from
each ``://`` with searches that never go back over text already scanned.
"""

from __future__ import annotations

import html
import json
import re
import shlex
import string
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
# Shorter values would mask ordinary words ("a", "on") and make output unreadable.
MIN_SECRET_LENGTH = 3
# Characters that URL quoting, shell quoting, JSON, HTML and repr all leave as they are.
_UNESCAPED = frozenset(string.ascii_letters + string.digits + "_.-~")
_NOT_UNESCAPED = re.compile(r"[^A-Za-z0-9_.~-]+")
_SCHEME_CHARS = string.ascii_letters + string.digits + "+.-"
_USER_END = re.compile(r"[:/@\s]")
_PASSWORD_END = re.compile(r"[@\s]")
_BLOCK = 64 * 1024


# The characters httpx (after the WHATWG URL standard) leaves as they are in a query and a path.
_QUERY_SAFE = frozenset(chr(i) for i in range(0x21, 0x7F) if chr(i) not in "\"#<>")
_PATH_SAFE = _QUERY_SAFE - frozenset("?`{}")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_MYSQL_ESCAPES = {"\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z", "'": "\\'", '"': '\\"', "\\": "\\\\"}


def _whatwg_quote(secret: str, safe: frozenset[str]) -> str:
    """``secret`` percent-encoded as httpx encodes a URL part: ``%XX`` escapes already in it are kept."""
    pieces: list[str] = []
    done = 0
    for match in [*_PERCENT_ESCAPE.finditer(secret), None]:
        end = match.start() if match else len(secret)
        pieces.extend(ch if ch in safe else quote(ch, safe="") for ch in secret[done:end])
        if match:
            pieces.append(match.group())
            done = match.end()
    return "".join(pieces)


def _mysql_escaped(secret: str) -> str:
    """``secret`` as PyMySQL escapes it inside a quoted string literal."""
    return "".join(_MYSQL_ESCAPES.get(ch, ch) for ch in secret)


def spellings(secret: str) -> set[str]:
    """``secret`` as each kind of escaping we know of writes it."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        shlex.quote(secret),
        # How templating.shell_quote writes it inside '...' and "..." (and here-documents).
        secret.replace("'", "'\\''"),
        re.sub(r'([\\"$`])', r"\\\1", secret),
        re.sub(r"([\\$`])", r"\\\1", secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        html.escape(secret, quote=False),
        # markupsafe's spelling (Jinja's |e and autoescaping): &#39; and &#34;.
        secret.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;").replace('"', "&#34;"),
        repr(secret)[1:-1],
        # In an SQL string literal: doubled quotes (the standard, PostgreSQL, SQLite), and
        # backslash escapes as PyMySQL sends a bound value (MySQL and MariaDB echo the
        # statement, bound values included, in a syntax error: "near '...'").
        secret.replace("'", "''"),
        _mysql_escaped(secret),
        # Percent-encoded as httpx (the WHATWG URL standard) writes a URL's query and path:
        # a server echoing the URL it was asked for shows the secret so.
        _whatwg_quote(secret, _QUERY_SAFE),
        _whatwg_quote(secret, _PATH_SAFE),
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _anchor(form: str) -> str:
    """The longest run of ``form`` that no escaping changes (``form`` itself if none is long enough)."""
    longest = max(_NOT_UNESCAPED.split(form), key=len)
    return longest if len(longest) >= MIN_SECRET_LENGTH else form


class Masker:
    """Replaces registered secrets, and any password inside a URL, by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        # anchor -> the spellings that contain it, longest first.
        self._by_anchor: dict[str, list[str]] = {}
        self._multiline = False
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH or secret in self._secrets:
            return
        # Escaping maps character by character and leaves the anchor's characters
        # alone, so the secret's anchor is in (nearly) all its spellings: one scan
        # tells whether any of them can be present.
        anchor = _anchor(secret)
        for form in spellings(secret) - self._secrets:
            self._secrets.add(form)
            self._multiline |= "\n" in form
            forms = self._by_anchor.setdefault(anchor if anchor in form else _anchor(form), [])
            forms.append(form)
            forms.sort(key=len, reverse=True)
        # A secret URL's password is a secret of its own: tools print it alone, decoded or not.
        password = url_password(secret)
        if password:
            self.add(password)
            self.add(unquote(password))

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __call__(self, text: str) -> str:
        return self.mask(text)

    def mask(self, text: str) -> str:
        if len(text) <= _BLOCK or self._multiline:
            return self._mask_block(text) if text else text
        # A big text in blocks of whole lines: only the blocks holding a secret's
        # anchor pay for replacing its spellings. Neither a secret (none has a line
        # break) nor a URL password (no blank) can span two blocks.
        pieces: list[str] = []
        start = 0
        while start < len(text):
            end = text.find("\n", start + _BLOCK)
            end = len(text) if end < 0 else end + 1
            pieces.append(self._mask_block(text[start:end]))
            start = end
        return "".join(pieces)

    def _mask_block(self, text: str) -> str:
        present = [form for anchor, forms in self._by_anchor.items() if anchor in text for form in forms]
        # Longest first: a secret that contains another is masked whole.
        for form in sorted(present, key=len, reverse=True):
            text = text.replace(form, MASK)
        return mask_url_passwords(text)

    def mask_data(self, value: object) -> object:
        """Mask every string inside nested dicts, lists and tuples, dict keys included."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask_data(k): self.mask_data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_data(v) for v in value]
        return value


class SecretText(str):
    """The value of a secret inside templates, or a value a template derived from one.

    Templating hands whatever a template derives from it (``| upper``,
    ``[::-1]``, ``.split()``, ``~``) to these maskers before the value can go
    anywhere, and derives a ``SecretText`` again, so transforms of transforms
    are masked too (see ``templating._derive``)."""

    maskers: tuple[Masker, ...]
    # Computed by a template from a secret (a piece or a transform), not a secret var's own value.
    derived: bool

    def __new__(cls, value: str, maskers: tuple[Masker, ...]) -> SecretText:
        text = super().__new__(cls, value)
        text.maskers = maskers
        text.derived = False
        return text

    # Immutable, and the maskers must stay the same objects: copies are the value itself.
    def __copy__(self) -> SecretText:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SecretText:
        return self

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, (str(self),))  # pickled, it is plain text


def holds_secret(value: object) -> bool:
    """Whether ``value`` is, or holds (in a list, tuple, set or mapping), a secret's value."""
    if isinstance(value, SecretText):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(holds_secret(item) for item in value)
    if isinstance(value, dict):
        return any(holds_secret(key) or holds_secret(item) for key, item in value.items())
    return False


def brief(value: object, limit: int = 20) -> str:
    """``value`` as an error message quotes it, at most ``limit`` characters. A secret, or a
    value holding one, is ``***``: cut short, its first characters would be shown, and no
    masker recognises a secret's first characters."""
    if holds_secret(value):
        return MASK
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``.

    Matches what ``[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\\s]*:[^@\\s]+@`` would, in
    linear time: each search starts where the last one left off, or reuses its
    answer (the next ``@`` or blank) while that still lies ahead."""
    k = text.find("://")
    if k < 0:
        return text
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    scanned = 0  # where the scheme of the next candidate may begin
    password_end = -1  # the first @ or blank at or after some earlier point, and none before it
    while k >= 0:
        scheme = text[scanned:k]
        scheme = scheme[len(scheme.rstrip(_SCHEME_CHARS)) :].lstrip(string.digits + "+.-")
        user = _USER_END.search(text, k + 3)
        if scheme and user and user.group() == ":":
            colon = user.start()
            if password_end <= colon:
                found = _PASSWORD_END.search(text, colon + 1)
                password_end = found.start() if found else len(text)
            if password_end > colon + 1 and password_end < len(text) and text[password_end] == "@":
                pieces += [text[done : colon + 1], MASK]
                done = scanned = password_end
                k = text.find("://", password_end + 1)
                continue
        scanned = k + 3
        k = text.find("://", k + 1)
    pieces.append(text[done:])
    return "".join(pieces)


def url_password(text: str) -> str | None:
    """The password of ``text`` if it is a URL with one (as written, still quoted)."""
    if "://" not in text or "@" not in text:
        return None
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return None
    return password if password and len(password) >= MIN_SECRET_LENGTH and password != text else None
