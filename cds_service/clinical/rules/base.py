"""What a rule is, what it returns, and the shared context it reads.

A rule is a pure function ``(record, ctx) -> Hit | None``: no I/O, no clock (``ctx.now``), no
knowledge of HTTP or JSON. Everything else about it is declared once, on its ``@rule``: its id,
the moments it serves (chart, selecting, signing orders), its rank (evaluation order, and display
order among cards of equal severity), its suppression (``suppressed_by`` rules that fired earlier,
``yields_to_critical``, ``folds_into`` another card) and the seed sentences it implements, so the
engine holds no rule ids and ``docs/clinical-rules.md`` is generated from the code itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.clinical.moments import Moment
from cds_service.clinical.record_model import Fact, LabResult, Medication, Order, PatientRecord

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
    moment: Moment
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
class Fold:
    """Merge a rule's card into the card of rule ``into`` when that one fired at ``indicator``:
    ``line`` (filled from the folded hit's values) is added to it, with the folded hit's basis."""

    into: str
    line: str
    indicator: str = "critical"


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    moments: tuple[Moment, ...]
    fn: RuleFn
    fires_when: str
    suppressed_when: str
    seeds: tuple[tuple[str, str], ...]  # (seed file, sentence)
    rank: int  # evaluation order; display order among cards of equal severity
    needs_trigger: bool = True
    suppressed_by: tuple[str, ...] = ()  # not run when any of these (lower-ranked) rules fired
    yields_to_critical: bool = False  # dropped when any card of the response is critical
    folds_into: Fold | None = None


class RuleBook:
    """A set of rules; ``ordered()`` gives them by rank after checking every declaration.

    The topic's rules live in ``BOOK`` (filled by ``@rule`` at import); a test can take
    ``BOOK.extended()`` and add a rule of its own without touching the topic's set.
    """

    def __init__(self, rules: tuple[Rule, ...] = ()) -> None:
        self._rules: dict[str, Rule] = {}
        for r in rules:
            self.add(r)

    def add(self, r: Rule) -> None:
        if r.id in self._rules:
            raise ValueError(f"rule {r.id} declared twice")
        clash = next((o.id for o in self._rules.values() if o.rank == r.rank), None)
        if clash is not None:
            raise ValueError(f"rules {clash} and {r.id} share rank {r.rank}; ranks order rules, so must differ")
        if not r.moments:
            raise ValueError(f"rule {r.id} serves no moment")
        self._rules[r.id] = r

    def rule(
        self,
        rule_id: str,
        title: str,
        moments: tuple[Moment, ...],
        fires_when: str,
        seeds: tuple[tuple[str, str], ...],
        suppressed_when: str = "-",
        needs_trigger: bool = True,
        *,
        rank: int,
        suppressed_by: tuple[str, ...] = (),
        yields_to_critical: bool = False,
        folds_into: Fold | None = None,
    ) -> Callable[[RuleFn], RuleFn]:
        """Declare a rule (the decorator ``@rule``)."""

        def deco(fn: RuleFn) -> RuleFn:
            self.add(
                Rule(
                    rule_id, title, moments, fn, fires_when, suppressed_when, seeds, rank, needs_trigger,
                    suppressed_by, yields_to_critical, folds_into,
                )
            )  # fmt: skip
            return fn

        return deco

    def extended(self) -> RuleBook:
        """A copy to add rules to (tests, experiments); this book stays as it is."""
        return RuleBook(tuple(self._rules.values()))

    def ordered(self) -> list[Rule]:
        """The rules by rank, refusing a declaration that names an unknown rule or one that is
        not evaluated earlier (a rule can only see hits of rules ranked before it)."""
        rules = sorted(self._rules.values(), key=lambda r: r.rank)
        for r in rules:
            named = [*r.suppressed_by, *([r.folds_into.into] if r.folds_into else [])]
            for other in named:
                if other not in self._rules:
                    raise ValueError(f"rule {r.id} names unknown rule {other}")
            for other in r.suppressed_by:
                if self._rules[other].rank >= r.rank:
                    raise ValueError(f"rule {r.id} is suppressed by {other}, which must rank before it")
        return rules


BOOK = RuleBook()
rule = BOOK.rule


def fmt_date(when: datetime | None) -> str:
    return when.date().isoformat() if when else "date unknown"


def objective(facts: list[Fact]) -> list[Fact]:
    return [f for f in facts if f.objective]
