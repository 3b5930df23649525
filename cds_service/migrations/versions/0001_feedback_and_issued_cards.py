"""feedback and issued cards

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False, unique=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("card_uuid", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("override_system", sa.String(500), nullable=True),
        sa.Column("override_code", sa.String(200), nullable=True),
        sa.Column("override_display", sa.String(500), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_card", "feedback", ["card_uuid"])
    op.create_index("ix_feedback_service", "feedback", ["service_id"])
    op.create_table(
        "issued_cards",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("rule_id", sa.String(50), nullable=False),
        sa.Column("indicator", sa.String(20), nullable=False),
        sa.Column("hook", sa.String(100), nullable=False),
        sa.Column("hook_instance", sa.String(200), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_issued_rule_time", "issued_cards", ["rule_id", "issued_at"])
    op.create_index("ix_issued_service_time", "issued_cards", ["service_id", "issued_at"])


def downgrade() -> None:
    op.drop_index("ix_issued_service_time", table_name="issued_cards")
    op.drop_index("ix_issued_rule_time", table_name="issued_cards")
    op.drop_table("issued_cards")
    op.drop_index("ix_feedback_service", table_name="feedback")
    op.drop_index("ix_feedback_card", table_name="feedback")
    op.drop_table("feedback")
