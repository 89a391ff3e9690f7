"""Initial schema: feedback, issued_card, used_jti (as created by SQLAlchemy create_all before migrations).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("service_id", sa.String(80), nullable=False),
        sa.Column("card_uuid", sa.String(80), nullable=False),
        sa.Column("card_type", sa.String(80), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("accepted_suggestions", sa.String(800), nullable=True),
        sa.Column("override_system", sa.String(200), nullable=True),
        sa.Column("override_code", sa.String(80), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("card_uuid", "outcome", name="uq_feedback_card_outcome"),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    op.create_table(
        "issued_card",
        sa.Column("card_uuid", sa.String(80), primary_key=True),
        sa.Column("service_id", sa.String(80), nullable=False),
        sa.Column("card_type", sa.String(80), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "used_jti",
        sa.Column("key", sa.String(600), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_used_jti_expires_at", "used_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_table("used_jti")
    op.drop_table("issued_card")
    op.drop_index("ix_feedback_card_uuid", table_name="feedback")
    op.drop_table("feedback")
