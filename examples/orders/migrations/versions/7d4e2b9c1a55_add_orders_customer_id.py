"""add orders.customer_id

Revision ID: 7d4e2b9c1a55
Revises: 3a1f0c2e7b10
Create Date: 2025-11-03 09:10:00

Revision B: the nullable orders.customer_id, its foreign key to customers.id
and its index. The backfill fills it; revision C makes it NOT NULL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d4e2b9c1a55"
down_revision: str | Sequence[str] | None = "3a1f0c2e7b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("customer_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_orders_customer_id", "customers", ["customer_id"], ["id"])
        batch.create_index("ix_orders_customer_id", ["customer_id"])


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_customer_id")
        batch.drop_constraint("fk_orders_customer_id", type_="foreignkey")
        batch.drop_column("customer_id")
