"""Table definitions. Nothing here holds PHI: patients appear only as a keyed HMAC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class FeedbackRow(Base):
    """One feedback item as the EHR sent it; ``dedupe_key`` makes repeated posts idempotent."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    service_id: Mapped[str] = mapped_column(String(200), nullable=False)
    card_uuid: Mapped[str] = mapped_column(String(200), nullable=False)
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
    accepted_suggestions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    override_system: Mapped[str | None] = mapped_column(String(500), nullable=True)
    override_code: Mapped[str | None] = mapped_column(String(200), nullable=True)
    override_display: Mapped[str | None] = mapped_column(String(500), nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_feedback_card", "card_uuid"), Index("ix_feedback_service", "service_id"))


class IssuedCardRow(Base):
    """Every card we returned, so acceptance can be measured against cards issued."""

    __tablename__ = "issued_cards"

    card_uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200), nullable=False)
    rule_id: Mapped[str] = mapped_column(String(50), nullable=False)
    indicator: Mapped[str] = mapped_column(String(20), nullable=False)
    hook: Mapped[str] = mapped_column(String(100), nullable=False)
    hook_instance: Mapped[str] = mapped_column(String(200), nullable=False)
    patient_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_issued_rule_time", "rule_id", "issued_at"),
        Index("ix_issued_service_time", "service_id", "issued_at"),
    )


class AuditEventRow(Base):
    """One audit record per CDS call (optional, ``CDS_AUDIT_TO_DATABASE``); same fields as the
    ``cds.audit`` log line. Identifiers only: a patient is its keyed hash, never a token or name."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(20), nullable=False)
    service_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    hook: Mapped[str | None] = mapped_column(String(100), nullable=True)
    hook_instance: Mapped[str | None] = mapped_column(String(200), nullable=True)
    iss: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tenant: Mapped[str | None] = mapped_column(String(200), nullable=True)
    jti: Mapped[str | None] = mapped_column(String(200), nullable=True)
    patient_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    cards: Mapped[int] = mapped_column(Integer, nullable=False)
    rules: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    # Resources of another patient found in the call's data and dropped (data/subject.py).
    foreign_dropped: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_iss_at", "iss", "at"))
