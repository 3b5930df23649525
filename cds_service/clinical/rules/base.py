"""What a rule is, what it returns, and the shared context it reads.

A rule is a pure function ``(record, ctx) -> Hit | None``: no I/O, no clock (``ctx.now``), no
knowledge of HTTP or JSON. Each is registered with its id, the hooks it runs on, and the seed file
and sentence it implements, so ``docs/clinical-rules.md`` can be generated from the code itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.clinical.record import Fact, LabResult, Medication, Order, PatientRecord

TRIGGERS = (
    "fasciculation",
    "benign_fasciculation_syndrome",
    "cramp_fasciculation_syndrome",
    "myokymia",
    "neuromyotonia",
)
UMN = ("hyperreflexia", "babinski_sign", "clonus", "spasticity", "hoffmann_sign")
BULBAR = ("dysphagia", "dysarthria")
EMG = ("emg", "ncs")
SEVERITY = {"critical": 0, "warning": 1, "info": 2}

# Default look-back windows in days (overridable by CDS_LAB_LOOKBACK_DAYS).
DEFAULT_LOOKBACKS: dict[str, int] = {
    "cmp": 90,
    "bmp": 90,
    "magnesium_serum": 90,
    "potassium": 90,
    "calcium": 90,
    "ck": 90,
    "cbc": 180,
    "tsh": 365,
    "vitamin_b12": 365,
    "folate": 365,
    "vitamin_b6": 365,
    "hba1c": 365,
    "fasting_glucose": 365,
    "spep": 365,
    "ferritin": 180,
    "gad7_total": 180,
    "phq9_total": 180,
    "abi_result": 730,
    "free_t4": 30,
    "ana": 90,
    "esr": 90,
    "crp": 90,
    "anca": 90,
    "methylmalonic_acid": 365,
}


@dataclass(frozen=True)
class Basis:
    """One line of 'based on': a fact the rule used, with its date and FHIR reference."""

    text: str
    when: datetime | None
    ref: str

    @staticmethod
    def of(item: Fact | LabResult | Order | Medication) -> Basis:
        if isinstance(item, LabResult):
            if item.raw_value is not None and item.raw_unit:
                value = f"{item.raw_value:g} {item.raw_unit}"  # as the lab reported it
            else:
                value = f"{item.value:g} {item.unit}" if item.value is not None and item.unit else item.text
            state = "pending" if item.pending else (value or "result")
            return Basis(f"{item.label}: {state}", item.when, item.ref)
        if isinstance(item, Order):
            return Basis(f"{item.label} ({item.kind}, {item.status})", item.when, item.ref)
        if isinstance(item, Medication):
            return Basis(f"{item.label} ({item.status})", item.since, item.ref)
        status = "" if item.active else " (history)"
        subj = "" if item.objective else " (patient-reported)"
        return Basis(f"{item.label}{status}{subj}", item.when, item.ref)


@dataclass
class Suggest:
    """An order the card offers: a concept from the terminology, with priority."""

    concept: str
    priority: str = "routine"
    recommended: bool = False
    label: str | None = None
    text_only: str | None = None  # ServiceRequest with code.text only (no verified code exists)
    code: str | None = None  # a specific emittable code of the concept instead of its primary one


@dataclass
class Hit:
    rule: str
    card: str  # card kind in cards/
    indicator: str
    basis: list[Basis] = field(default_factory=list)
    suggest: list[Suggest] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (draft reference, label) to remove

    def remove(self, drafts: list[Any]) -> None:
        """Offer to delete these drafts (those with an id: a delete action must name its target)."""
        self.delete += [(d.ref, d.label) for d in drafts if d.has_id]

    @property
    def rank(self) -> int:
        return SEVERITY[self.indicator]


@dataclass
class RuleContext:
    now: datetime
    hook: str
    lookbacks: dict[str, int]
    triggers: list[Fact]
    drafts: list[Any] = field(default_factory=list)  # draft orders in focus (order hooks)
    all_drafts: list[Any] = field(default_factory=list)  # the whole draft order set
    selections: frozenset[str] = frozenset()
    fired: dict[str, Hit] = field(default_factory=dict)  # hits of rules that ran earlier

    def lookback(self, concept: str) -> int:
        return self.lookbacks.get(concept, DEFAULT_LOOKBACKS.get(concept, 365))

    def done(self, rec: PatientRecord, concept: str) -> LabResult | None:
        return rec.latest(concept, self.lookback(concept))


RuleFn = Callable[[PatientRecord, RuleContext], Hit | None]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    hooks: tuple[str, ...]
    fn: RuleFn
    fires_when: str
    suppressed_when: str
    seeds: tuple[tuple[str, str], ...]  # (seed file, sentence)
    needs_trigger: bool = True


RULES: list[Rule] = []


def rule(
    rule_id: str,
    title: str,
    hooks: tuple[str, ...],
    fires_when: str,
    seeds: tuple[tuple[str, str], ...],
    suppressed_when: str = "-",
    needs_trigger: bool = True,
) -> Callable[[RuleFn], RuleFn]:
    """Register a rule; order of registration is evaluation order (later rules see earlier hits)."""

    def deco(fn: RuleFn) -> RuleFn:
        RULES.append(Rule(rule_id, title, hooks, fn, fires_when, suppressed_when, seeds, needs_trigger))
        return fn

    return deco


def fmt_date(when: datetime | None) -> str:
    return when.date().isoformat() if when else "date unknown"


def objective(facts: list[Fact]) -> list[Fact]:
    return [f for f in facts if f.objective]
