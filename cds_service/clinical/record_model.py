"""The patient record the rules read: only the facts they need, as plain frozen values.

This is the model half of the record; ``record_builder.py`` fills it from FHIR JSON. Rules import
only this module, so they never see FHIR shapes. Status semantics (what counts as pending, done,
active or history) are decided by the builder; the queries here only filter and sort.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Fact:
    """One clinical finding the rules can cite: what, where from, when, and how sure."""

    concept: str
    ref: str
    label: str
    when: datetime | None
    source: str  # "condition" | "observation"
    active: bool = True
    objective: bool = True
    note: str = ""
    # Clinical onset (Condition.onsetDateTime / onsetPeriod.start) only: a recorded or charted date
    # is not onset, so "sudden onset" rules read this, never ``when`` (issue 11 section 2).
    onset: datetime | None = None


@dataclass(frozen=True)
class LabResult:
    concept: str
    ref: str
    code: str | None
    label: str
    when: datetime | None
    value: float | None  # in the concept's canonical unit, None if not convertible / not numeric
    unit: str | None
    pending: bool
    interpretation: frozenset[str]
    low: float | None
    high: float | None
    text: str = ""  # valueString / valueCodeableConcept label
    # The value and unit exactly as the lab reported them, for "based on" (a clinician should read
    # 130 pmol/L, not its conversion); ``value``/``unit`` stay canonical for thresholds.
    raw_value: float | None = None
    raw_unit: str | None = None

    def flagged(self, *codes: str) -> bool:
        return bool(self.interpretation & set(codes))


@dataclass(frozen=True)
class Order:
    """A ServiceRequest, Procedure or DiagnosticReport that concerns one of our concepts."""

    concepts: frozenset[str]
    ref: str
    kind: str  # ServiceRequest | Procedure | DiagnosticReport
    status: str
    when: datetime | None
    label: str
    pending: bool
    done: bool
    conclusion: str = ""
    conclusion_codes: frozenset[str] = frozenset()
    interpretation: frozenset[str] = frozenset()
    conclusion_concepts: frozenset[str] = frozenset()  # concepts of DiagnosticReport.conclusionCode
    # DiagnosticReport.result references ("Observation/<id>"): a panel report counts as done only
    # when its results are filed (issue 17 section 2).
    results: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExamItem:
    """One part of a structured neurological examination (issue 19 section 2): which part
    (``strength``, ``reflexes``, ``plantar``, ``bulk`` or ``fasciculations``), whether it was
    recorded as normal, and the body site when one is given. Abnormal parts are also findings
    (``Fact``); this record exists so the benign end can tell "examined and normal" from "silent"."""

    aspect: str
    ref: str
    label: str
    when: datetime | None
    normal: bool
    site: str = ""


EXAM_ASPECTS = ("bulk", "strength", "reflexes", "plantar")  # seed 000: all normal in BFS


@dataclass(frozen=True)
class Medication:
    concepts: frozenset[str]
    ref: str
    label: str
    since: datetime | None
    status: str
    asserted: datetime | None = None  # MedicationStatement.dateAsserted: last confirmed as taken
    ended: datetime | None = None  # completed/stopped courses only: when the supply or period ended


@dataclass
class PatientRecord:
    patient_id: str
    now: datetime
    age: int | None = None
    sex: str | None = None
    facts: list[Fact] = field(default_factory=list)
    negated: list[Fact] = field(default_factory=list)
    labs: dict[str, list[LabResult]] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    meds: list[Medication] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # prefetch keys we could not get
    future_visits: list[datetime] = field(default_factory=list)  # booked follow-up (R14)
    exam: list[ExamItem] = field(default_factory=list)  # structured exam Observations (issue 19)
    # Issue 17: references of final Observations present (a panel report's results must be here),
    # orders cancelled/revoked (an accepted suggestion is remembered until its order is resulted or
    # cancelled) and the latest dispense per drug concept (an old "active" prescription is confirmed
    # current by a recent dispense).
    observation_refs: set[str] = field(default_factory=set)
    withdrawn: list[Order] = field(default_factory=list)
    dispensed: dict[str, datetime] = field(default_factory=dict)
    # Issue 19: completed or stopped courses with a known end (a corticosteroid taper that ended
    # recently is a drug cause, seed 002). Kept apart from ``meds`` so nothing reads them as current.
    ended_meds: list[Medication] = field(default_factory=list)

    # ---------------------------------------------------------------- queries used by rules

    def has(self, *concepts: str, within_days: int | None = None, active: bool = True) -> list[Fact]:
        """Positive facts for any of the concepts (active ones unless ``active=False``)."""
        wanted = set(concepts)
        cutoff = self.now - timedelta(days=within_days) if within_days is not None else None
        out = []
        for f in self.facts:
            if f.concept not in wanted or (active and not f.active):
                continue
            if cutoff is not None and (f.when is None or f.when < cutoff):
                continue
            out.append(f)
        return out

    def history(self, *concepts: str) -> list[Fact]:
        wanted = set(concepts)
        return [f for f in self.facts if f.concept in wanted and not f.active]

    def results(self, concept: str, within_days: int | None = None) -> list[LabResult]:
        """Final results, newest first, optionally within a look-back window."""
        cutoff = self.now - timedelta(days=within_days) if within_days is not None else None
        return [
            r
            for r in self.labs.get(concept, ())
            if not r.pending and (cutoff is None or (r.when is not None and r.when >= cutoff))
        ]

    def latest(self, concept: str, within_days: int | None = None) -> LabResult | None:
        found = self.results(concept, within_days)
        return found[0] if found else None

    def lab_pending(self, concept: str) -> LabResult | Order | None:
        for r in self.labs.get(concept, ()):
            if r.pending:
                return r
        return self.pending_order(concept)

    def pending_order(self, *concepts: str) -> Order | None:
        wanted = set(concepts)
        pending = [o for o in self.orders if o.pending and o.concepts & wanted]
        return max(pending, key=lambda o: o.when or self.now) if pending else None

    def done_orders(self, *concepts: str) -> list[Order]:
        wanted = set(concepts)
        return sorted(
            (o for o in self.orders if o.done and o.concepts & wanted),
            key=lambda o: o.when or datetime.min.replace(tzinfo=UTC),
            reverse=True,
        )

    def exam_latest(self, aspect: str, within_days: int) -> list[ExamItem]:
        """The exam items of ``aspect`` recorded on the latest day it was examined within the
        window (several muscles or reflexes are usually charted together)."""
        cutoff = self.now - timedelta(days=within_days)
        found = [e for e in self.exam if e.aspect == aspect and e.when is not None and e.when >= cutoff]
        if not found:
            return []
        day = max(e.when for e in found if e.when is not None).date()
        return [e for e in found if e.when is not None and e.when.date() == day]

    def meds_in(self, concepts: Iterable[str]) -> list[Medication]:
        wanted = set(concepts)
        return [m for m in self.meds if m.concepts & wanted]
