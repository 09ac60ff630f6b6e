"""Small alembic projects on disk, for the alembic step's and the alembic_revision check's tests."""

from __future__ import annotations

from pathlib import Path

ENV_PY = '''
import logging
import sqlalchemy as sa
from logging.config import fileConfig
from alembic import context

config = context.config
if config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
{extra}

if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
'''

REVISION = '''"""{message}"""
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


def write_project(root: Path, *, url: str = "", env_extra: str = "", script_location: str = "%(here)s/migrations") -> Path:
    """``root/alembic.ini`` and ``root/migrations/env.py`` (written again if there); the versions folder."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (root / "alembic.ini").write_text(
        f"[alembic]\nscript_location = {script_location}\npath_separator = os\n"
        + (f"sqlalchemy.url = {url}\n" if url else "")
    )
    (root / "migrations" / "env.py").write_text(ENV_PY.format(extra=env_extra))
    return versions


def write_revision(
    versions: Path, rev: str, down: str | tuple[str, ...] | None, message: str, upgrade: str = "    pass", downgrade: str = "    pass"
) -> None:
    """A revision file; ``upgrade`` and ``downgrade`` are function bodies, indented."""
    (versions / f"{rev}_{message}.py").write_text(
        REVISION.format(rev=rev, down=down, message=message, upgrade=upgrade, downgrade=downgrade)
    )
