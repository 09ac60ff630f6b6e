"""create_internet_plans_and_subscriptions

Revision ID: 7c2e5d1a4b83
Revises: 1f8a3c2b9d40
Create Date: 2025-06-16 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c2e5d1a4b83"
down_revision: str | Sequence[str] | None = "1f8a3c2b9d40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "internet_plans",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("download_mbps", sa.Integer(), nullable=False),
        sa.Column("upload_mbps", sa.Integer(), nullable=False),
        sa.Column("data_cap_gb", sa.Integer(), nullable=True),
        sa.Column("monthly_price_cents", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_internet_plans"),
    )
    op.create_table(
        "plan_subscriptions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(36), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_plan_subscriptions"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name="fk_plan_subscriptions_customer_id"),
        sa.ForeignKeyConstraint(["plan_id"], ["internet_plans.id"], name="fk_plan_subscriptions_plan_id"),
    )
    op.create_index("ix_plan_subscriptions_customer_id", "plan_subscriptions", ["customer_id"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["plan_subscriptions.id"], name="fk_usage_records_subscription_id"
        ),
    )
    op.create_index("ix_usage_records_subscription_id", "usage_records", ["subscription_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_subscription_id", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index("ix_plan_subscriptions_customer_id", table_name="plan_subscriptions")
    op.drop_table("plan_subscriptions")
    op.drop_table("internet_plans")
