"""Runs the rules for one hook call and applies the alert discipline.

Rules run in rank order, on the moments they declare; a rule whose ``suppressed_by`` rules fired
is not run. Discipline, in order: (1) a hit whose rule ``folds_into`` another is merged into that
card when it fired at the declared indicator (CK above 1000 U/L into the red-flag card); (2) when
any card is critical, rules that ``yield_to_critical`` (reassurance, routine therapy, repeat-EMG
advice) are dropped; (3) a suggestion appears once per response, in the most severe card that
offers it; (4) cards are ranked by severity, then by rule rank, and cut to the card budget, the last
kept card saying what was withheld. Every policy is read from the rule declarations: no rule id
is written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.clinical.drafts import Draft, focus
from cds_service.clinical.moments import Moment
from cds_service.clinical.record_model import Fact, PatientRecord
from cds_service.clinical.rules import RULES, Hit, Rule, RuleContext
from cds_service.clinical.rules.base import TRIGGERS
from cds_service.clinical.terminology import Terminology

SCOPE = frozenset(TRIGGERS) | {"guillain_barre"}


def in_scope(
    term: Terminology, resources: dict[str, list[dict[str, Any]]], drafts: Iterable[Draft] = ()
) -> bool:
    """The cheap first check: does any Condition or Observation (or a draft order's reason) carry a
    trigger (or GBS) code?

    Most patients an EHR sends have no fasciculation; for them nothing else is built.
    """
    if any(d.reason_concepts & SCOPE for d in drafts):
        return True
    for kind in ("Condition", "Observation"):
        for res in resources.get(kind, ()):
            if term.match_cc(res.get("code")) & SCOPE:
                return True
            if (
                kind == "Observation"
                and term.match_cc(res.get("valueCodeableConcept"), use_text=False) & SCOPE
            ):
                return True
    return False


@dataclass
class Evaluation:
    hits: list[Hit]
    withheld: list[Hit]


def evaluate(
    rec: PatientRecord,
    moment: Moment,
    now: datetime,
    lookbacks: dict[str, int],
    budget: int,
    drafts: Iterable[Draft] = (),
    selections: frozenset[str] = frozenset(),
    rules: list[Rule] = RULES,
) -> Evaluation:
    all_drafts = list(drafts)
    triggers = rec.has(*TRIGGERS) + [
        Fact(c, d.ref, d.label, now, "draft")
        for d in all_drafts
        for c in sorted(d.reason_concepts & set(TRIGGERS))
    ]
    ctx = RuleContext(
        now, moment, lookbacks, triggers, focus(all_drafts, moment, selections), all_drafts, selections
    )
    hits: list[Hit] = []
    for r in rules:
        if moment not in r.moments or (r.needs_trigger and not triggers):
            continue
        if any(other in ctx.fired for other in r.suppressed_by):
            continue
        hit = r.fn(rec, ctx)
        if hit is not None:
            ctx.fired[r.id] = hit
            hits.append(hit)
    return discipline(hits, budget, rules)


def _offered_elsewhere(concept: str, other: Hit, rules: list[Rule]) -> str:
    """Say where a suggestion this card would also make went (a card's count of missing tests
    must match its buttons, or the clinician looks for the one that is missing)."""
    from cds_service.clinical.terminology import terminology

    label = terminology().concept(concept).label
    title = next((r.title for r in rules if r.id == other.rule), other.rule)
    return f"{label} is offered on the {other.rule} card ({title}), not here."


def discipline(hits: list[Hit], budget: int, rules: list[Rule] = RULES) -> Evaluation:
    declared = {r.id: r for r in rules}
    by_rule = {h.rule: h for h in hits}
    for r in rules:
        fold = r.folds_into
        hit = by_rule.get(r.id)
        target = by_rule.get(fold.into) if fold is not None else None
        if fold is None or hit is None or target is None or target.indicator != fold.indicator:
            continue
        target.lines.append(fold.line.format_map(hit.values))
        target.basis += hit.basis
        hits.remove(hit)
    if any(h.indicator == "critical" for h in hits):
        hits = [h for h in hits if not (h.rule in declared and declared[h.rule].yields_to_critical)]
    order = {r.id: r.rank for r in rules}
    hits.sort(key=lambda h: (h.rank, order.get(h.rule, 1_000_000)))
    offered: dict[tuple[str, str | None, str | None], Hit] = {}
    for h in hits:
        kept = []
        for s in h.suggest:
            key = (s.concept, s.code, s.text_only)
            if key not in offered:
                offered[key] = h
                kept.append(s)
            elif offered[key] is not h:
                h.lines.append(_offered_elsewhere(s.concept, offered[key], rules))
        h.suggest = kept
    kept_hits, withheld = hits[:budget], hits[budget:]
    if withheld and kept_hits:
        names = ", ".join(h.rule for h in withheld)
        kept_hits[-1].lines.append(f"{len(withheld)} further finding(s) not shown (card limit): {names}.")
    return Evaluation(kept_hits, withheld)
