"""The topic pipeline, once: FHIR resources and a situation in, cards out.

``Topic.assess`` is the only way cards are made. The service's hook handler (``services.py``) and
the offline ``cds-fasciculation evaluate`` command (``review.py``) both call it, so what clinicians
review cannot drift from what EHRs get (a test compares the two on every golden fixture).
Steps: cheap scope check -> patient record -> rules for the hook's moment (engine, with the alert
discipline) -> cards from the catalogue. No HTTP, no JSON wire format, no clock: ``now`` is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.clinical.cards import Catalogue, RenderContext, Renderer
from cds_service.clinical.drafts import Draft
from cds_service.clinical.engine import evaluate, in_scope
from cds_service.clinical.memory import fingerprint, suggested_concepts
from cds_service.clinical.moments import HOOK_MOMENTS, Moment
from cds_service.clinical.record_builder import RecordBuilder
from cds_service.clinical.rules import RULES, Rule
from cds_service.clinical.rules.base import TRIGGERS
from cds_service.clinical.settings import TopicSettings
from cds_service.clinical.terminology import Terminology, terminology
from cds_service.protocol.models import Card, CdsResponse, Hook
from cds_service.registry import CardRecord, Snooze

# Resource types the patient record is built from.
RECORD_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "ServiceRequest",
    "Procedure",
    "DiagnosticReport",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationDispense",
    "Appointment",
)


def collect(groups: Iterable[Iterable[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The resources of the types the record reads, by type, each once per id (prefetch keys and
    Bundle entries may repeat a resource), in one pass (nine passes over thousands of
    Observations were measurable)."""
    found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in RECORD_TYPES}
    seen: dict[str, set[str]] = {kind: set() for kind in RECORD_TYPES}
    for group in groups:
        for res in group:
            kind = res.get("resourceType")
            if not isinstance(kind, str) or kind not in found:
                continue
            rid = res.get("id")
            if isinstance(rid, str):
                if rid in seen[kind]:
                    continue
                seen[kind].add(rid)
            found[kind].append(res)
    return {kind: resources for kind, resources in found.items() if resources}


@dataclass(frozen=True)
class Situation:
    """Everything about one assessment besides the FHIR resources: which hook, when, for whom,
    the draft orders (order hooks) and what data could not be had."""

    hook: Hook
    now: datetime
    patient_id: str
    user_ref: str | None = None
    drafts: Sequence[Draft] = ()
    selections: frozenset[str] = frozenset()
    missing: Sequence[str] = ()  # "key (problem)" of prefetch data that could not be had
    base_url: str = ""  # externally visible base of this service, for the evidence links
    snoozes: Sequence[Snooze] = ()  # override memory for this patient (issue 17)
    # The SMART app's launch URL for cards' smart links (docs/smart-app.md); None: no such links.
    smart_launch_url: str | None = None


@dataclass(frozen=True)
class Issued:
    """The rule and indicator behind one card."""

    rule: str
    indicator: str
    fingerprint: str = ""  # of the inputs the card was issued on (override memory)
    concepts: tuple[str, ...] = ()  # concepts the card suggested


@dataclass
class Assessment:
    """The cards of one assessment, each with the rule that produced it, and the rules of cards
    held back by override memory (``snoozed``) or deferred behind more specific cards."""

    cards: list[Card] = field(default_factory=list)
    issued: list[Issued] = field(default_factory=list)
    in_scope: bool = True  # False: no fasciculation trigger in the data (so no cards, by design)
    snoozed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)

    def response(self) -> CdsResponse:
        return CdsResponse(cards=self.cards)

    def records(self) -> list[CardRecord]:
        """What the issued-card registry keeps (no PHI)."""
        return [
            CardRecord(card.uuid or "", why.rule, why.indicator, why.fingerprint, why.concepts)
            for card, why in zip(self.cards, self.issued, strict=True)
        ]


class Topic:
    """The fasciculation topic, built once: terminology, card catalogue, renderer, record builder,
    rules and settings. ``assess`` is pure apart from the card and suggestion uuids it draws."""

    def __init__(
        self,
        settings: TopicSettings | None = None,
        rules: list[Rule] | None = None,
        catalogue: Catalogue | None = None,
        hook_moments: Mapping[Hook, Moment] = HOOK_MOMENTS,
        term: Terminology | None = None,
    ) -> None:
        self.settings = settings or TopicSettings()
        self.rules = rules if rules is not None else RULES
        self.t = term or terminology()
        self.catalogue = catalogue or Catalogue.load()
        self.renderer = Renderer(self.catalogue, self.t)
        self.builder = RecordBuilder(self.t, use_trigger_text=self.settings.trigger_free_text)
        self.lookbacks = self.settings.lookbacks
        self.hook_moments = dict(hook_moments)
        rule_ids = {r.id for r in self.rules}
        orphans = sorted(k.id for k in self.catalogue.kinds.values() if k.rule not in rule_ids)
        if orphans:
            raise ValueError(f"card kinds for unknown rules: {orphans}")

    def moment_of(self, hook: Hook) -> Moment:
        moment = self.hook_moments.get(hook)
        if moment is None:
            raise ValueError(f"the topic does not serve hook {hook!r}")
        return moment

    def in_scope(self, resources: dict[str, list[dict[str, Any]]], situation: Situation) -> bool:
        """Whether anything here (a Condition, an Observation, a draft order's reason) carries a
        trigger: without one the assessment is no card, so nothing else needs to be built or loaded."""
        return in_scope(self.t, resources, situation.drafts)

    def assess(
        self, resources: dict[str, list[dict[str, Any]]], situation: Situation, scoped: bool | None = None
    ) -> Assessment:
        """Cards for these resources (by type, see ``collect``) in this situation (``scoped``: the
        answer of ``in_scope`` for the same data, when the caller has it already)."""
        moment = self.moment_of(situation.hook)
        drafts = list(situation.drafts)
        if not (in_scope(self.t, resources, drafts) if scoped is None else scoped):
            return Assessment(in_scope=False)
        now = situation.now
        missing = list(situation.missing)
        rec = self.builder.build(situation.patient_id, now, resources, missing)
        result = evaluate(
            rec,
            moment,
            now,
            self.lookbacks,
            self.settings.card_budget,
            drafts,
            situation.selections,
            self.rules,
            situation.snoozes,
        )
        trigger_condition = next((f.ref for f in rec.has(*TRIGGERS) if f.source == "condition"), None)
        rc = RenderContext(
            patient_id=situation.patient_id,
            user_ref=situation.user_ref,
            now=now,
            base_url=situation.base_url,
            intent=self.settings.order_intent,
            reason_condition=trigger_condition,
            missing=missing,
            smart_launch_url=situation.smart_launch_url,
        )
        # Fingerprints before rendering: the budget and snooze lines are not inputs.
        issued = [Issued(h.rule, h.indicator, fingerprint(h), suggested_concepts(h)) for h in result.hits]
        cards = [self.renderer.render(hit, rc) for hit in result.hits]
        return Assessment(
            cards,
            issued,
            snoozed=[h.rule for h, _ in result.snoozed],
            deferred=[h.rule for h in result.deferred],
        )
