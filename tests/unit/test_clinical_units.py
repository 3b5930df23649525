"""Unit tests of the clinical layer: terminology, units, record semantics, rules' safety nets,
card catalogue invariants, and the generated review page."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical.cards import MAX_SUMMARY, Catalogue, fill, md_escape
from cds_service.clinical.engine import discipline, in_scope
from cds_service.clinical.record_builder import RecordBuilder, parse_when
from cds_service.clinical.review import DOC_PATH, rules_markdown
from cds_service.clinical.rules import RULES
from cds_service.clinical.rules.base import Hit, Suggest
from cds_service.clinical.terminology import CPT, ICD10CM, LOINC, RXNORM, SNOMED, terminology
from cds_service.clinical.units import normalise

T = terminology()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SEEDS = Path(__file__).resolve().parents[3] / "shared" / "clinical" / "seeds"
ROOT = Path(__file__).resolve().parents[2]


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def cond(code: str, system: str = ICD10CM, **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"c-{code}",
        "code": {"coding": [{"system": system, "code": code}]},
        "onsetDateTime": ago(10),
    }
    c.update(kw)
    return c


def obs(code: str, system: str = LOINC, **kw: Any) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o-{code}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": ago(5),
    }
    o.update(kw)
    return o


def record(*resources: dict[str, Any]) -> Any:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    return RecordBuilder(T).build("p1", NOW, by_type)


# ------------------------------------------------------------------ terminology


def test_icd_matching_with_and_without_dot_and_prefix() -> None:
    assert "fasciculation" in T.match_coding(ICD10CM, "R25.3")
    assert "fasciculation" in T.match_coding(ICD10CM, "R253")
    assert "motor_neuron_disease" in T.match_coding(ICD10CM, "G12.29")
    assert "stroke" in T.match_coding(ICD10CM, "I63.512")
    assert T.match_coding(ICD10CM, "I69.3") == {"stroke_history"}
    assert T.match_coding(SNOMED, "82470000") >= {"fasciculation"}
    assert T.match_coding(ICD10CM, "Z00.00") == set()


def test_cramp_fasciculation_syndrome_is_text_only() -> None:
    assert "cramp_fasciculation_syndrome" not in T.match_coding(ICD10CM, "R25.3")
    assert "cramp_fasciculation_syndrome" in T.match_cc({"text": "Benign cramp-fasciculation syndrome"})


@pytest.mark.parametrize(
    ("cc", "expected"),
    [
        ({"coding": [{"system": RXNORM, "code": "21949"}]}, {"cyclobenzaprine"}),
        ({"coding": [{"system": RXNORM, "code": "828299"}]}, {"cyclobenzaprine"}),
        ({"text": "Flexeril 10 mg"}, {"cyclobenzaprine"}),
        ({"text": "Furosemide 40 MG Oral Tablet"}, {"furosemide"}),
        ({"coding": [{"system": RXNORM, "code": "312615", "display": "prednisone 20 MG Oral Tablet"}]}, {"prednisone"}),
        ({"text": "esomeprazole magnesium 20 mg"}, set()),
        ({"text": "paracetamol"}, set()),
    ],
)
def test_drug_matching(cc: dict[str, Any], expected: set[str]) -> None:
    assert T.match_drug(cc) == expected


def test_emg_by_text_and_cpt() -> None:
    assert "emg" in T.match_cc({"text": "EMG both legs"})
    assert T.match_cc({"coding": [{"system": CPT, "code": "95886"}]}) >= {"emg"}
    assert T.match_cc({"text": "nerve conduction study"}) >= {"ncs"}


def test_only_verified_codes_are_emitted() -> None:
    """Every code a card can suggest has high or medium confidence; unverified codes never load."""
    catalogue = Catalogue.load()
    for kind in catalogue.kinds.values():
        for concept in kind.suggestion_labels:
            code = T.concept(concept).primary()
            assert code is not None, (kind.id, concept)
            assert code.confidence in ("high", "medium")
    for concept in T.concepts.values():
        for c in concept.codes:
            assert not c.code.upper().startswith("UNVERIFIED")


# ------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("concept", "value", "unit", "expected"),
    [
        ("vitamin_b12", 180, "pmol/L", 243.9),
        ("vitamin_b12", 300, "pg/mL", 300),
        ("fasting_glucose", 7.0, "mmol/L", 126.1),
        ("hba1c", 53, "mmol/mol", 7.0),
        ("magnesium_serum", 0.7, "mmol/L", 1.7),
        ("ck", 10, "ukat/L", 600),
        ("crp", 1.2, "mg/dL", 12),
        ("tsh", 2.0, "uIU/mL", 2.0),
    ],
)
def test_unit_normalisation(concept: str, value: float, unit: str, expected: float) -> None:
    got, _ = normalise(concept, value, unit)
    assert got == pytest.approx(expected, abs=0.1)


def test_unknown_unit_gives_no_value() -> None:
    assert normalise("ck", 5, "furlongs") == (None, None)


# ------------------------------------------------------------------ record semantics


def test_partial_dates() -> None:
    assert parse_when("2025") == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_when("2025-03") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when("2025-03-04T10:00:00Z") == datetime(2025, 3, 4, 10, tzinfo=UTC)
    assert parse_when("garbage") is None and parse_when(None) is None


def test_condition_status_semantics() -> None:
    active = {"coding": [{"code": "active"}]}
    rec = record(
        cond("R25.3", clinicalStatus=active),
        cond("M62.81", verificationStatus={"coding": [{"code": "refuted"}]}),
        cond("G61.0", clinicalStatus={"coding": [{"code": "resolved"}]}),
        cond("R47.1", verificationStatus={"coding": [{"code": "entered-in-error"}]}),
    )
    assert rec.has("fasciculation")
    assert not rec.has("muscle_weakness") and not rec.has("dysarthria")
    assert not rec.has("guillain_barre") and rec.history("guillain_barre")


def test_observation_status_semantics() -> None:
    rec = record(
        obs("3016-3", valueQuantity={"value": 2, "code": "m[IU]/L"}),
        obs("2132-9", status="entered-in-error", valueQuantity={"value": 100, "code": "pg/mL"}),
        obs("2157-6", status="preliminary"),
        obs("4548-4", status="cancelled", valueQuantity={"value": 9, "code": "%"}),
    )
    assert rec.latest("tsh") is not None
    assert rec.labs.get("vitamin_b12") is None and rec.labs.get("hba1c") is None
    assert rec.lab_pending("ck") is not None and rec.latest("ck") is None


@pytest.mark.parametrize(
    "negation",
    [
        {"valueBoolean": False},
        {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "2667000"}]}},
        {"valueCodeableConcept": {"text": "Absent"}},
        {"interpretation": [{"coding": [{"code": "N"}]}]},
        {"dataAbsentReason": {"text": "not performed"}},
        {"valueString": "negative"},
    ],
)
def test_absent_findings_never_fire(negation: dict[str, Any]) -> None:
    rec = record(obs("86854008", SNOMED, **negation))
    assert not rec.has("hyperreflexia") and rec.negated


def test_present_finding_and_finding_as_value() -> None:
    rec = record(
        obs("86854008", SNOMED, valueBoolean=True),
        obs("exam-1", "http://example.org/local", valueCodeableConcept={"coding": [{"system": SNOMED, "code": "88092000"}]}),
    )
    assert rec.has("hyperreflexia") and rec.has("muscle_atrophy")


def test_abnormal_reflex_code_needs_text() -> None:
    plain = record(cond("R29.2"))
    assert not plain.has("hyperreflexia", "babinski_sign", "areflexia") and plain.has("reflex_abnormal")
    babinski = cond("R29.2")
    babinski["code"]["text"] = "Babinski sign left"
    specific = record(babinski)
    assert specific.has("babinski_sign")


def test_weakness_provenance() -> None:
    assert record(cond("M62.81")).has("muscle_weakness")[0].objective
    assert not record(cond("M62.81", asserter={"reference": "Patient/p1"})).has("muscle_weakness")[0].objective
    assert not record(cond("R53.1")).has("muscle_weakness")[0].objective


def test_smoking_status_question_is_not_a_risk_factor() -> None:
    never = record(obs("72166-2", valueCodeableConcept={"coding": [{"system": SNOMED, "code": "266919005"}]}))
    smoker = record(obs("72166-2", valueCodeableConcept={"coding": [{"system": SNOMED, "code": "77176002"}]}))
    assert not never.has("pad_risk_factors") and smoker.has("pad_risk_factors")


def test_topical_drugs_ignored() -> None:
    med = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "medicationCodeableConcept": {"text": "hydrocortisone 1 % topical cream"},
    }
    assert record(med).meds == []
    med["medicationCodeableConcept"] = {"text": "hydrocortisone 10 mg oral tablet"}
    assert record(med).meds_in(["hydrocortisone"])


def test_finished_courses_keep_their_end_apart_from_current_meds() -> None:
    """Issue 19: a completed/stopped course is never a current drug; its end comes from the validity
    period, a statement's effective period, or the order date plus the expected supply."""
    pred = {"text": "prednisone 20 mg oral tablet"}
    by_supply = {
        "resourceType": "MedicationRequest", "id": "m1", "status": "stopped", "medicationCodeableConcept": pred,
        "authoredOn": ago(30), "dispenseRequest": {"expectedSupplyDuration": {"value": 2, "code": "wk"}},
    }
    by_period = {
        "resourceType": "MedicationStatement", "id": "m2", "status": "completed", "medicationCodeableConcept": pred,
        "effectivePeriod": {"start": ago(50), "end": ago(40)},
    }
    no_end = {"resourceType": "MedicationRequest", "id": "m3", "status": "completed", "medicationCodeableConcept": pred}
    rec = record(by_supply, by_period, no_end)
    assert rec.meds == []
    ends = {m.ref: m.ended for m in rec.ended_meds}
    assert ends == {"MedicationRequest/m1": NOW - timedelta(days=16), "MedicationStatement/m2": NOW - timedelta(days=40)}


