"""add_audit_columns

Revision ID: c6b208ba7659
Revises: 7c2e5d1a4b83
Create Date: 2025-08-11 09:00:00

Developed on a branch beside c64d9a16fa9d, so the history has two heads
until fdf1b7f6bbe1 merges them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c6b208ba7659"
down_revision: str | Sequence[str] | None = "7c2e5d1a4b83"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customers", sa.Column("updated_by", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("updated_by")
        batch.drop_column("updated_at")
