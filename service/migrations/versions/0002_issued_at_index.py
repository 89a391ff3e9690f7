"""Index issued_card.issued_at, so the purge of expired issued-card records is a range scan.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_issued_card_issued_at", "issued_card", ["issued_at"])


def downgrade() -> None:
    op.drop_index("ix_issued_card_issued_at", table_name="issued_card")
