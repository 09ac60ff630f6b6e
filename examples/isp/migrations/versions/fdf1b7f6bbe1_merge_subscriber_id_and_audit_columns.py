"""merge_subscriber_id_and_audit_columns

Revision ID: fdf1b7f6bbe1
Revises: ee4f9c4fb5b3, c6b208ba7659
Create Date: 2025-10-28 09:05:00
"""

from collections.abc import Sequence

revision: str = "fdf1b7f6bbe1"
down_revision: str | Sequence[str] | None = ("ee4f9c4fb5b3", "c6b208ba7659")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A merge point only: no schema change."""


def downgrade() -> None:
    """A merge point only: no schema change."""
