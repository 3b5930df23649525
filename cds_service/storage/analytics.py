"""Feedback analytics: per service and per rule, how many cards were issued, accepted, overridden,
and why clinicians overrode them, for a time window.

The counting rules, and why:

* The denominator is the cards *issued* in the window (``issued_cards.issued_at`` in
  ``[since, until)``), never the feedback rows: most EHRs send feedback for few cards, and a rate
  over feedback rows would show a rule nobody acts on as "100 % accepted".
* A card counts once. Its outcome is its latest feedback (by ``outcome_timestamp``, then arrival),
  however often the EHR repeated or revised it, so ``accepted + overridden <= issued``.
* Feedback is joined to cards on ``card_uuid`` only. Feedback received in the window for cards this
  deployment never recorded is not counted; the number of such cards is reported separately
  (``unmatchedFeedbackCards``) because a large value means a misrouted or replayed feed.
* Override reasons are those of the overridden cards, grouped by coding (system and code); a card
  overridden without a reason is counted under "(no reason given)".

Nothing here reads or returns patient data; ``issued_cards`` holds only a keyed hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cds_service.storage.tables import FeedbackRow, IssuedCardRow

NO_REASON = "(no reason given)"


@dataclass(frozen=True)
class OverrideReason:
    system: str | None
    code: str | None
    display: str
    cards: int

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"display": self.display, "cards": self.cards}
        if self.system:
            out["system"] = self.system
        if self.code:
            out["code"] = self.code
        return out


@dataclass
class Counts:
    issued: int = 0
    accepted: int = 0
    overridden: int = 0

    def add(self, other: Counts) -> None:
        self.issued += other.issued
        self.accepted += other.accepted
        self.overridden += other.overridden

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "issued": self.issued,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "withoutFeedback": self.issued - self.accepted - self.overridden,
        }
        if self.issued:
            out["acceptanceRate"] = round(self.accepted / self.issued, 4)
            out["overrideRate"] = round(self.overridden / self.issued, 4)
        return out


@dataclass
class RuleStats:
    rule: str
    counts: Counts
    top_reasons: list[OverrideReason] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = {"rule": self.rule, **self.counts.as_json()}
        if self.top_reasons:
            out["topOverrideReasons"] = [r.as_json() for r in self.top_reasons]
        return out


@dataclass
class ServiceStats:
    service: str
    counts: Counts = field(default_factory=Counts)
    rules: list[RuleStats] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, **self.counts.as_json(), "rules": [r.as_json() for r in self.rules]}


@dataclass
class FeedbackReport:
    since: datetime
    until: datetime
    totals: Counts
    services: list[ServiceStats]
    unmatched_feedback_cards: int

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "totals": self.totals.as_json(),
            "services": [s.as_json() for s in self.services],
            "unmatchedFeedbackCards": self.unmatched_feedback_cards,
        }


async def feedback_report(engine: AsyncEngine, since: datetime, until: datetime, top: int = 5) -> FeedbackReport:
    """The report for cards issued in ``[since, until)``; ``top`` override reasons per rule."""
    # Timestamps are stored in UTC (SQLite keeps them without an offset): compare in UTC.
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    issued = IssuedCardRow
    fb = FeedbackRow
    in_window = (issued.issued_at >= since, issued.issued_at < until)
    cards_in_window = select(issued.card_uuid).where(*in_window)
    ranked = (
        select(
            fb.card_uuid,
            fb.outcome,
            fb.override_system,
            fb.override_code,
            fb.override_display,
            func.row_number()
            .over(partition_by=fb.card_uuid, order_by=(fb.outcome_timestamp.desc(), fb.id.desc()))
            .label("rn"),
        )
        .where(fb.card_uuid.in_(cards_in_window))
        .subquery()
    )
    latest = select(ranked).where(ranked.c.rn == 1).subquery()

    counts_q = (
        select(
            issued.service_id,
            issued.rule_id,
            func.count(),
            func.sum(case((latest.c.outcome == "accepted", 1), else_=0)),
            func.sum(case((latest.c.outcome == "overridden", 1), else_=0)),
        )
        .select_from(issued)
        .outerjoin(latest, latest.c.card_uuid == issued.card_uuid)
        .where(*in_window)
        .group_by(issued.service_id, issued.rule_id)
        .order_by(issued.service_id, issued.rule_id)
    )
    reasons_q = (
        select(
            issued.service_id,
            issued.rule_id,
            latest.c.override_system,
            latest.c.override_code,
            func.max(latest.c.override_display),
            func.count(),
        )
        .select_from(issued)
        .join(latest, latest.c.card_uuid == issued.card_uuid)
        .where(*in_window, latest.c.outcome == "overridden")
        .group_by(issued.service_id, issued.rule_id, latest.c.override_system, latest.c.override_code)
    )
    unmatched_q = select(func.count(func.distinct(fb.card_uuid))).where(
        fb.received_at >= since,
        fb.received_at < until,
        fb.card_uuid.not_in(select(issued.card_uuid)),
    )
    async with engine.connect() as conn:
        count_rows = (await conn.execute(counts_q)).all()
        reason_rows = (await conn.execute(reasons_q)).all()
        unmatched = int((await conn.execute(unmatched_q)).scalar_one())

    reasons: dict[tuple[str, str], list[OverrideReason]] = {}
    for service_id, rule_id, system, code, display, n in reason_rows:
        label = display or code or NO_REASON
        reasons.setdefault((service_id, rule_id), []).append(OverrideReason(system, code, label, int(n)))
    services: dict[str, ServiceStats] = {}
    totals = Counts()
    for service_id, rule_id, n_issued, n_accepted, n_overridden in count_rows:
        counts = Counts(int(n_issued), int(n_accepted or 0), int(n_overridden or 0))
        ranked_reasons = sorted(reasons.get((service_id, rule_id), []), key=lambda r: (-r.cards, r.display))
        stats = services.setdefault(service_id, ServiceStats(service_id))
        stats.rules.append(RuleStats(rule_id, counts, ranked_reasons[:top]))
        stats.counts.add(counts)
        totals.add(counts)
    return FeedbackReport(since, until, totals, list(services.values()), unmatched)


def format_text(report: FeedbackReport) -> str:
    """A plain-text table for the command line."""
    lines = [
        f"Feedback on cards issued from {report.since.isoformat()} to {report.until.isoformat()}",
        "",
        f"{'service / rule':<40} {'issued':>7} {'accepted':>9} {'overridden':>11} {'accept %':>9}",
    ]

    def row(name: str, c: Counts) -> str:
        rate = f"{100 * c.accepted / c.issued:.1f}" if c.issued else "-"
        return f"{name:<40} {c.issued:>7} {c.accepted:>9} {c.overridden:>11} {rate:>9}"

    for svc in report.services:
        lines.append(row(svc.service, svc.counts))
        for rule in svc.rules:
            lines.append(row(f"  {rule.rule}", rule.counts))
            for reason in rule.top_reasons:
                code = f" [{reason.code}]" if reason.code else ""
                lines.append(f"      override: {reason.display}{code}: {reason.cards}")
    lines.append(row("all services", report.totals))
    if report.unmatched_feedback_cards:
        lines.append(f"\nFeedback for {report.unmatched_feedback_cards} card(s) not issued by this deployment")
    return "\n".join(lines)
