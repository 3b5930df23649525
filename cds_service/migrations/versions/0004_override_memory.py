"""override memory: card_snoozes, issued-card fingerprints, snoozed rules in the audit (issue 17)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "card_snoozes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(200), nullable=False),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_snooze_card_outcome", "card_snoozes", ["card_uuid", "outcome"], unique=True)
    op.create_index("ix_snooze_expires", "card_snoozes", ["expires_at"])
    with op.batch_alter_table("issued_cards") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("concepts", sa.JSON(), nullable=True))
    op.create_index("ix_issued_patient", "issued_cards", ["patient_hash"])
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("snoozed", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("snoozed")
    op.drop_index("ix_issued_patient", table_name="issued_cards")
    with op.batch_alter_table("issued_cards") as batch:
        batch.drop_column("concepts")
        batch.drop_column("fingerprint")
    op.drop_index("ix_snooze_expires", table_name="card_snoozes")
    op.drop_index("ux_snooze_card_outcome", table_name="card_snoozes")
    op.drop_table("card_snoozes")
