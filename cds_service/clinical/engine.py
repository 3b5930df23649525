"""Runs the rules for one hook call and applies the alert discipline.

Discipline, in order: (1) CK above 1000 U/L (R05a) is folded into the red-flag card when R01 fires;
(2) critical pathways suppress reassurance and routine-therapy cards; (3) a suggestion appears once
per response, in the most severe card that offers it; (4) cards are ranked by severity, then by rule
order, and cut to the card budget, the last kept card saying what was withheld.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.clinical.drafts import Draft, focus
from cds_service.clinical.record import Fact, PatientRecord
from cds_service.clinical.rules import RULES, Hit, RuleContext
from cds_service.clinical.rules.base import TRIGGERS
from cds_service.clinical.terminology import Terminology

SCOPE = frozenset(TRIGGERS) | {"guillain_barre"}
SUPPRESSED_BY_CRITICAL = frozenset({"R20", "R11", "R09"})
# Display order among cards of equal severity: the GBS and stroke pathways come before the motor
# red flag (they need admission / emergent imaging), then rules in registration order.
FIRST = ("R03", "R02", "R01")
RULE_ORDER = {rid: i for i, rid in enumerate([*FIRST, *(r.id for r in RULES if r.id not in FIRST)])}


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
    hook: str,
    now: datetime,
    lookbacks: dict[str, int],
    budget: int,
    drafts: Iterable[Draft] = (),
    selections: frozenset[str] = frozenset(),
) -> Evaluation:
    all_drafts = list(drafts)
    triggers = rec.has(*TRIGGERS) + [
        Fact(c, d.ref, d.label, now, "draft")
        for d in all_drafts
        for c in sorted(d.reason_concepts & set(TRIGGERS))
    ]
    ctx = RuleContext(
        now, hook, lookbacks, triggers, focus(all_drafts, hook, selections), all_drafts, selections
    )
    hits: list[Hit] = []
    for r in RULES:
        if hook not in r.hooks or (r.needs_trigger and not triggers):
            continue
        hit = r.fn(rec, ctx)
        if hit is not None:
            ctx.fired[r.id] = hit
            hits.append(hit)
    return discipline(hits, budget)


def _offered_elsewhere(concept: str, other: Hit) -> str:
    """Say where a suggestion this card would also make went (a card's count of missing tests
    must match its buttons, or the clinician looks for the one that is missing)."""
    from cds_service.clinical.terminology import terminology

    label = terminology().concept(concept).label
    title = next((r.title for r in RULES if r.id == other.rule), other.rule)
    return f"{label} is offered on the {other.rule} card ({title}), not here."


def discipline(hits: list[Hit], budget: int) -> Evaluation:
    by_rule = {h.rule: h for h in hits}
    red = by_rule.get("R01")
    ck = by_rule.get("R05a")
    if red is not None and ck is not None and red.indicator == "critical":
        red.lines.append(
            f"CK {ck.values['value']} U/L, above 1000: a myopathic process, not consistent with BFS."
        )
        red.basis += ck.basis
        hits.remove(ck)
    if any(h.indicator == "critical" for h in hits):
        hits = [h for h in hits if h.rule not in SUPPRESSED_BY_CRITICAL]
    hits.sort(key=lambda h: (h.rank, RULE_ORDER.get(h.rule, 99)))
    offered: dict[tuple[str, str | None, str | None], Hit] = {}
    for h in hits:
        kept = []
        for s in h.suggest:
            key = (s.concept, s.code, s.text_only)
            if key not in offered:
                offered[key] = h
                kept.append(s)
            elif offered[key] is not h:
                h.lines.append(_offered_elsewhere(s.concept, offered[key]))
        h.suggest = kept
    kept_hits, withheld = hits[:budget], hits[budget:]
    if withheld and kept_hits:
        names = ", ".join(h.rule for h in withheld)
        kept_hits[-1].lines.append(f"{len(withheld)} further finding(s) not shown (card limit): {names}.")
    return Evaluation(kept_hits, withheld)
