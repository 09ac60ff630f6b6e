"""create_customers_and_subscribers

Revision ID: 1f8a3c2b9d40
Revises:
Create Date: 2025-06-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1f8a3c2b9d40"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("service_type", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_subscribers_customer_id"),
        sa.UniqueConstraint("username", name="uq_subscribers_username"),
    )
    op.create_index("ix_subscribers_customer_id", "subscribers", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_subscribers_customer_id", table_name="subscribers")
    op.drop_table("subscribers")
    op.drop_table("customers")
