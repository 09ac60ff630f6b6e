"""Alembic environment for the ISP demo.

The database URL comes from, in order: the ``sqlalchemy.url`` main option
(set programmatically, e.g. by the runbook's alembic step), ``-x db=URL``,
``ISP_DATABASE_URL``, then the default SQLite file in the state directory.
"""

from __future__ import annotations

import sys
from logging.config import fileConfig
from pathlib import Path

import sqlalchemy as sa
from alembic import context
from sqlalchemy.pool import NullPool

# Importable whatever the caller's cwd or sys.path: the CLI, the runbook and
# `alembic -c examples/isp/alembic.ini` all land here, the runbook repeatedly.
APP_DIR = str(Path(__file__).resolve().parent.parent)
if APP_DIR not in sys.path:
    sys.path.insert(0, APP_DIR)

from isp.models import Base  # noqa: E402
from isp.settings import resolve_database_url, resolve_home  # noqa: E402

config = context.config
# A caller embedding alembic (the runbook) keeps its own logging by setting
# config.attributes["configure_logger"] = False.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    return (
        config.get_main_option("sqlalchemy.url")
        or context.get_x_argument(as_dictionary=True).get("db")
        or resolve_database_url(None, resolve_home())
    )


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # A plain engine, not the application's: SQLite batch mode drops and
    # recreates plan_subscriptions, which usage_records references, so the
    # app's foreign_keys pragma must stay off here.
    engine = sa.create_engine(database_url(), poolclass=NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
