"""Named database connections, opened lazily: only a step or check that uses
one pays for SQLAlchemy and the driver, and ``runbook plan`` never does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runbook.errors import MissingExtra, RunbookError
from runbook.masking import Masker

if TYPE_CHECKING:
    import sqlalchemy as sa


class ConnectionFailed(RunbookError):
    """A named connection is unknown or cannot be opened."""


# A URL without a driver gets the one runbook installs: psycopg 3 for PostgreSQL,
# PyMySQL for MySQL and MariaDB (one dialect; the server's flavour is detected on connect).
_DEFAULT_DRIVERS = {
    "postgresql://": "postgresql+psycopg://",
    "postgres://": "postgresql+psycopg://",
    "mysql://": "mysql+pymysql://",
    "mariadb://": "mysql+pymysql://",
}


def normalize_url(url: str) -> str:
    """``postgresql://`` uses psycopg 3, ``mysql://`` and ``mariadb://`` use PyMySQL."""
    for prefix, replacement in _DEFAULT_DRIVERS.items():
        if url.startswith(prefix):
            return replacement + url[len(prefix):]
    return url


def describe_db_error(err: BaseException, masker: Masker) -> str:
    """One masked line for a database error: drivers echo URLs and SQL back."""
    orig = getattr(err, "orig", None) or err
    text = _error_text(orig).strip().splitlines()
    first = text[0] if text else type(orig).__name__
    return masker.mask(f"{type(orig).__name__}: {first}")


def _error_text(orig: BaseException) -> str:
    # MySQL drivers' errors are (code, message) tuples: show them as the mysql client does.
    args = orig.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str) and type(orig).__module__.startswith("pymysql"):
        return f"{args[0]} {args[1]}"
    return str(orig)


class Connections:
    """Engines by connection name, created on first use and disposed at the end."""

    def __init__(self, urls: dict[str, str], masker: Masker, render: Callable[[str], str] = lambda s: s) -> None:
        self._urls = urls
        self._render = render
        self._masker = masker
        self._engines: dict[str, sa.Engine] = {}

    def url(self, name: str) -> str:
        if name not in self._urls:
            known = ", ".join(self._urls) or "none declared"
            raise ConnectionFailed(f"unknown connection {name!r} (known: {known})")
        try:
            url = normalize_url(self._render(self._urls[name]))
        except RunbookError as err:  # its template failed: say which connection
            raise ConnectionFailed(f"connection {name!r}: {err.message}") from err
        self._masker.add(_password_of(url))
        return url

    def engine(self, name: str) -> sa.Engine:
        if name not in self._engines:
            import sqlalchemy as sa

            url = self.url(name)
            try:
                self._engines[name] = sa.create_engine(url, pool_pre_ping=True)
            except ImportError as err:  # its driver is not installed: name the extra that installs it
                missing = MissingExtra.of_import_error(err, f"connection {name!r}")
                if missing is None:
                    raise ConnectionFailed(f"connection {name!r}: {describe_db_error(err, self._masker)}") from err
                raise missing from None
            except Exception as err:  # bad URL syntax or unknown driver
                raise ConnectionFailed(f"connection {name!r}: {describe_db_error(err, self._masker)}") from err
        return self._engines[name]

    def dialect(self, name: str) -> str:
        return self.engine(name).dialect.name

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


def _password_of(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        return None
