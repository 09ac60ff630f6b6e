"""The pre-deployment backup: ``<home>/backups/<dbname>-<UTC timestamp>.<ext>``.

- SQLite: a consistent copy through the sqlite3 backup API -> ``.sqlite3``
- PostgreSQL with a working ``pg_dump`` on PATH: a plain SQL dump -> ``.sql``
- otherwise: a logical dump of every table through SQLAlchemy -> ``.json``
  (``pg_dump`` refuses a server newer than itself, so a failed ``pg_dump``
  falls back to this and says why)
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy import MetaData, select

from isp.errors import IspError
from isp.settings import Settings, redact

LOGICAL_DUMP_FORMAT = "isp-logical-dump/1"
ROWS_PER_FETCH = 10_000


@dataclass(frozen=True)
class Backup:
    path: Path
    method: str  # "sqlite3-backup" | "pg_dump" | "logical"
    note: str | None = None


def backup(settings: Settings) -> Backup:
    url = settings.url
    settings.backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise IspError("an in-memory SQLite database cannot be backed up")
        target = settings.backups_dir / f"{Path(url.database).stem}-{stamp}.sqlite3"
        _sqlite_copy(Path(url.database), _claim(target))
        return Backup(target, "sqlite3-backup")
    name = url.database or "database"
    note = None
    if url.get_backend_name() == "postgresql" and shutil.which("pg_dump"):
        target = settings.backups_dir / f"{name}-{stamp}.sql"
        failure = _pg_dump(settings, _claim(target))
        if failure is None:
            return Backup(target, "pg_dump")
        target.unlink(missing_ok=True)
        note = f"pg_dump failed ({failure}); wrote a logical dump instead"
    target = settings.backups_dir / f"{name}-{stamp}.json"
    with _claim(target).open("w", encoding="utf-8") as out:
        _logical_dump(settings, out)
    return Backup(target, "logical", note)


def _claim(target: Path) -> Path:
    """Create the file exclusively: a second backup within the same second must not overwrite the first."""
    try:
        target.touch(exist_ok=False)
    except FileExistsError as err:
        raise IspError(f"backup {target} already exists; retry in a second") from err
    return target


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise IspError(f"SQLite database {source} does not exist")
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


def _pg_dump(settings: Settings, target: Path) -> str | None:
    """Run pg_dump; the error's first line if it failed. The password goes by environment, never argv."""
    url = settings.url
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    libpq_url = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    result = subprocess.run(
        ["pg_dump", "--no-password", "--format=plain", f"--file={target}", f"--dbname={libpq_url}"],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
    return redact(lines[0], url)


def _logical_dump(settings: Settings, out: IO[str]) -> None:
    """Every table, parents first, as one JSON document written row by row (constant memory)."""
    engine = settings.engine()
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        header = {"format": LOGICAL_DUMP_FORMAT, "database": settings.safe_url}
        out.write(json.dumps(header)[:-1] + ', "tables": {')
        with engine.connect() as conn:
            for t, table in enumerate(metadata.sorted_tables):
                out.write(("," if t else "") + f"\n{json.dumps(table.name)}: ")
                out.write(f'{{"columns": {json.dumps([c.name for c in table.columns])}, "rows": [')
                rows = conn.execution_options(yield_per=ROWS_PER_FETCH).execute(select(table))
                for r, row in enumerate(rows):
                    out.write(("," if r else "") + "\n" + json.dumps(list(row), default=str))
                out.write("]}")
        out.write("\n}}\n")
    finally:
        engine.dispose()
