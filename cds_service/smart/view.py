"""The page's view model: what the clinician sees, computed from the same record the rules read.

Everything here is derived from ``PatientRecord`` (built by the service's own ``RecordBuilder``)
and the rules' own helpers (``test_status``, look-backs, the EMG patterns), so the page and the
cards cannot disagree about what is done, pending or missing. Values and units are shown as the
lab reported them (read back from the raw Observation); trends plot the record's normalised
values in the concept's canonical unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cds_service.clinical import emg as emg_report
from cds_service.clinical.engine import in_scope
from cds_service.clinical.moments import Moment
from cds_service.clinical.record_builder import REFLEX_CONCEPTS, RecordBuilder, label_of, parse_when
from cds_service.clinical.record_model import LabResult, Order, PatientRecord
from cds_service.clinical.rules.base import BULBAR, EMG, TRIGGERS, UMN, RuleContext
from cds_service.clinical.rules.management import CAUSE_CLASSES
from cds_service.clinical.rules.safety import latest_emg_report
from cds_service.clinical.rules.workup import ALWAYS, CORE, EXTENDED, test_status
from cds_service.clinical.settings import TopicSettings
from cds_service.clinical.terminology import Terminology, terminology

FIRST_TIER = (*CORE, *ALWAYS)
LABELS = {
    "diabetes_screen": "HbA1c or fasting glucose",
    "cbc": "Complete blood count",
    "cmp": "Comprehensive metabolic panel",
    "vitamin_b12": "Vitamin B12",
    "tsh": "TSH",
    "spep": "Serum protein electrophoresis",
    "magnesium_serum": "Magnesium",
    "ck": "Creatine kinase (CK)",
    "folate": "Folate",
    "vitamin_b6": "Vitamin B6",
    "ferritin": "Ferritin",
}
TREND_CONCEPTS = (
    ("ck", "CK"),
    ("tsh", "TSH"),
    ("vitamin_b12", "B12"),
    ("hba1c", "HbA1c"),
    ("magnesium_serum", "Mg"),
    ("potassium", "K"),
    ("ferritin", "Ferritin"),
)
# Where the lab reported no range: the thresholds the rules themselves use (workup.py).
RULE_BANDS: dict[str, tuple[float | None, float | None]] = {
    "ck": (None, 200.0),
    "tsh": (0.4, 4.5),
    "vitamin_b12": (200.0, None),
}
RED_FLAG_CONCEPTS = (
    "muscle_weakness",
    "muscle_atrophy",
    *UMN,
    *BULBAR,
    *sorted(REFLEX_CONCEPTS),
    "reflex_abnormal",
)
OVERDOSE_CLASS = "anticholinergics_overdose_risk"
CLASS_LABELS = {
    "diuretics": "diuretic",
    "corticosteroids_systemic": "systemic corticosteroid",
    "estrogens": "estrogen",
    "penicillins": "penicillin",
    OVERDOSE_CLASS: "anticholinergic (in overdose)",
}
_SENTENCE = re.compile(r"(?<=[.;!?])\s+")
# Strength grades have no verified code in the catalogue, so the rules cannot read them; the page
# finds them by the text of the Observation's code and shows them (0-5, MRC scale).
_MRC = re.compile(r"\bMRC\b|muscle strength|strength grade|power grade", re.I)
_GRADE = re.compile(r"^\s*([0-5](?:\.\d)?)\s*(?:/\s*5)?\s*[+-]?\s*$")
RESULT_STATUS = frozenset({"final", "amended", "corrected"})


def fmt_day(when: datetime | None) -> str:
    return when.date().isoformat() if when else "date unknown"


@dataclass
class Header:
    patient_id: str
    name: str
    age: str
    sex: str
    onset: str
    body_site: str
    sources: list[str]


@dataclass
class RedFlag:
    finding: str
    kind: str
    date: str
    source: str
    how: str  # "objective, active" | "patient-reported" | "history"


@dataclass
class ChecklistRow:
    test: str
    tier: str  # first-tier | conditional
    status: str  # done | out of date | pending | missing | not indicated
    value: str
    range: str
    date: str
    lookback: str
    note: str = ""


@dataclass
class TrendPoint:
    when: datetime
    value: float
    reported: str
    flag: str


@dataclass
class Trend:
    concept: str
    label: str
    unit: str
    points: list[TrendPoint]
    low: float | None
    high: float | None
    band_source: str


@dataclass
class EmgItem:
    label: str
    kind: str
    status: str
    date: str
    source: str
    reading: str = ""  # the classifier's class label (clinical/emg.py), for a done report
    sentence: str = ""  # the sentence of the conclusion that the class was read from
    emg_class: str = ""  # the classifier's class id (emg.CLASSES)


@dataclass
class MedItem:
    label: str
    why: str
    status: str
    since: str
    source: str


@dataclass
class OrderItem:
    label: str
    kind: str
    status: str
    date: str
    source: str


@dataclass
class PageModel:
    header: Header
    in_scope: bool
    red_flags: list[RedFlag] = field(default_factory=list)
    strength: list[RedFlag] = field(default_factory=list)  # MRC grades (reduced ones are deficits)
    absent_findings: list[RedFlag] = field(default_factory=list)
    checklist: list[ChecklistRow] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    emg: list[EmgItem] = field(default_factory=list)
    emg_summary: str = ""
    meds: list[MedItem] = field(default_factory=list)
    pending_orders: list[OrderItem] = field(default_factory=list)
    follow_up: list[str] = field(default_factory=list)
    follow_up_due: str = ""
    cards: list[dict[str, Any]] = field(default_factory=list)
    missing_data: list[str] = field(default_factory=list)
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = ""
    focus: str | None = None


def _name(patient: dict[str, Any] | None) -> str:
    if not patient:
        return "Name not available"
    for n in patient.get("name") or ():
        if not isinstance(n, dict):
            continue
        if isinstance(n.get("text"), str) and n["text"].strip():
            return str(n["text"]).strip()
        given = " ".join(g for g in n.get("given") or () if isinstance(g, str))
        family = n.get("family") if isinstance(n.get("family"), str) else ""
        full = f"{given} {family}".strip()
        if full:
            return full
    return "Name not recorded"


def _quantity(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{q['value']:g} {unit}".strip() if isinstance(q["value"], int | float) else f"{q['value']} {unit}"


def reported_value(raw: dict[str, Any] | None) -> str:
    """The value exactly as the lab reported it (number and unit, or text)."""
    if not raw:
        return ""
    for key in ("valueQuantity",):
        if isinstance(raw.get(key), dict):
            return _quantity(raw[key])
    if isinstance(raw.get("valueInteger"), int):
        return str(raw["valueInteger"])
    if isinstance(raw.get("valueString"), str):
        return str(raw["valueString"])
    if isinstance(raw.get("valueCodeableConcept"), dict):
        return label_of(raw["valueCodeableConcept"], "")
    return ""


def reported_range(raw: dict[str, Any] | None) -> str:
    if not raw:
        return ""
    for rr in raw.get("referenceRange") or ():
        if not isinstance(rr, dict):
            continue
        if isinstance(rr.get("text"), str) and rr["text"]:
            return str(rr["text"])
        low, high = _quantity(rr.get("low")), _quantity(rr.get("high"))
        if low and high:
            return f"{low} to {high}"
        if low:
            return f"≥ {low}"
        if high:
            return f"≤ {high}"
    return ""


def _flag(r: LabResult) -> str:
    if r.interpretation & {"H", "HH", "HU"}:
        return "high"
    if r.interpretation & {"L", "LL", "LU"}:
        return "low"
    if r.value is not None:
        if r.high is not None and r.value > r.high:
            return "high"
        if r.low is not None and r.value < r.low:
            return "low"
    return ""


class ViewBuilder:
    """Builds the page model; one per process (terminology and builder are shared)."""

    def __init__(self, settings: TopicSettings | None = None) -> None:
        settings = settings or TopicSettings()  # the topic's own settings: same look-backs as the rules
        self.t: Terminology = terminology()
        self.builder = RecordBuilder(self.t, use_trigger_text=settings.trigger_free_text)
        self.lookbacks = settings.lookbacks

    def build(
        self,
        resources: dict[str, list[dict[str, Any]]],
        patient_id: str,
        now: datetime,
        cards: list[dict[str, Any]],
        missing: list[str] | None = None,
        source: str = "",
        focus: str | None = None,
    ) -> PageModel:
        raw = {f"{r.get('resourceType')}/{r.get('id', '?')}": r for rs in resources.values() for r in rs}
        rec = self.builder.build(patient_id, now, resources, missing or [])
        patient = next((p for p in resources.get("Patient", ()) if p.get("id") == patient_id), None)
        triggers = rec.has(*TRIGGERS)
        page = PageModel(
            self._header(rec, patient, triggers, raw),
            in_scope(self.t, resources),
            cards=cards,
            missing_data=list(missing or []),
            generated=now,
            source=source,
            focus=focus,
        )
        if not page.in_scope:
            return page
        ctx = RuleContext(now, Moment.CHART, self.lookbacks, triggers)
        page.red_flags = [self._flag_row(f) for c in RED_FLAG_CONCEPTS for f in rec.facts if f.concept == c]
        page.strength = mrc_grades(resources.get("Observation", []))
        page.absent_findings = [self._flag_row(f) for f in rec.negated if f.concept in RED_FLAG_CONCEPTS]
        page.checklist = self._checklist(rec, ctx, raw)
        page.trends = self._trends(rec, raw)
        page.emg, page.emg_summary = self._emg(rec)
        page.meds = self._meds(rec)
        page.pending_orders = [
            OrderItem(o.label, o.kind, o.status, fmt_day(o.when), o.ref)
            for o in sorted(rec.orders, key=lambda o: o.when or now, reverse=True)
            if o.pending
        ]
        page.follow_up = [fmt_day(w) for w in sorted(rec.future_visits)]
        due = [
            c
            for c in cards
            if any(str(link.get("url", "")).endswith("/evidence/follow-up") for link in c.get("links") or ())
        ]
        page.follow_up_due = str(due[0]["summary"]) if due else ""
        return page

    # ---------------------------------------------------------------- sections

    def _header(
        self, rec: PatientRecord, patient: dict[str, Any] | None, triggers: list[Any], raw: dict[str, Any]
    ) -> Header:
        dated = [f.when for f in triggers if f.when is not None]
        sites: list[str] = []
        for f in triggers:
            res = raw.get(f.ref) or {}
            for site in res.get("bodySite") or ():
                text = label_of(site, "")
                if text and text not in sites:
                    sites.append(text)
        return Header(
            rec.patient_id,
            _name(patient),
            f"{rec.age} years" if rec.age is not None else "age unknown",
            rec.sex or "sex not recorded",
            fmt_day(min(dated)) if dated else ("not dated" if triggers else "no fasciculation recorded"),
            ", ".join(sites) or "not recorded",
            sorted({f.ref for f in triggers}),
        )

    def _flag_row(self, f: Any) -> RedFlag:
        kind = (
            self.t.concepts[f.concept].label if f.concept in self.t.concepts else f.concept.replace("_", " ")
        )
        how = ("objective" if f.objective else "patient-reported") + (", active" if f.active else ", history")
        return RedFlag(f.label, kind, fmt_day(f.when), f.ref, how)

    def _checklist(self, rec: PatientRecord, ctx: RuleContext, raw: dict[str, Any]) -> list[ChecklistRow]:
        weakness = bool(rec.has("muscle_weakness"))
        rls = bool(rec.has("restless_legs"))
        rows = [self._row(rec, ctx, raw, t, "first-tier", True, "") for t in FIRST_TIER]
        rows += [
            self._row(rec, ctx, raw, t, "conditional", weakness, "with weakness recorded") for t in EXTENDED
        ]
        rows.append(self._row(rec, ctx, raw, "ferritin", "conditional", rls, "with restless legs recorded"))
        return rows

    def _row(
        self,
        rec: PatientRecord,
        ctx: RuleContext,
        raw: dict[str, Any],
        test: str,
        tier: str,
        indicated: bool,
        when_text: str,
    ) -> ChecklistRow:
        concepts = ("hba1c", "fasting_glucose") if test == "diabetes_screen" else (test,)
        if test == "cmp":
            concepts = ("cmp", "bmp")
        lookback = f"{ctx.lookback(concepts[0])} days"
        state, item = test_status(rec, ctx, test)
        latest_ever = next(
            iter(
                sorted(
                    (r for c in concepts for r in rec.results(c)),
                    key=lambda r: r.when or rec.now,
                    reverse=True,
                )
            ),
            None,
        )
        shown = item if isinstance(item, LabResult) and not item.pending else latest_ever
        note = ""
        if state == "missing" and latest_ever is not None:
            state = "out of date"
        if state == "pending":
            what = item.label if isinstance(item, LabResult | Order) else "order"
            note = f"pending: {what} ({fmt_day(item.when if isinstance(item, LabResult | Order) else None)})"
        if not indicated:
            state = "not indicated"
            note = f"indicated {when_text}"
        res = raw.get(shown.ref) if shown is not None else None
        return ChecklistRow(
            LABELS.get(test, test),
            tier,
            state,
            (reported_value(res) or "result on file") if shown is not None else "",
            reported_range(res),
            fmt_day(shown.when) if shown is not None else "",
            lookback,
            note,
        )

    def _trends(self, rec: PatientRecord, raw: dict[str, Any]) -> list[Trend]:
        out = []
        for concept, label in TREND_CONCEPTS:
            results = [r for r in rec.results(concept) if r.value is not None and r.when is not None]
            results.sort(key=lambda r: r.when or rec.now)
            unit = next((r.unit for r in results if r.unit), "") or ""
            latest = results[-1] if results else None
            low, high, source = None, None, "no reference range reported"
            if latest is not None and (latest.low is not None or latest.high is not None):
                low, high, source = latest.low, latest.high, "reference range reported by the lab"
            elif concept in RULE_BANDS:
                low, high = RULE_BANDS[concept]
                source = "threshold used by the rules (no range reported)"
            points = [
                TrendPoint(r.when, r.value, reported_value(raw.get(r.ref)), _flag(r))
                for r in results
                if r.when is not None and r.value is not None
            ]
            out.append(Trend(concept, label, unit, points, low, high, source))
        return out

    def _emg(self, rec: PatientRecord) -> tuple[list[EmgItem], str]:
        items = []
        for o in sorted(
            (o for o in rec.orders if o.concepts & set(EMG)), key=lambda o: o.when or rec.now, reverse=True
        ):
            item = EmgItem(o.label, o.kind, o.status, fmt_day(o.when), o.ref)
            if o.kind == "DiagnosticReport" and o.done:
                item.emg_class, item.sentence = emg_reading(o)
                item.reading = emg_report.LABEL[item.emg_class]
            items.append(item)
        latest = latest_emg_report(rec)  # the report the rules (R09, R11, R20, R21) judge
        cls = emg_report.classify(latest) if latest is not None else None
        if not items:
            summary = "No EMG/NCS ordered, performed or reported."
        elif cls == emg_report.NORMAL:
            summary = "Latest report: normal."
        elif cls == emg_report.NEUROGENIC:
            summary = (
                "Latest report: minor chronic neurogenic change only (can occur in benign fasciculation; "
                "not read as normal)."
            )
        elif cls == emg_report.INDETERMINATE:
            summary = "Latest report: not classifiable as normal (read it; never taken as a benign picture)."
        elif cls is not None:
            summary = f"Abnormal: latest report shows {emg_report.LABEL[cls]} (not a benign picture)."
        elif rec.pending_order(*EMG) is not None:
            summary = "EMG/NCS ordered, not yet reported."
        else:
            summary = "EMG/NCS on file without a readable report."
        return items, summary

    def _meds(self, rec: PatientRecord) -> list[MedItem]:
        out = []
        for cls in (*CAUSE_CLASSES, OVERDOSE_CLASS):
            members = set(self.t.drug_classes.get(cls, ()))
            for m in rec.meds:
                if m.concepts & members:
                    out.append(
                        MedItem(m.label, CLASS_LABELS.get(cls, cls), m.status, fmt_day(m.since), m.ref)
                    )
        return out


def emg_reading(report: Order) -> tuple[str, str]:
    """(class, the sentence it was read from) of an EMG/NCS report, by the one classifier the rules
    use (``clinical/emg.py``, negation-aware). The class is the whole report's; the sentence is the
    first one that alone reads as that class (a coded conclusion is named as such)."""
    cls = emg_report.classify(report)
    sentences = [s.strip() for s in _SENTENCE.split(report.conclusion.strip()) if s.strip()]
    sentence = next((s for s in sentences if emg_report.classify_text(s) == cls), "")
    if not sentence:
        coded = emg_report.NORMAL_CODE in report.conclusion_codes or any(
            emg_report.CONCEPT_CLASS.get(c) == cls for c in report.conclusion_concepts
        )
        if coded:
            sentence = "(coded conclusion)"
        elif sentences:
            sentence = sentences[0]
    return cls, sentence


def _grade(o: dict[str, Any]) -> float | None:
    value = o.get("valueInteger")
    if value is None and isinstance(o.get("valueQuantity"), dict):
        value = o["valueQuantity"].get("value")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if 0 <= value <= 5 else None
    if isinstance(o.get("valueString"), str) and (m := _GRADE.match(o["valueString"])):
        return float(m.group(1))
    return None


def mrc_grades(observations: list[dict[str, Any]]) -> list[RedFlag]:
    """Strength graded on the MRC scale (0-5), newest first; below 5 is an objective deficit."""
    out = []
    for o in observations:
        label = label_of(o.get("code"), "")
        if o.get("status") not in RESULT_STATUS or not _MRC.search(label):
            continue
        grade = _grade(o)
        if grade is None:
            continue
        sites = label_of(o["bodySite"], "") if isinstance(o.get("bodySite"), dict) else ""
        when = parse_when(o.get("effectiveDateTime")) or parse_when(o.get("issued"))
        out.append(
            RedFlag(
                finding=f"{label}{' (' + sites + ')' if sites else ''}: {grade:g}/5",
                kind="MRC strength grade",
                date=fmt_day(when),
                source=f"Observation/{o.get('id', '?')}",
                how="objective, reduced" if grade < 5 else "objective, normal",
            )
        )
    return sorted(out, key=lambda r: r.date, reverse=True)
