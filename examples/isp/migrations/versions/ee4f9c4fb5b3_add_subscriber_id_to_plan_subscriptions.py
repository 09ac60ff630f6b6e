"""add_subscriber_id_to_plan_subscriptions

Revision ID: ee4f9c4fb5b3
Revises: c64d9a16fa9d
Create Date: 2025-10-28 09:00:00

Adds the nullable plan_subscriptions.subscriber_id (filled later by the
backfill), its foreign key to subscribers.id and its index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ee4f9c4fb5b3"
down_revision: str | Sequence[str] | None = "c64d9a16fa9d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "plan_subscriptions"
COLUMN = "subscriber_id"
FK_NAME = "fk_plan_subscriptions_subscriber_id"
INDEX_NAME = "ix_plan_subscriptions_subscriber_id"


def upgrade() -> None:
    column = sa.Column(COLUMN, sa.String(36), nullable=True)
    if op.get_context().dialect.name == "postgresql":
        op.add_column(TABLE, column)
        # The seed's two-statement form: VALIDATE is the step that scans.
        # Both run inside the migration's transaction, after ADD COLUMN has
        # taken the exclusive lock, so a failure leaves nothing half-applied;
        # the column is new and all NULL, which keeps that scan short.
        op.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {FK_NAME} "
            f"FOREIGN KEY ({COLUMN}) REFERENCES subscribers (id) NOT VALID"
        )
        op.execute(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {FK_NAME}")
        op.create_index(INDEX_NAME, TABLE, [COLUMN])
        return
    # SQLite cannot add a foreign key to an existing table: batch mode
    # rebuilds the table with the new column, constraint and index.
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(column)
        batch.create_foreign_key(FK_NAME, "subscribers", [COLUMN], ["id"])
        batch.create_index(INDEX_NAME, [COLUMN])


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_index(INDEX_NAME)
        batch.drop_constraint(FK_NAME, type_="foreignkey")
        batch.drop_column(COLUMN)
