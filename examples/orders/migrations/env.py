"""Alembic environment of the orders example.

The database URL comes from, in order: the ``sqlalchemy.url`` main option (the
runbook's alembic step sets it from its connection), ``-x db=URL``,
``ORDERS_DATABASE_URL``, then the SQLite file in the example's state directory.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from pathlib import Path

import sqlalchemy as sa
from alembic import context
from sqlalchemy.pool import NullPool

config = context.config
# The runbook captures alembic's log itself and says so with configure_logger=False
# (docs/runbook-format.md, 12.4).
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    home = Path(os.environ.get("ORDERS_HOME") or Path(__file__).resolve().parent.parent / "var")
    return (
        config.get_main_option("sqlalchemy.url")
        or context.get_x_argument(as_dictionary=True).get("db")
        or os.environ.get("ORDERS_DATABASE_URL")
        or f"sqlite:///{home / 'orders.db'}"
    )


def run_migrations_offline() -> None:
    context.configure(url=database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = sa.create_engine(database_url(), poolclass=NullPool)
    with engine.connect() as connection:
        # SQLite cannot alter a column or add a foreign key in place: batch mode rebuilds the table.
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
