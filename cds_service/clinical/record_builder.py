"""Builds the patient record (``record_model.py``) from FHIR JSON: only the facts the rules need,
normalised once.

Raw FHIR JSON is filtered by code *before* anything is built (a patient with 2,000 unrelated
Observations costs a dictionary lookup per Observation, not a model). Status semantics:
Observation final/amended/corrected = result, registered/preliminary = pending, entered-in-error
and cancelled ignored; Condition refuted/entered-in-error never count, resolved/inactive/remission
are history; ServiceRequest draft/active/on-hold = pending, completed = done.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds_service.clinical.record_model import ExamItem, Fact, LabResult, Medication, Order, PatientRecord
from cds_service.clinical.terminology import LOINC, Terminology
from cds_service.clinical.units import normalise, normalise_range
from cds_service.jsonshape import items, obj, string

RESULT = frozenset({"final", "amended", "corrected"})
# Concept categories read as results (value, date, status): lab tests, and questionnaire scores
# fetched by category (issue 17: PHQ-2) rather than by code.
RESULT_CATEGORIES = frozenset({"lab", "survey"})
PENDING_OBS = frozenset({"registered", "preliminary"})
ORDER_PENDING = frozenset({"draft", "active", "on-hold"})
PROC_PENDING = frozenset({"preparation", "in-progress", "on-hold"})
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
DROP_VERIFICATION = frozenset({"refuted", "entered-in-error"})
NEGATIVE_TEXT = re.compile(r"\b(absent|negative|not present|none|no)\b", re.IGNORECASE)
ABSENT_CODES = frozenset({"2667000", "260385009"})  # Absent; Negative (qualifier values)
MRC_GRADE = re.compile(r"^\s*([0-5])\s*([+-])?\s*(/\s*5)?\s*$")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?")


def age_on(birth_date: Any, now: datetime) -> int | None:
    """Whole years from a FHIR ``birthDate`` to ``now`` (a partial date counts from its first
    day); None when absent or unreadable. Shared by the record and the burden report, so the
    report's paediatric exclusion is the rules' own notion of age."""
    born = parse_when(birth_date)
    if born is None:
        return None
    return max(now.year - born.year - ((now.month, now.day) < (born.month, born.day)), 0)


def parse_when(value: Any) -> datetime | None:
    """FHIR date/dateTime/instant -> aware UTC datetime (partial dates at their first instant)."""
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    text = value.strip()
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _code(cc: Any, system: str | None = None) -> str | None:
    if isinstance(cc, dict):
        for c in items(cc.get("coding")):
            if (system is None or c.get("system") == system) and c.get("code"):
                return str(c["code"])
    return None


def _codes(cc: Any) -> set[str]:
    if not isinstance(cc, dict):
        return set()
    return {str(c["code"]) for c in items(cc.get("coding")) if c.get("code")}


def label_of(cc: Any, fallback: str) -> str:
    """A human label for a CodeableConcept: its text, else the first display, else the code."""
    if isinstance(cc, dict):
        if isinstance(cc.get("text"), str) and cc["text"]:
            return str(cc["text"])
        for c in items(cc.get("coding")):
            if c.get("display") or c.get("code"):
                return str(c.get("display") or c.get("code"))
    return fallback


REFLEX_CONCEPTS = frozenset({"hyperreflexia", "babinski_sign", "areflexia", "hyporeflexia", "clonus"})
_REFLEX_TEXT = (
    (re.compile(r"hyperreflex|brisk reflex|increased reflex", re.I), "hyperreflexia"),
    (re.compile(r"babinski|extensor plantar|upgoing toe", re.I), "babinski_sign"),
    (re.compile(r"clonus", re.I), "clonus"),
    (re.compile(r"areflex|absent reflex", re.I), "areflexia"),
    (re.compile(r"hyporeflex|reduced reflex|diminished reflex", re.I), "hyporeflexia"),
)


# Structured exam parts recognised by the flowsheet text of Observation.code (docs/exam-mapping.md).
EXAM_TEXT_CONCEPTS = frozenset({"reflex_exam", "plantar_exam", "bulk_exam"})
REFLEX_FINDINGS = frozenset({"areflexia", "hyporeflexia", "hyperreflexia", "clonus"})
EXAM_FINDINGS = frozenset({"muscle_strength_grade", "fasciculation", "babinski_sign"})
NORMAL_CODES = frozenset({"17621005"})  # SNOMED Normal (qualifier value)
# Reflex grades (NINDS / Mayo scale): 0 absent, 1+ reduced, 2+ normal, 3+ brisk, 4+ clonus.
REFLEX_GRADE = re.compile(r"^\s*([0-4])\s*\+?\s*(?:/\s*4)?\s*$")
_REFLEX_VALUE = (
    (re.compile(r"absent|areflex|\bnil\b", re.I), "areflexia"),
    (re.compile(r"reduced|diminished|decreased|depressed|trace|hyporeflex|sluggish", re.I), "hyporeflexia"),
    (re.compile(r"brisk|increased|exaggerated|hyperreflex|clonus", re.I), "hyperreflexia"),
    (re.compile(r"normal|present|symmetric|intact|\bnad\b", re.I), "normal"),
)
_PLANTAR_VALUE = (
    (re.compile(r"extensor|up-?going|positive|babinski|mute", re.I), "babinski_sign"),
    (re.compile(r"flexor|down-?going|negative|normal", re.I), "normal"),
)
_BULK_VALUE = (
    (re.compile(r"reduced|wast|atroph|decreased|loss|thin", re.I), "muscle_atrophy"),
    (re.compile(r"normal|preserved|intact|\bnad\b", re.I), "normal"),
)


def _value_text(o: dict[str, Any]) -> str:
    """The answer of an exam Observation as text (string, coded label, or integer grade)."""
    if isinstance(o.get("valueString"), str):
        return str(o["valueString"])
    if isinstance(o.get("valueInteger"), int) and not isinstance(o.get("valueInteger"), bool):
        return str(o["valueInteger"])
    vq = obj(o.get("valueQuantity")).get("value")
    if isinstance(vq, int | float) and not isinstance(vq, bool):
        return f"{vq:g}"
    v = o.get("valueCodeableConcept")
    if isinstance(v, dict) and _codes(v) & NORMAL_CODES:
        return "normal"
    return label_of(v, "")


def _read(text: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, reading in table:
        if pattern.search(text):
            return reading
    return None


def _icd_only(cc: Any, norm_code: str) -> bool:
    """True when the only ICD-10-CM coding of ``cc`` is ``norm_code`` and no other system codes it."""
    codings = items(obj(cc).get("coding"))
    if not codings:
        return False
    icd = [
        str(c.get("code", "")).replace(".", "").upper()
        for c in codings
        if "icd-10" in str(c.get("system", ""))
    ]
    return bool(icd) and all(code == norm_code for code in icd) and len(icd) == len(codings)


def _interpretation(o: dict[str, Any]) -> set[str]:
    """Interpretation codes: R4 sends an array of CodeableConcepts, STU3 a single one."""
    return set().union(*(_codes(i) for i in items(o.get("interpretation"))))


def _mrc_grade(o: dict[str, Any]) -> float | None:
    """An MRC strength grade (0-5, '4+' and '5-' allowed) from a numeric or text value."""
    vq = obj(o.get("valueQuantity")).get("value")
    if isinstance(vq, int | float) and not isinstance(vq, bool):
        return float(vq)
    if isinstance(o.get("valueInteger"), int) and not isinstance(o.get("valueInteger"), bool):
        return float(o["valueInteger"])
    text = o.get("valueString")
    if not isinstance(text, str):
        text = label_of(o.get("valueCodeableConcept"), "")
    m = MRC_GRADE.match(text or "")
    if m is None:
        return None
    return float(m.group(1)) + {"+": 0.33, "-": -0.33}.get(m.group(2) or "", 0.0)


def _ref(res: dict[str, Any]) -> str:
    return f"{res.get('resourceType')}/{res.get('id', '?')}"


def _result_ref(ref: Any) -> str:
    """'Observation/<id>' of a Reference (relative, absolute or versioned), '' if not one."""
    text = str(obj(ref).get("reference", ""))
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Observation" and parts[-1]:
        return f"Observation/{parts[-1]}"
    return ""


# The request decoder's sieve for Observations (cds_service/data/sieve.py): the fields that decide
# whether one can matter (``RecordBuilder.observation_can_matter``), and what every step reads of
# one that cannot (``build``: status and id for the result references; the subject screen: subject
# and patient).
OBSERVATION_KEY = ("code", "valueCodeableConcept")
OBSERVATION_STUB = ("status", "subject", "patient")


class RecordBuilder:
    """Builds a PatientRecord from gathered FHIR JSON, keeping only what matches a concept."""

    def __init__(
        self, term: Terminology, finding_window_days: int = 365, use_trigger_text: bool = False
    ) -> None:
        self.t = term
        self.window = finding_window_days
        self.use_trigger_text = use_trigger_text

    def build(
        self,
        patient_id: str,
        now: datetime,
        resources: dict[str, list[dict[str, Any]]],
        missing: Iterable[str] = (),
    ) -> PatientRecord:
        rec = PatientRecord(patient_id=patient_id, now=now, missing=list(missing))
        for p in resources.get("Patient", ()):
            if p.get("id") in (None, patient_id):
                self._patient(rec, p)
        for c in resources.get("Condition", ()):
            self._condition(rec, c)
        for o in resources.get("Observation", ()):
            if string(o.get("status")) in RESULT and isinstance(o.get("id"), str):
                rec.observation_refs.add(f"Observation/{o['id']}")
            if "code" in o or "valueCodeableConcept" in o:  # without either it names nothing
                self._observation(rec, o)
        for kind in ("ServiceRequest", "Procedure", "DiagnosticReport"):
            for r in resources.get(kind, ()):
                self._order(rec, r)
        for kind in ("MedicationRequest", "MedicationStatement"):
            for m in resources.get(kind, ()):
                self._medication(rec, m)
        for d in resources.get("MedicationDispense", ()):
            self._dispense(rec, d)
        for a in resources.get("Appointment", ()):
            start = parse_when(a.get("start"))
            if string(a.get("status")) in ("proposed", "pending", "booked") and (start is None or start >= now):
                rec.future_visits.append(start or now)
        for r in resources.get("ServiceRequest", ()):
            label = label_of(r.get("code"), "")
            if string(r.get("status")) in ORDER_PENDING and re.search(r"follow[- ]?up|review|recall", label, re.I):
                rec.future_visits.append(parse_when(r.get("occurrenceDateTime")) or now)
        for results in rec.labs.values():
            results.sort(key=lambda r: r.when or datetime.min.replace(tzinfo=UTC), reverse=True)
        return rec

    def observation_can_matter(self, kind: str, fields: dict[str, Any]) -> bool:
        """Whether an Observation (``fields``: its ``OBSERVATION_KEY`` fields) can add anything
        to the record beyond its reference; the request decoder (``cds_service/data/sieve.py``)
        decodes the rest of it only when this is true, and otherwise passes on its
        ``OBSERVATION_STUB`` fields only. It mirrors the first tests of ``_observation`` and
        ``_exam``: with no concept in ``code`` (codings and text) and none in the coded value,
        both return before reading anything else, and with neither field present they return
        the same way (``in_scope`` likewise finds nothing). Kept beside them so a change to
        either is a change here too; tests/unit/test_sieve_equivalence.py holds the two paths
        to the same cards."""
        if kind != "Observation":
            return True
        return bool(
            self.t.match_cc(fields.get("code"), use_text=True)
            or self.t.match_cc(fields.get("valueCodeableConcept"), use_text=False)
        )

    def _patient(self, rec: PatientRecord, p: dict[str, Any]) -> None:
        age = age_on(p.get("birthDate"), rec.now)
        if age is not None:
            rec.age = age
        if isinstance(p.get("gender"), str):
            rec.sex = p["gender"]

    def concepts_of(self, cc: Any) -> set[str]:
        """Concepts of a finding's code, with the catalogue's two ambiguous ICD-10-CM codes
        resolved: R29.2 'Abnormal reflex' names a reflex sign only when the text says which one,
        and R53.1 'Weakness' alone is treated as non-objective weakness."""
        concepts = self.t.match_cc(cc, use_text=True) - EXAM_TEXT_CONCEPTS
        if concepts & REFLEX_CONCEPTS and _icd_only(cc, "R292"):
            text = label_of(cc, "") if isinstance(cc, dict) and cc.get("text") else ""
            concepts -= REFLEX_CONCEPTS
            concepts |= {concept for pattern, concept in _REFLEX_TEXT if pattern.search(text)}
            if not concepts:
                concepts = {"reflex_abnormal"}
        return concepts

    def _condition(self, rec: PatientRecord, c: dict[str, Any]) -> None:
        if _code(c.get("verificationStatus")) in DROP_VERIFICATION:
            return
        concepts = self.concepts_of(c.get("code"))
        if self.use_trigger_text and re.search(
            r"fascicul|twitch", str(obj(c.get("code")).get("text", "")), re.I
        ):
            concepts.add("fasciculation")
        if not concepts:
            return
        clinical = _code(c.get("clinicalStatus"))
        active = clinical is None or clinical in ACTIVE_CLINICAL
        onset = parse_when(c.get("onsetDateTime"))
        if onset is None and isinstance(c.get("onsetPeriod"), dict):
            onset = parse_when(c["onsetPeriod"].get("start"))
        when = onset or parse_when(c.get("recordedDate"))
        asserter = str(obj(c.get("asserter")).get("reference", "")) + str(
            obj(c.get("recorder")).get("reference", "")
        )
        objective = not re.match(r"^(Patient|RelatedPerson)/", asserter)
        if "muscle_weakness" in concepts and _icd_only(c.get("code"), "R531"):
            objective = False  # 'Weakness' (asthenia) without a coded exam finding
        note = " ".join(str(n.get("text", "")) for n in items(c.get("note")))
        label = self.t.label(c.get("code"), "condition")
        for concept in concepts:
            rec.facts.append(Fact(concept, _ref(c), label, when, "condition", active, objective, note, onset))

    def _observation(self, rec: PatientRecord, o: dict[str, Any]) -> None:
        status = string(o.get("status"))
        if status not in RESULT and status not in PENDING_OBS:
            return
        code = o.get("code")
        concepts = self.concepts_of(code)
        # A smoking-status *question* is not a risk factor (its answer may be).
        concepts.discard("pad_risk_factors")
        if status in RESULT:
            self._exam(rec, o, concepts)
        if "muscle_strength_grade" in concepts:
            # An MRC grade below 5 is objective weakness on examination (knowledge.md section 2).
            concepts.discard("muscle_strength_grade")
            grade = _mrc_grade(o)
            if grade is not None and grade < 5:
                concepts.add("muscle_weakness")
        value_cc = o.get("valueCodeableConcept")
        value_concepts = self.t.match_cc(value_cc, use_text=False) if isinstance(value_cc, dict) else set()
        # Present/Absent/Normal are qualifiers of a finding, not findings.
        value_concepts.discard("exam_present")
        if not concepts and not value_concepts:
            return
        when = parse_when(o.get("effectiveDateTime")) or parse_when(o.get("issued"))
        if when is None and isinstance(o.get("effectivePeriod"), dict):
            when = parse_when(o["effectivePeriod"].get("start"))
        labs = {c for c in concepts if self.t.concepts[c].category in RESULT_CATEGORIES}
        if labs:
            self._lab(rec, o, labs, when, status in PENDING_OBS)
        findings = (concepts - labs) | value_concepts
        if findings and status in RESULT:
            self._finding(rec, o, findings, when, value_concepts)

    def _exam(self, rec: PatientRecord, o: dict[str, Any], concepts: set[str]) -> None:
        """Structured exam parts (issue 19 section 2): strength (MRC), reflexes, plantar responses,
        bulk and visible fasciculations. Each becomes an ``ExamItem`` (normal or not); an abnormal
        answer on a flowsheet row (reflexes "absent", plantar "extensor", bulk "reduced") also
        becomes the finding it names, so the rules read it like a coded finding."""
        parts = self.t.match_cc(o.get("code"), use_text=True) & EXAM_TEXT_CONCEPTS
        value_cc = o.get("valueCodeableConcept")
        value_concepts = self.t.match_cc(value_cc, use_text=False) if isinstance(value_cc, dict) else set()
        if not parts and not concepts & (EXAM_FINDINGS | REFLEX_FINDINGS):
            return
        when = parse_when(o.get("effectiveDateTime")) or parse_when(o.get("issued"))
        if when is None and isinstance(o.get("effectivePeriod"), dict):
            when = parse_when(o["effectivePeriod"].get("start"))
        ref, label = _ref(o), self.t.label(o.get("code"), "observation")
        site = label_of(o.get("bodySite"), "")
        text = _value_text(o)
        negated = self._negated(o, bool(value_concepts))
        interp_normal = "N" in _interpretation(o)

        def item(aspect: str, normal: bool) -> None:
            rec.exam.append(ExamItem(aspect, ref, label, when, normal, site))

        def finding(concept: str) -> None:
            # Not through _negated: "absent" here is the reflex, not a denial of the finding.
            rec.facts.append(Fact(concept, ref, f"{label}: {text}", when, "observation", True, True))

        if "muscle_strength_grade" in concepts:
            grade = _mrc_grade(o)
            if grade is not None:
                item("strength", grade >= 5)
        if "fasciculation" in concepts and not negated:
            item("fasciculations", True)
        if "reflex_exam" in parts or concepts & REFLEX_FINDINGS:
            coded = (concepts | value_concepts) & REFLEX_FINDINGS
            if coded and not negated:
                item("reflexes", False)
            elif not coded:
                m = REFLEX_GRADE.match(text)
                reading = (
                    {"0": "areflexia", "1": "hyporeflexia", "2": "normal"}.get(m.group(1), "hyperreflexia")
                    if m
                    else ("normal" if interp_normal else _read(text, _REFLEX_VALUE))
                )
                if reading == "normal":
                    item("reflexes", True)
                elif reading is not None:
                    item("reflexes", False)
                    finding(reading)
        if "plantar_exam" in parts or "babinski_sign" in concepts:
            if "babinski_sign" in concepts | value_concepts:
                item("plantar", negated)  # "Babinski sign: negative" is a flexor (normal) plantar
            else:
                reading = "normal" if interp_normal else _read(text, _PLANTAR_VALUE)
                if reading == "normal":
                    item("plantar", True)
                elif reading is not None:
                    item("plantar", False)
                    finding(reading)
        if "bulk_exam" in parts:
            reading = "normal" if interp_normal else _read(text, _BULK_VALUE)
            if "muscle_atrophy" in value_concepts:
                item("bulk", False)
            elif reading == "normal":
                item("bulk", True)
            elif reading is not None:
                item("bulk", False)
                finding(reading)

    def _finding(
        self,
        rec: PatientRecord,
        o: dict[str, Any],
        concepts: set[str],
        when: datetime | None,
        value_concepts: set[str],
    ) -> None:
        negated = self._negated(o, bool(value_concepts))
        recent = when is None or when >= rec.now - timedelta(days=self.window)
        performer = " ".join(str(p.get("reference", "")) for p in items(o.get("performer")))
        objective = not re.search(r"\b(Patient|RelatedPerson)/", performer)
        label = self.t.label(o.get("valueCodeableConcept"), "") if value_concepts else ""
        label = label or self.t.label(o.get("code"), "observation")
        for concept in concepts:
            fact = Fact(concept, _ref(o), label, when, "observation", recent, objective)
            (rec.negated if negated else rec.facts).append(fact)

    @staticmethod
    def _negated(o: dict[str, Any], finding_in_value: bool) -> bool:
        """An exam finding recorded as absent must never fire a rule."""
        if o.get("dataAbsentReason") is not None or o.get("valueBoolean") is False:
            return True
        interp = _interpretation(o)
        if "N" in interp or "NEG" in interp:
            return True
        v = o.get("valueCodeableConcept")
        if not finding_in_value and isinstance(v, dict):
            if _codes(v) & ABSENT_CODES:
                return True
            if NEGATIVE_TEXT.search(label_of(v, "")):
                return True
        vs = o.get("valueString")
        return isinstance(vs, str) and bool(NEGATIVE_TEXT.match(vs.strip()))

    def _lab(
        self, rec: PatientRecord, o: dict[str, Any], concepts: set[str], when: datetime | None, pending: bool
    ) -> None:
        code = _code(o.get("code"), LOINC)
        interp = _interpretation(o)
        vq = o.get("valueQuantity") if isinstance(o.get("valueQuantity"), dict) else None
        raw_value = vq.get("value") if vq else None
        if raw_value is None and isinstance(o.get("valueInteger"), int):
            raw_value = o["valueInteger"]
        unit = (string(vq.get("code")) or string(vq.get("unit"))) if vq else None
        rr = next(iter(items(o.get("referenceRange"))), {})
        text = str(o.get("valueString") or label_of(o.get("valueCodeableConcept"), ""))
        for concept in concepts:
            value: float | None = None
            canonical: str | None = None
            if isinstance(raw_value, int | float) and not isinstance(raw_value, bool):
                value, canonical = normalise(concept, float(raw_value), unit)
            low = self._bound(concept, rr.get("low"))
            high = self._bound(concept, rr.get("high"))
            reported = (
                float(raw_value)
                if isinstance(raw_value, int | float) and not isinstance(raw_value, bool)
                else None
            )
            rec.labs.setdefault(concept, []).append(
                LabResult(
                    concept,
                    _ref(o),
                    code,
                    self.t.label(o.get("code"), concept),
                    when,
                    value,
                    canonical,
                    pending,
                    frozenset(interp),
                    low,
                    high,
                    text,
                    reported,
                    unit,
                )
            )

    @staticmethod
    def _bound(concept: str, q: Any) -> float | None:
        if not isinstance(q, dict) or not isinstance(q.get("value"), int | float):
            return None
        return normalise_range(concept, float(q["value"]), string(q.get("code")) or string(q.get("unit")))

    def _order(self, rec: PatientRecord, r: dict[str, Any]) -> None:
        kind = str(r.get("resourceType"))
        concepts = self.t.match_cc(r.get("code"), use_text=True)
        if not concepts:
            return
        status = str(r.get("status", ""))
        if status in ("entered-in-error", "revoked", "cancelled", "not-done", "stopped"):
            when = parse_when(r.get("authoredOn")) or parse_when(r.get("effectiveDateTime"))
            label = self.t.label(r.get("code"), kind)
            rec.withdrawn.append(Order(frozenset(concepts), _ref(r), kind, status, when, label, False, False))
            return
        if kind == "ServiceRequest":
            when = parse_when(r.get("authoredOn")) or parse_when(r.get("occurrenceDateTime"))
            pending, done = status in ORDER_PENDING, status == "completed"
        elif kind == "Procedure":
            when = parse_when(r.get("performedDateTime"))
            if when is None and isinstance(r.get("performedPeriod"), dict):
                when = parse_when(r["performedPeriod"].get("start"))
            pending, done = status in PROC_PENDING, status == "completed"
        else:
            when = parse_when(r.get("effectiveDateTime")) or parse_when(r.get("issued"))
            pending, done = status in ("registered", "partial", "preliminary"), status in RESULT
        conclusion_codes: set[str] = set()
        conclusion_concepts: set[str] = set()
        for cc in items(r.get("conclusionCode")):
            conclusion_codes |= _codes(cc)
            conclusion_concepts |= self.t.match_cc(cc, use_text=False)
        rec.orders.append(
            Order(
                frozenset(concepts),
                _ref(r),
                kind,
                status,
                when,
                self.t.label(r.get("code"), kind),
                pending,
                done,
                str(r.get("conclusion") or ""),
                frozenset(conclusion_codes),
                conclusion_concepts=frozenset(conclusion_concepts),
                results=tuple(_result_ref(x) for x in items(r.get("result")) if _result_ref(x)),
            )
        )

    def _medication(self, rec: PatientRecord, m: dict[str, Any]) -> None:
        status = str(m.get("status", ""))
        if status not in ("active", "on-hold", "intended", "completed", "stopped"):
            return
        cc = m.get("medicationCodeableConcept")
        if not isinstance(cc, dict):
            cc = self._contained_medication(m)
        concepts = self.t.match_drug(cc)
        if not concepts or self._local_route(m, cc):
            return
        since = parse_when(m.get("authoredOn")) or parse_when(m.get("effectiveDateTime"))
        if since is None and isinstance(m.get("effectivePeriod"), dict):
            since = parse_when(m["effectivePeriod"].get("start"))
        asserted = parse_when(m.get("dateAsserted"))
        if status in ("completed", "stopped"):
            ended = _course_end(m, since)
            if ended is not None:  # a finished course with no end cannot be called recent
                rec.ended_meds.append(
                    Medication(
                        frozenset(concepts), _ref(m), label_of(cc, "medication"), since, status, asserted, ended
                    )
                )
            return
        rec.meds.append(
            Medication(frozenset(concepts), _ref(m), label_of(cc, "medication"), since, status, asserted)
        )

    def _dispense(self, rec: PatientRecord, d: dict[str, Any]) -> None:
        """A completed dispense shows a prescription is current (issue 17: generators leave
        decades-old MedicationRequests active)."""
        if string(d.get("status")) != "completed":
            return
        cc = d.get("medicationCodeableConcept")
        if not isinstance(cc, dict):
            cc = self._contained_medication(d)
        when = parse_when(d.get("whenHandedOver")) or parse_when(d.get("whenPrepared"))
        if when is None:
            return
        for concept in self.t.match_drug(cc):
            if concept not in rec.dispensed or rec.dispensed[concept] < when:
                rec.dispensed[concept] = when

    @staticmethod
    def _contained_medication(m: dict[str, Any]) -> dict[str, Any] | None:
        ref = obj(m.get("medicationReference")).get("reference")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        for c in items(m.get("contained")):
            if c.get("resourceType") == "Medication" and c.get("id") == ref[1:]:
                code = c.get("code")
                return code if isinstance(code, dict) else None
        return None

    @staticmethod
    def _local_route(m: dict[str, Any], cc: Any) -> bool:
        """Eye drops and creams do not cause fasciculations: ignore topical/ophthalmic forms."""
        label = label_of(cc, "")
        for d in items(m.get("dosageInstruction") or m.get("dosage")):
            label += " " + label_of(d.get("route"), "")
        return bool(re.search(r"ophthalmic|topical|cream|ointment|otic|nasal|inhal|eye drop", label, re.I))


# Days per UCUM duration unit (expectedSupplyDuration is a Duration; "mo" is a mean month).
_DAYS_PER_UNIT = {"d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25, "h": 1 / 24}


def _course_end(m: dict[str, Any], since: datetime | None) -> datetime | None:
    """When a finished course ended: the prescription's validity end, the statement's period end,
    or the order date plus the expected supply duration (issue 19: a recent taper is a drug cause)."""
    dispense = obj(m.get("dispenseRequest"))
    for end in (obj(dispense.get("validityPeriod")).get("end"), obj(m.get("effectivePeriod")).get("end")):
        when = parse_when(end)
        if when is not None:
            return when
    supply = obj(dispense.get("expectedSupplyDuration"))
    value, unit = supply.get("value"), supply.get("code") or supply.get("unit")
    per = _DAYS_PER_UNIT.get(unit) if isinstance(unit, str) else None
    if since is not None and per is not None and isinstance(value, int | float) and value >= 0:
        return since + timedelta(days=float(value) * per)
    return None
