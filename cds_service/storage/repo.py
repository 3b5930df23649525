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
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cds_service.protocol.errors import CdsError, ServiceUnavailable
from cds_service.protocol.models import FeedbackItem
from cds_service.storage.tables import AuditEventRow, CardSnoozeRow, FeedbackRow, IssuedCardRow

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


def _aware(ts: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


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
    fingerprint: str = ""  # of the inputs the card was issued on (override memory, issue 17)
    concepts: tuple[str, ...] = ()  # concepts the card suggested


@dataclass(frozen=True)
class RememberedAnswer:
    """One row of override memory in force (the call layer hands it to the topic as a Snooze)."""

    rule_id: str
    fingerprint: str
    outcome: str
    issued_at: datetime
    until: datetime
    concepts: tuple[str, ...]


@dataclass(frozen=True)
class SnoozePolicy:
    """How long override memory lasts (issue 17): an overridden card for ``overridden_days`` unless
    its inputs change; an accepted one until its order is closed, at most ``accepted_days``.
    ``overridden_days`` 0 turns the memory off."""

    overridden_days: int = 30
    accepted_days: int = 90

    def days(self, outcome: str) -> int:
        return {"overridden": self.overridden_days, "accepted": self.accepted_days}.get(outcome, 0)


class Store:
    """The service's only door to the database."""

    def __init__(self, engine: AsyncEngine, timeout: float = 3.0) -> None:
        self.engine = engine
        self.timeout = timeout  # budget of one whole feedback write (connect + statements + commit)
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._issued_stmt = self._insert(IssuedCardRow).on_conflict_do_nothing(index_elements=["card_uuid"])
        self._snooze_stmt = (
            select(
                IssuedCardRow.rule_id,
                IssuedCardRow.fingerprint,
                CardSnoozeRow.outcome,
                IssuedCardRow.issued_at,
                CardSnoozeRow.expires_at,
                IssuedCardRow.concepts,
            )
            .join(IssuedCardRow, IssuedCardRow.card_uuid == CardSnoozeRow.card_uuid)
            .where(
                IssuedCardRow.patient_hash == bindparam("ph"),
                IssuedCardRow.service_id == bindparam("sid"),
                CardSnoozeRow.service_id == bindparam("sid"),
                IssuedCardRow.indicator != "critical",
                IssuedCardRow.fingerprint.is_not(None),
                CardSnoozeRow.expires_at > bindparam("now"),
            )
        )

    async def save_feedback(
        self,
        service_id: str,
        items: Sequence[FeedbackItem],
        now: datetime,
        snooze: SnoozePolicy | None = None,
    ) -> int:
        """Store every item in one transaction; returns how many were new (repeats are skipped).
        With ``snooze``, an ``overridden`` or ``accepted`` item is also remembered in
        ``card_snoozes`` (same transaction), so the card is held back on the next calls.
        Raises ``ServiceUnavailable`` (503) or ``CdsError`` (500), see the module docstring."""
        try:
            async with asyncio.timeout(self.timeout * 2):  # engine timeouts first; this is the backstop
                return await self._save_feedback(service_id, items, now, snooze)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise storage_failure(exc, "storing feedback") from None

    async def _save_feedback(
        self, service_id: str, items: Sequence[FeedbackItem], now: datetime, snooze: SnoozePolicy | None
    ) -> int:
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
        snoozes = [
            {
                "card_uuid": item.card,
                "service_id": service_id,
                "outcome": item.outcome,
                "created_at": now,
                "expires_at": now + timedelta(days=snooze.days(item.outcome)),
            }
            for item in items
            if snooze is not None and snooze.days(item.outcome) > 0
        ]
        new = 0
        async with self.sessions.begin() as session:
            for start in range(0, len(rows), FEEDBACK_CHUNK_ROWS):
                chunk = rows[start : start + FEEDBACK_CHUNK_ROWS]
                stmt = self._insert(FeedbackRow).values(chunk).on_conflict_do_nothing(index_elements=["dedupe_key"])
                result = await session.execute(stmt)
                new += int(getattr(result, "rowcount", 0) or 0)
            for start in range(0, len(snoozes), FEEDBACK_CHUNK_ROWS):  # 5 columns a row: well under the limit
                # A repeated answer for the same card keeps the first memory (no extension by repeats).
                await session.execute(
                    self._insert(CardSnoozeRow)
                    .values(snoozes[start : start + FEEDBACK_CHUNK_ROWS])
                    .on_conflict_do_nothing(index_elements=["card_uuid", "outcome"])
                )
        return new

    async def active_snoozes(self, service_id: str, patient_hash: str, now: datetime) -> list[RememberedAnswer]:
        """The patient's remembered answers still in force, for this service: one indexed query,
        joined to the issued card for its rule and fingerprint. Critical cards are never returned
        (override memory must not hide one, whatever feedback said). Every call runs it, so it is
        one prepared statement on a plain connection: an ORM session around it doubled its CPU
        cost (0.67 against 0.36 ms a call, SQLite and PostgreSQL alike; docs/performance.md)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(self._snooze_stmt, {"ph": patient_hash, "sid": service_id, "now": now})).all()
        return [
            RememberedAnswer(
                rule_id=r[0],
                fingerprint=r[1] or "",
                outcome=r[2],
                issued_at=_aware(r[3]),
                until=_aware(r[4]),
                concepts=tuple(r[5] or ()),
            )
            for r in rows
        ]

    async def record_issued(self, cards: Sequence[IssuedCard]) -> None:
        """Insert the rows in one transaction (a repeated card uuid is skipped). The statement is
        fixed and the rows are parameters, so SQLAlchemy compiles it once per process instead of
        once per call (a multi-row ``.values(rows)`` is new SQL every time)."""
        if not cards:
            return
        rows = [{**c.__dict__, "concepts": list(c.concepts) or None, "fingerprint": c.fingerprint or None} for c in cards]
        async with self.engine.begin() as conn:  # a plain connection: no ORM session per batch
            await conn.execute(self._issued_stmt, rows)

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