def test_recent_corticosteroid_taper_is_a_drug_cause() -> None:
    from cds_service.clinical.moments import Moment
    from cds_service.clinical.rules.base import RuleContext
    from cds_service.clinical.rules.management import TAPER_ENDED_DAYS, r13_drug_causes

    def course(rid: str, status: str, end_days: float, text: str = "prednisone 20 mg oral tablet") -> dict[str, Any]:
        return {
            "resourceType": "MedicationRequest", "id": rid, "status": status, "authoredOn": ago(end_days + 14),
            "medicationCodeableConcept": {"text": text},
            "dispenseRequest": {"validityPeriod": {"end": ago(end_days)}},
        }

    def r13(*res: dict[str, Any]) -> Hit | None:
        rec = record(cond("R25.3"), *res)
        return r13_drug_causes(rec, RuleContext(now=NOW, moment=Moment.CHART, lookbacks={}, triggers=rec.has("fasciculation")))

    hit = r13(course("m1", "completed", 10))
    assert hit is not None and hit.values["drugs"] == "prednisone 20 mg oral tablet"
    assert hit.lines == [
        f"prednisone 20 mg oral tablet: corticosteroid course ended {(NOW - timedelta(days=10)).date()} (completed); "
        "the sources name corticosteroid use as a potential trigger, particularly with rapid tapering: ask whether "
        "it was tapered."
    ]
    assert r13(course("m1", "stopped", TAPER_ENDED_DAYS + 1)) is None  # ended too long ago
    assert r13(course("m1", "completed", 5, text="furosemide 40 mg oral tablet")) is None  # tapers are steroids only
    active = r13(course("m2", "active", -30))  # an active steroid: today's behaviour, no taper line
    assert active is not None and active.lines == []


