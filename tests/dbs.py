"""Which databases a test runs on, over the ``any_db_url`` fixture (tests/conftest.py), which
alone runs it on SQLite, PostgreSQL and MariaDB: ``@on("postgresql", "mariadb")``."""

from __future__ import annotations

import pytest


def on(*databases: str) -> pytest.MarkDecorator:
    """Run the test on these of sqlite, postgresql and mariadb only."""
    return pytest.mark.parametrize("any_db_url", databases, indirect=True)
