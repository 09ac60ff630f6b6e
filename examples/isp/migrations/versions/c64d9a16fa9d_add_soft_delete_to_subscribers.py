"""add_soft_delete_to_subscribers

Revision ID: c64d9a16fa9d
Revises: 7c2e5d1a4b83
Create Date: 2025-08-04 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c64d9a16fa9d"
down_revision: str | Sequence[str] | None = "7c2e5d1a4b83"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("deleted_at")