def test_in_scope_is_the_cheap_first_check() -> None:
    assert not in_scope(T, {"Condition": [cond("I10")], "Observation": [obs("8867-4")]})
    assert in_scope(T, {"Condition": [cond("R25.3")]})
    assert in_scope(T, {"Condition": [cond("G61.0")]})


# ------------------------------------------------------------------ discipline and catalogue


def test_discipline_budget_and_dedupe() -> None:
    hits = [
        Hit("R12", "screening-missing", "info", suggest=[Suggest("gad7_total")]),
        Hit("R01", "red-flag-motor", "critical", suggest=[Suggest("emg"), Suggest("ck")]),
        Hit("R04", "lab-gaps", "info", suggest=[Suggest("ck"), Suggest("tsh")]),
        Hit("R20", "reassurance", "info"),
        Hit("R05a", "ck-marked", "warning", values={"value": "1500"}, suggest=[Suggest("emg")]),
        Hit("R13", "drug-causes", "info"),
    ]
    result = discipline(hits, 2)
    assert [h.rule for h in result.hits] == ["R01", "R04"]
    assert [s.concept for s in result.hits[1].suggest] == ["tsh"]  # CK already offered by R01
    assert any("above 1000" in line for line in result.hits[0].lines)  # R05a folded into R01
    assert "R20" not in {h.rule for h in result.withheld}  # suppressed by a critical card, not withheld
    assert "card limit" in result.hits[-1].lines[-1]


