"""Reaching a state store's tables behind its back, wherever the store keeps them.

On PostgreSQL the store's tables live in a schema of their own (``runbook``
unless configured otherwise), not in ``public``: a plain engine would not see
them. For tests that inspect or tamper with a store directly.
"""

from __future__ import annotations

import sqlalchemy as sa

from runbook.connections import normalize_url
from runbook.state.connect import DEFAULT_SCHEMA


def store_engine(url: str, schema: str = DEFAULT_SCHEMA) -> sa.Engine:
    """A plain engine on the store's database in which unqualified names (Core tables
    and text SQL alike) are the store's tables; for SQLite just an engine on the file."""
    url = normalize_url(url)
    if sa.make_url(url).get_backend_name() == "postgresql":
        return sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    return sa.create_engine(url)
