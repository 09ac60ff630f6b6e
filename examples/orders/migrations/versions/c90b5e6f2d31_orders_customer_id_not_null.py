"""orders.customer_id NOT NULL

Revision ID: c90b5e6f2d31
Revises: 7d4e2b9c1a55
Create Date: 2025-11-03 09:20:00

Revision C: every order has a customer. Fails while any order's customer_id
is still NULL, so it runs after the backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c90b5e6f2d31"
down_revision: str | Sequence[str] | None = "7d4e2b9c1a55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.alter_column("customer_id", existing_type=sa.Integer, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.alter_column("customer_id", existing_type=sa.Integer, nullable=True)