def test_every_rule_has_a_card_and_every_card_a_rule() -> None:
    catalogue = Catalogue.load()
    assert {k.rule for k in catalogue.kinds.values()} == {r.id for r in RULES}
    ranks = [r.rank for r in RULES]
    assert ranks == sorted(set(ranks))  # evaluated in rank order, no two rules share a rank


def test_summaries_stay_under_140_with_worst_case_values() -> None:
    worst = {
        "findings": "weakness/atrophy/UMN signs/bulbar signs",
        "missing": "HbA1c, CBC, CMP, B12, TSH, SPEP, Mg, CK, folate, B6",
        "count": "10",
        "value": "123456",
        "which": "K, Mg, Ca",
        "reasons": "cramps/neuromyotonia, progressive course, marked anxiety (GAD-7 of 10+: is it fear of ALS?)",
        "date": "2026-12-31",
        "status": "on-hold",
        "since": "2026-12-31",
        "age": "104",
        "drugs": "x" * 200,
        "what": "y" * 40,  # a draft order's label (EHR text; longer ones are cut by the renderer)
        "days": "9999",
        "abi": "0.55",
        "care": "no neurology referral or visit on file",
        "deficit": "weakness/bulbar signs",  # R02 reads weakness, dysarthria, dysphagia only
        "finding": "Monoclonal protein",
        "pending": "HbA1c, CBC, CMP, B12, TSH, SPEP, Mg",
        "if_exam": " if the exam is normal",  # issue 19: the longer of R20's two exam clauses
    }
    for kind in Catalogue.load().kinds.values():
        text = fill(kind.summary, worst)
        assert len(text) <= MAX_SUMMARY, (kind.id, len(text))
        assert "{" not in text, kind.id


def test_markdown_escape_neutralises_html() -> None:
    text = md_escape("<img src=x onerror=alert(1)> *bold* [link](javascript:x)")
    assert "<" not in text and ">" not in text
    assert re.search(r"\\\*bold\\\*", text) and "\\[link\\]" in text


@pytest.mark.skipif(not SEEDS.exists(), reason="seed documents not beside the project")
def test_every_evidence_quote_is_in_its_seed() -> None:
    """Traceability: each quote a rule cites appears verbatim (modulo white space) in its seed."""
    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s.replace("\u2019", "'")).strip().lower()

    for r in RULES:
        for seed, quote in r.seeds:
            text = norm((SEEDS / seed).read_text())
            assert norm(quote) in text, (r.id, seed, quote[:60])


def test_rules_doc_is_current() -> None:
    assert DOC_PATH.read_text() == rules_markdown(), "run: cds-fasciculation rules-doc --write"


