"""create customers and orders

Revision ID: 3a1f0c2e7b10
Revises:
Create Date: 2025-11-03 09:00:00

Revision A: the schema before the change. An order names its customer by
e-mail address only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3a1f0c2e7b10"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("total_cents", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False, server_default=sa.func.current_timestamp()),
    )


def downgrade() -> None:
    op.drop_table("orders")
    op.drop_table("customers")
