"""Where things live: the database URL, the state directory, engines, logs.

Every command gets one ``Settings``; nothing else reads the environment, so
the precedence (flag, then environment, then default) is decided here once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = PACKAGE_ROOT / "var"
ALEMBIC_INI = PACKAGE_ROOT / "alembic.ini"

DATABASE_ENV = "ISP_DATABASE_URL"
HOME_ENV = "ISP_HOME"
LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def default_database_url(home: Path) -> str:
    return f"sqlite:///{home / 'isp.db'}"


def resolve_home(flag: str | None = None) -> Path:
    return Path(flag or os.environ.get(HOME_ENV) or DEFAULT_HOME).resolve()


def resolve_database_url(flag: str | None, home: Path) -> str:
    return flag or os.environ.get(DATABASE_ENV) or default_database_url(home)


def redact(text: str, url: str | URL) -> str:
    """Remove the URL's password from text; drivers echo connection details in errors."""
    try:
        password = make_url(url).password
    except ArgumentError:
        return text  # not a URL, hence no password to find in it
    return text.replace(password, "***") if password else text


@dataclass(frozen=True)
class Settings:
    database_url: str
    home: Path

    @classmethod
    def from_flags(cls, db: str | None = None, home: str | None = None) -> Settings:
        resolved_home = resolve_home(home)
        return cls(resolve_database_url(db, resolved_home), resolved_home)

    @property
    def url(self) -> URL:
        return make_url(self.database_url)

    @property
    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def api_log(self) -> Path:
        return self.logs_dir / "api-server.log"

    @property
    def worker_log(self) -> Path:
        return self.logs_dir / "celery-worker.log"

    @property
    def app_state(self) -> Path:
        return self.home / "app.json"

    @property
    def pid_file(self) -> Path:
        return self.home / "api-server.pid"

    def engine(self) -> Engine:
        return create_engine(self.database_url)

    def child_env(self) -> dict[str, str]:
        """Environment for a child process: the URL travels here, never on argv (ps shows argv)."""
        return {**os.environ, DATABASE_ENV: self.database_url, HOME_ENV: str(self.home)}


def create_engine(url: str | URL) -> Engine:
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # The API server, the jobs and the runbook's backfill write the same file
    # from different processes: wait for the lock instead of failing at once.
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite leaves foreign keys unenforced unless asked, per connection;
    # WAL lets the API keep reading while a backfill writes.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def file_logger(name: str, path: Path) -> logging.Logger:
    """A logger appending to path; idempotent so repeated setup never doubles lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    return logger