def test_cli_evaluate_prints_cards() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cds_service", "evaluate", "--fixture", str(ROOT / "fixtures/patients/r01-weakness.json")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "[CRITICAL] Fasciculations with weakness" in out and "suggestion" in out
    bad = subprocess.run(
        [sys.executable, "-m", "cds_service", "evaluate", "/no/such/file.json"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_prefetch_templates_are_2_0_and_short() -> None:
    """Discovery asks for exactly what the rules read, with 2.0 tokens only, each URL under 2,000
    characters after rendering a realistic patient id."""
    from cds_service.clinical.services import prefetch_templates
    from cds_service.data.templates import check_template, render, token_values

    specs = prefetch_templates(T)
    values = token_values({"patientId": "a" * 64, "userId": "Practitioner/dr-1"})
    for spec in specs:
        check_template(spec.template)
        rendered = render(spec.template, values)
        assert rendered is not None and len(rendered) < 2000, spec.key
        assert "{{" not in rendered
    observation_searches = [s for s in specs if s.template.startswith("Observation?")]
    assert all("_count=" in s.template for s in observation_searches)
    # no server-side sort: it cost SEKMET 94 s on a large patient, and the record orders results itself
    assert not any("_sort" in s.template for s in specs)
    assert {s.key for s in specs if s.required} == {"conditions", "labs", "findings"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No fibrillation potentials or positive sharp waves. Normal recruitment.", "normal"),
        ("Normal study: fasciculation potentials only, no active denervation.", "normal"),
        ("Without fibrillations, positive sharp waves or neurogenic change; normal MUAPs.", "normal"),
        ("Absence of spontaneous activity. Unremarkable study.", "normal"),
        ("Fibrillation potentials and positive sharp waves in two limbs.", "active-denervation"),
        ("Widespread neurogenic change in three regions.", "active-denervation"),
        ("Short-duration, low-amplitude polyphasic MUAPs with early recruitment: myopathic.", "myopathic"),
        ("Myotonic discharges in distal muscles.", "myopathic"),
        ("Conduction block in the ulnar nerve; no fibrillations.", "neuropathic"),
        ("Length-dependent axonal sensorimotor polyneuropathy.", "neuropathic"),
        ("Active denervation in L5 myotome, consistent with L5 radiculopathy.", "neuropathic"),
        ("Neuromyotonic discharges in the calves.", "neuropathic"),
        ("Mild chronic neurogenic change, reduced recruitment, no fibrillation potentials.", "chronic-neurogenic"),
        ("Complex repetitive discharges in one muscle.", "chronic-neurogenic"),
        ("Abnormal study; see scanned report.", "indeterminate"),
        ("Study limited by patient tolerance.", "indeterminate"),
    ],
)
def test_emg_classifier_reads_negated_lists_and_every_class(text: str, expected: str) -> None:
    """Issue 11 s.3: one negation-aware reading of EMG reports (a normal report read as abnormal and
    a myopathic one as normal were both seen)."""
    from cds_service.clinical.emg import classify_text

    assert classify_text(text) == expected


def test_emg_classifier_prefers_the_coded_conclusion() -> None:
    from cds_service.clinical.emg import classify
    from cds_service.clinical.record_model import Order

    def report(text: str, codes: set[str], concepts: set[str]) -> Order:
        return Order(
            frozenset({"emg"}), "DiagnosticReport/x", "DiagnosticReport", "final", None, "EMG", False, True,
            text, frozenset(codes), conclusion_concepts=frozenset(concepts),
        )  # fmt: skip

    coded_normal = report("Fibrillation potentials", {"17621005"}, set())
    coded_als = report("Normal", {"86044005"}, {"als"})
    assert classify(coded_normal) == "normal"
    assert classify(coded_als) == "active-denervation"


# ------------------------------------------------------------------ R14 window in calendar days


@pytest.mark.parametrize(
    ("lab_age", "fires"),
    [
        (timedelta(days=30, hours=1), True),  # the 30th calendar day back, an hour earlier in the day than now
        (timedelta(days=31), False),  # 31 calendar days back
    ],
)
def test_r14_recent_results_counted_in_calendar_days(lab_age: timedelta, fires: bool) -> None:
    """R14 asks for a follow-up when first-tier results came in "within 30 days". A result drawn on
    the 30th calendar day before today counts whatever its time of day: with an exact-instant cutoff
    the same chart got the card before 09:00 and lost it after (seen on the golden fixtures)."""
    from cds_service.clinical.moments import Moment
    from cds_service.clinical.rules.base import RuleContext
    from cds_service.clinical.rules.management import r14_follow_up

    rec = record(
        cond("R25.3", onsetDateTime=ago(90)),
        obs("4548-4", valueQuantity={"value": 5.4, "unit": "%"}, effectiveDateTime=(NOW - lab_age).isoformat()),
    )
    ctx = RuleContext(now=NOW, moment=Moment.CHART, lookbacks={}, triggers=rec.has("fasciculation"))
    assert (r14_follow_up(rec, ctx) is not None) is fires
