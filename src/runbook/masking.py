"""Secret masking: every string that leaves the process passes through a Masker.

Secrets are registered once (secret vars, passwords inside connection URLs)
and replaced by ``***`` wherever they occur: terminal output, log files, the
state store, events, reports and error messages. URL-quoted forms are masked
too, because drivers echo URLs back in their errors, and so are the forms
shell-quoting gives a secret in a command line (``'it'\\''s'``, ``\\$x``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"
# Shorter values would mask ordinary words ("a", "on") and make output unreadable.
MIN_SECRET_LENGTH = 3
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")


class Masker:
    """Replaces registered secrets, and any password inside a URL, by ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        forms = {secret, quote(secret, safe=""), quote_plus(secret), shlex.quote(secret)}
        # How templating.shell_quote writes it inside '...' and "..." (and here-documents).
        forms |= {secret.replace("'", "'\\''"), re.sub(r'([\\"$`])', r"\\\1", secret), re.sub(r"([\\$`])", r"\\\1", secret)}
        for form in forms:
            self._secrets.add(form)
        # A secret URL's password is a secret of its own: tools print it alone, decoded or not.
        password = _url_password(secret)
        if password:
            self._secrets.add(password)
            self.add(unquote(password))
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __call__(self, text: str) -> str:
        return self.mask(text)

    def mask(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{MASK}{m['at']}", text)

    def mask_data(self, value: object) -> object:
        """Mask every string inside nested dicts, lists and tuples."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self.mask_data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_data(v) for v in value]
        return value


def _url_password(text: str) -> str | None:
    """The password of ``text`` if it is a URL with one (as written, still quoted)."""
    if "://" not in text or "@" not in text:
        return None
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return None
    return password if password and len(password) >= MIN_SECRET_LENGTH and password != text else None
