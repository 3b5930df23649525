"""audit events (optional database copy of the cds.audit log stream)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("endpoint", sa.String(20), nullable=False),
        sa.Column("service_id", sa.String(200), nullable=True),
        sa.Column("hook", sa.String(100), nullable=True),
        sa.Column("hook_instance", sa.String(200), nullable=True),
        sa.Column("iss", sa.String(200), nullable=True),
        sa.Column("tenant", sa.String(200), nullable=True),
        sa.Column("jti", sa.String(200), nullable=True),
        sa.Column("patient_hash", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("cards", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=True),
        sa.Column("reason", sa.String(50), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
    )
    op.create_index("ix_audit_at", "audit_events", ["at"])
    op.create_index("ix_audit_iss_at", "audit_events", ["iss", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_iss_at", table_name="audit_events")
    op.drop_index("ix_audit_at", table_name="audit_events")
    op.drop_table("audit_events")
