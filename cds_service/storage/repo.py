"""Writes and reads of feedback and issued cards.

Feedback is committed before the endpoint answers 200 (nothing the EHR sent is lost), and the spec
allows the same feedback to arrive several times, so each item carries a content hash with a unique
index: a repeat is a no-op, on SQLite and Postgres alike.

A feedback write that cannot be done answers 503 with ``Retry-After`` within the statement timeout
(database down, frozen or overloaded: a retry can succeed), and 500 when the database refused the
rows (a retry cannot). Either way the log gets the error's class and SQLSTATE, never its text: the
text of a database error can quote the rows (Postgres' "Failing row contains (...)"), and so the
clinician's free-text comment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cds_service.protocol.errors import CdsError, ServiceUnavailable
from cds_service.protocol.models import FeedbackItem
from cds_service.storage.tables import AuditEventRow, FeedbackRow, IssuedCardRow

log = logging.getLogger("cds.storage")

# Rows per INSERT statement. asyncpg binds at most 32,767 parameters per statement; a feedback row
# has 11, so one statement could carry at most 2,978 rows. All chunks of a request still commit in
# one transaction.
FEEDBACK_CHUNK_ROWS = 1000
# SQLSTATE classes that mean "try again later": connection (08), resources (53), operator
# intervention/shutdown (57), and cancellations by statement_timeout/lock_timeout (57014, 55P03).
_TRANSIENT_SQLSTATE = ("08", "53", "57", "55P03", "40")


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def storage_failure(exc: BaseException, what: str) -> CdsError:
    """The HTTP error for a failed write, logged without the error's text (it may quote rows)."""
    state = _sqlstate(exc)
    # No SQLSTATE: timeouts, refused or lost connections, an exhausted pool: all worth a retry.
    transient = state is None or state.startswith(_TRANSIENT_SQLSTATE)
    log.error(
        f"{what} failed",
        extra={"fields": {"error": type(exc).__name__, "sqlstate": state, "transient": transient}},
    )
    if transient:
        return ServiceUnavailable(f"The database is not available; {what} was not done, please retry")
    return CdsError(500, f"The database refused the write; {what} was not done")


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 timestamp -> aware UTC datetime; ValueError for anything else."""
    ts = datetime.fromisoformat(value.strip())
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def _dedupe_key(service_id: str, item: FeedbackItem) -> str:
    reason = item.overrideReason.reason if item.overrideReason else None
    canonical = {
        "s": service_id,
        "c": item.card,
        "o": item.outcome,
        "a": sorted(a.id for a in item.acceptedSuggestions or []),
        "rs": reason.system if reason else None,
        "rc": reason.code if reason else None,
        "u": item.overrideReason.userComment if item.overrideReason else None,
        "t": item.outcomeTimestamp,
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    rule_id: str
    indicator: str
    hook: str
    hook_instance: str
    patient_hash: str
    issued_at: datetime


class Store:
    """The service's only door to the database."""

    def __init__(self, engine: AsyncEngine, timeout: float = 3.0) -> None:
        self.engine = engine
        self.timeout = timeout  # budget of one whole feedback write (connect + statements + commit)
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._issued_stmt = self._insert(IssuedCardRow).on_conflict_do_nothing(index_elements=["card_uuid"])

    async def save_feedback(self, service_id: str, items: Sequence[FeedbackItem], now: datetime) -> int:
        """Store every item in one transaction; returns how many were new (repeats are skipped).
        Raises ``ServiceUnavailable`` (503) or ``CdsError`` (500), see the module docstring."""
        try:
            async with asyncio.timeout(self.timeout * 2):  # engine timeouts first; this is the backstop
                return await self._save_feedback(service_id, items, now)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise storage_failure(exc, "storing feedback") from None

    async def _save_feedback(self, service_id: str, items: Sequence[FeedbackItem], now: datetime) -> int:
        rows = []
        for item in items:
            reason = item.overrideReason.reason if item.overrideReason else None
            rows.append(
                {
                    "dedupe_key": _dedupe_key(service_id, item),
                    "service_id": service_id,
                    "card_uuid": item.card,
                    "outcome": item.outcome,
                    "accepted_suggestions": [a.id for a in item.acceptedSuggestions or []] or None,
                    "override_system": reason.system if reason else None,
                    "override_code": reason.code if reason else None,
                    "override_display": reason.display if reason else None,
                    "user_comment": item.overrideReason.userComment if item.overrideReason else None,
                    "outcome_timestamp": parse_timestamp(item.outcomeTimestamp),
                    "received_at": now,
                }
            )
        new = 0
        async with self.sessions.begin() as session:
            for start in range(0, len(rows), FEEDBACK_CHUNK_ROWS):
                chunk = rows[start : start + FEEDBACK_CHUNK_ROWS]
                stmt = self._insert(FeedbackRow).values(chunk).on_conflict_do_nothing(index_elements=["dedupe_key"])
                result = await session.execute(stmt)
                new += int(getattr(result, "rowcount", 0) or 0)
        return new

    async def record_issued(self, cards: Sequence[IssuedCard]) -> None:
        """Insert the rows in one transaction (a repeated card uuid is skipped). The statement is
        fixed and the rows are parameters, so SQLAlchemy compiles it once per process instead of
        once per call (a multi-row ``.values(rows)`` is new SQL every time)."""
        if not cards:
            return
        rows = [c.__dict__ for c in cards]
        async with self.sessions.begin() as session:
            await session.execute(self._issued_stmt, rows)

    async def save_audit_event(self, row: Mapping[str, object]) -> None:
        """One ``audit_events`` row (column name to value, already PHI-free and cut to size)."""
        async with self.sessions.begin() as session:
            await session.execute(insert(AuditEventRow).values(**row))

    async def count_feedback(self, card_uuid: str | None = None) -> int:
        q = select(func.count()).select_from(FeedbackRow)
        if card_uuid is not None:
            q = q.where(FeedbackRow.card_uuid == card_uuid)
        async with self.sessions() as session:
            return int((await session.execute(q)).scalar_one())

    async def feedback_for(self, card_uuid: str) -> list[FeedbackRow]:
        async with self.sessions() as session:
            res = await session.execute(select(FeedbackRow).where(FeedbackRow.card_uuid == card_uuid))
            return list(res.scalars())

    async def issued(self, card_uuid: str) -> IssuedCardRow | None:
        async with self.sessions() as session:
            return await session.get(IssuedCardRow, card_uuid)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))
