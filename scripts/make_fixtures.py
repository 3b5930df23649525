"""Write the synthetic patients in fixtures/patients/ as FHIR R4 transaction Bundles.

Why a generator: each patient is a few lines here (what is clinically relevant about it), while the
committed Bundle is the full, valid FHIR the tests, the simulator and the FHIR server load. Dates are
written relative to the anchor 2026-01-01 (Bundle.timestamp); cds_tools.fixtures shifts them to
"now" at load time. Expected cards per patient live in fixtures/expected.yaml (hand-written).

Usage: python scripts/make_fixtures.py   (rewrites fixtures/patients/*.json)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fixtures" / "patients"
ANCHOR = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
BG_EXT = "https://cds-fasciculation.example/fhir/StructureDefinition/background-history"
SCT, ICD, LNC = "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org"
CPT, RX = "http://www.ama-assn.org/go/cpt", "http://www.nlm.nih.gov/research/umls/rxnorm"
CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
UCUM = "http://unitsofmeasure.org"

Res = dict[str, Any]


def ago(days: float) -> str:
    return (ANCHOR - timedelta(days=days)).isoformat(timespec="seconds")


def cc(system: str, code: str, display: str | None = None, text: str | None = None) -> Res:
    coding: Res = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: Res = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


class P:
    """Builder for one synthetic patient."""

    def __init__(self, name: str, age: int = 45, sex: str = "female", background: str | None = None) -> None:
        self.name = name
        self.pid = f"fx-{name}"
        self.n = 0
        self.background = background
        birth = (ANCHOR - timedelta(days=int(age * 365.25) + 40)).date().isoformat()
        self.res: list[Res] = [
            {
                "resourceType": "Patient",
                "id": self.pid,
                "name": [{"family": "Synthetic", "given": [name.replace("-", " ").title()]}],
                "gender": sex,
                "birthDate": birth,
            }
        ]

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{self.pid}-{prefix}{self.n}"

    def subject(self) -> Res:
        return {"reference": f"Patient/{self.pid}"}

    def condition(
        self,
        system: str,
        code: str,
        display: str,
        days: float = 30,
        status: str = "active",
        verification: str = "confirmed",
        text: str | None = None,
        asserter: str | None = None,
        note: str | None = None,
        onset: bool = True,
        recorded_days: float | None = None,
    ) -> P:
        """``onset=False`` leaves only recordedDate (charted, onset unknown); ``recorded_days``
        records it on another day than its onset."""
        r: Res = {
            "resourceType": "Condition",
            "id": self._id("c"),
            "clinicalStatus": cc(CLIN, status),
            "verificationStatus": cc(VER, verification),
            "code": cc(system, code, display, text),
            "subject": self.subject(),
        }
        if onset:
            r["onsetDateTime"] = ago(days)
        r["recordedDate"] = ago(days if recorded_days is None else recorded_days)
        if asserter:
            r["asserter"] = {"reference": asserter}
        if note:
            r["note"] = [{"text": note}]
        self.res.append(r)
        return self

    def fasciculation(self, days: float = 60, **kw: Any) -> P:
        return self.condition(ICD, "R25.3", "Fasciculation", days, **kw)

    def lab(
        self,
        code: str,
        display: str,
        value: float | None,
        unit: str,
        days: float = 10,
        interp: str | None = None,
        low: float | None = None,
        high: float | None = None,
        status: str = "final",
    ) -> P:
        r: Res = {
            "resourceType": "Observation",
            "id": self._id("o"),
            "status": status,
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
            "code": cc(LNC, code, display),
            "subject": self.subject(),
            "effectiveDateTime": ago(days),
        }
        if value is not None:
            r["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        if interp:
            r["interpretation"] = [cc(INTERP, interp)]
        if low is not None or high is not None:
            rng: Res = {}
            if low is not None:
                rng["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
            if high is not None:
                rng["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
            r["referenceRange"] = [rng]
        self.res.append(r)
        return self

    def finding(self, code: str, display: str, days: float = 5, present: bool | None = None) -> P:
        r: Res = {
            "resourceType": "Observation",
            "id": self._id("o"),
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "exam")],
            "code": cc(SCT, code, display),
            "subject": self.subject(),
            "effectiveDateTime": ago(days),
        }
        if present is not None:
            r["valueBoolean"] = present
        self.res.append(r)
        return self

    def order(self, system: str, code: str, display: str, status: str = "active", days: float = 5) -> P:
        self.res.append(
            {
                "resourceType": "ServiceRequest",
                "id": self._id("sr"),
                "status": status,
                "intent": "order",
                "code": cc(system, code, display),
                "subject": self.subject(),
                "authoredOn": ago(days),
            }
        )
        return self

    def procedure(self, system: str, code: str, display: str, days: float, status: str = "completed") -> P:
        self.res.append(
            {
                "resourceType": "Procedure",
                "id": self._id("pr"),
                "status": status,
                "code": cc(system, code, display),
                "subject": self.subject(),
                "performedDateTime": ago(days),
            }
        )
        return self

    def report(
        self,
        system: str,
        code: str,
        display: str,
        days: float,
        conclusion: str,
        normal: bool,
        conclusion_code: tuple[str, str, str] | None = None,
    ) -> P:
        r: Res = {
            "resourceType": "DiagnosticReport",
            "id": self._id("dr"),
            "status": "final",
            "code": cc(system, code, display),
            "subject": self.subject(),
            "effectiveDateTime": ago(days),
        }
        if conclusion:
            r["conclusion"] = conclusion  # FHIR strings may not be empty
        if normal:
            r["conclusionCode"] = [cc(SCT, "17621005", "Normal")]
        if conclusion_code is not None:
            r["conclusionCode"] = [cc(*conclusion_code)]
        self.res.append(r)
        return self

    def answer(
        self, code: str, display: str, answer: tuple[str, str, str], days: float = 10, category: str = "survey"
    ) -> P:
        """An Observation answered with a coded value (PHQ-9 item, pregnancy status)."""
        self.res.append(
            {
                "resourceType": "Observation",
                "id": self._id("o"),
                "status": "final",
                "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", category)],
                "code": cc(LNC, code, display),
                "subject": self.subject(),
                "effectiveDateTime": ago(days),
                "valueCodeableConcept": cc(*answer),
            }
        )
        return self

    def mrc(self, text: str, grade: int, days: float = 5) -> P:
        """An MRC strength grade recorded by a clinician on a local flowsheet code."""
        self.res.append(
            {
                "resourceType": "Observation",
                "id": self._id("o"),
                "status": "final",
                "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "exam")],
                "code": {"coding": [{"system": "http://example.org/fhir/flowsheet", "code": "MRC"}], "text": text},
                "subject": self.subject(),
                "effectiveDateTime": ago(days),
                "performer": [{"reference": "Practitioner/fx-neuro"}],
                "valueInteger": grade,
            }
        )
        return self

    def exam(self, text: str, value: str | int, days: float = 5, site: str | None = None) -> P:
        """One row of a structured neurological exam on a local flowsheet code (docs/exam-mapping.md)."""
        r: Res = {
            "resourceType": "Observation",
            "id": self._id("o"),
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "exam")],
            "code": {"coding": [{"system": "http://example.org/fhir/flowsheet", "code": "NEURO-EXAM"}], "text": text},
            "subject": self.subject(),
            "effectiveDateTime": ago(days),
            "performer": [{"reference": "Practitioner/fx-neuro"}],
        }
        if isinstance(value, int):
            r["valueInteger"] = value
        else:
            r["valueString"] = value
        if site:
            r["bodySite"] = {"text": site}
        self.res.append(r)
        return self

    def normal_exam(self, days: float = 5) -> P:
        """A complete structured exam recorded as normal (seed 000: bulk, MRC strength, reflexes, plantars)."""
        return (
            self.exam("Muscle bulk", "Normal", days)
            .mrc("MRC muscle strength, all groups", 5, days)
            .exam("Deep tendon reflexes", "2+", days)
            .exam("Plantar response", "Flexor", days)
        )

    def local_condition(self, text: str, days: float = 60) -> P:
        """A problem-list entry with only a local code and free text (no standard code)."""
        self.res.append(
            {
                "resourceType": "Condition",
                "id": self._id("c"),
                "clinicalStatus": cc(CLIN, "active"),
                "verificationStatus": cc(VER, "confirmed"),
                "code": {"coding": [{"system": "http://example.org/fhir/problem", "code": "LOCAL-1"}], "text": text},
                "subject": self.subject(),
                "onsetDateTime": ago(days),
                "recordedDate": ago(days),
            }
        )
        return self

    def med(self, rxcui: str, display: str, days: float = 30, status: str = "active") -> P:
        self.res.append(
            {
                "resourceType": "MedicationRequest",
                "id": self._id("mr"),
                "status": status,
                "intent": "order",
                "medicationCodeableConcept": cc(RX, rxcui, display),
                "subject": self.subject(),
                "authoredOn": ago(days),
            }
        )
        return self

    def course(self, rxcui: str, display: str, days: float, status: str = "completed", ended: float | None = None, supply_days: float | None = None) -> P:
        """A finished prescription (issue 19 tapers): its end as a validity period end ``ended`` days
        ago, or only as an expected supply duration from the order date."""
        dispense: Res = {}
        if ended is not None:
            dispense["validityPeriod"] = {"start": ago(days), "end": ago(ended)}
        if supply_days is not None:
            dispense["expectedSupplyDuration"] = {"value": supply_days, "unit": "days", "system": UCUM, "code": "d"}
        self.res.append(
            {
                "resourceType": "MedicationRequest",
                "id": self._id("mr"),
                "status": status,
                "intent": "order",
                "medicationCodeableConcept": cc(RX, rxcui, display),
                "subject": self.subject(),
                "authoredOn": ago(days),
                "dispenseRequest": dispense,
            }
        )
        return self

    def exam_value(self, code: str, text: str, value: float, unit: str, days: float = 30) -> P:
        """An exam observation with a local (flowsheet) code, as ABI results usually arrive."""
        self.res.append(
            {
                "resourceType": "Observation",
                "id": self._id("o"),
                "status": "final",
                "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "exam")],
                "code": {
                    "coding": [{"system": "http://example.org/fhir/flowsheet", "code": code}],
                    "text": text,
                },
                "subject": self.subject(),
                "effectiveDateTime": ago(days),
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            }
        )
        return self

    def ck(self, value: float, days: float = 5) -> P:
        """A creatine kinase result, flagged high against an upper limit of 200 U/L."""
        return self.lab(
            "2157-6",
            "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma",
            value,
            "U/L",
            days,
            "H",
            high=200,
        )

    def full_workup(
        self, days: float = 20, status: str = "final", cmp: bool = True, a1c: bool = True, screening: bool = True
    ) -> P:
        """Every first-tier test resulted and normal, screening negative (``status`` preliminary:
        every test still pending; ``cmp=False``: no metabolic panel or potassium; ``a1c=False``:
        no HbA1c; ``screening=False``: no GAD-7 or PHQ-9)."""
        st = status
        if a1c:
            self.lab("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", 5.4, "%", days, status=st)
        self.lab("58410-2", "CBC panel - Blood by Automated count", None, "", days, status=st)
        self.lab("718-7", "Hemoglobin [Mass/volume] in Blood", 13.9, "g/dL", days, status=st)
        if cmp:
            self.lab("24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma", None, "", days, status=st)
            self.lab(
                "2823-3",
                "Potassium [Moles/volume] in Serum or Plasma",
                4.2,
                "mmol/L",
                days,
                low=3.5,
                high=5.1,
                status=st,
            )
        self.lab("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", 480, "pg/mL", days, status=st)
        done = (
            self
            .lab(
                "3016-3",
                "Thyrotropin [Units/volume] in Serum or Plasma",
                1.8,
                "m[IU]/L",
                days,
                low=0.4,
                high=4.5,
                status=st,
            )
            .lab("24351-9", "Protein electrophoresis panel - Serum or Plasma", None, "", days, status=st)
            .lab(
                "19123-9",
                "Magnesium [Mass/volume] in Serum or Plasma",
                2.0,
                "mg/dL",
                days,
                low=1.7,
                high=2.4,
                status=st,
            )
        )
        if not screening:
            return done
        return done.lab("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score", 4, "{score}", days).lab(
            "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score", 3, "{score}", days
        )

    def bundle(self) -> Res:
        b: Res = {
            "resourceType": "Bundle",
            "type": "transaction",
            "timestamp": ANCHOR.isoformat(timespec="seconds"),
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{_uuid(self.pid, r['id'])}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in self.res
            ],
        }
        if self.background:
            b["meta"] = {"extension": [{"url": BG_EXT, "valueString": self.background}]}
        return b


def _uuid(*parts: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


EMG_CPT = (CPT, "95886", "Needle EMG, each extremity, with related paraspinal areas, complete")
WEAK = (ICD, "M62.81", "Muscle weakness (generalized)")


def patients() -> list[P]:
    out: list[P] = []

    def add(p: P, build: Callable[[P], object]) -> None:
        build(p)
        out.append(p)

    add(P("no-trigger", 52), lambda p: p.condition(ICD, "I10", "Essential (primary) hypertension", 400))
    add(P("r01-weakness", 58, "male"), lambda p: p.fasciculation(40).condition(*WEAK, days=5))
    add(
        P("r01-pending-emg", 61, "male"),
        lambda p: p.fasciculation(40).condition(*WEAK, days=5).order(*EMG_CPT),
    )
    add(
        P("r01-als-known", 66, "male"),
        lambda p: (
            p.fasciculation(400)
            .condition(*WEAK, days=300)
            .condition(ICD, "G12.21", "Amyotrophic lateral sclerosis", 200)
        ),
    )
    add(
        P("r01-subjective", 34),
        lambda p: p.fasciculation(20).condition(
            ICD, "R53.1", "Weakness", 10, asserter="Patient/fx-r01-subjective"
        ),
    )
    add(
        P("neg-absent-reflex", 40),
        lambda p: p.fasciculation(20).finding("86854008", "Hyperreflexia", 3, False),
    )
    add(
        P("r01-umn-atrophy", 55, "male"),
        lambda p: (
            p.fasciculation(30)
            .finding("86854008", "Hyperreflexia", 3)
            .condition(SCT, "88092000", "Muscle atrophy", 10)
        ),
    )
    add(
        P("r02-sudden", 70, "male"),
        lambda p: p.fasciculation(1).condition(ICD, "I63.9", "Cerebral infarction, unspecified", 1),
    )
    add(
        P("neg-old-stroke", 72),
        lambda p: p.fasciculation(50).condition(
            ICD, "Z86.73", "Personal history of transient ischemic attack (TIA), and cerebral infarction", 900
        ),
    )
    add(P("r02b-facial", 38), lambda p: p.condition(ICD, "G51.4", "Facial myokymia", 14))
    add(
        P("r03-pattern", 44, "male"),
        lambda p: p.fasciculation(20).condition(*WEAK, days=10).finding("37280007", "Areflexia", 1),
    )
    add(P("r03-gbs", 29, "male"), lambda p: p.condition(ICD, "G61.0", "Guillain-Barre syndrome", 5))
    add(P("neg-gbs-old", 50), lambda p: p.condition(ICD, "G61.0", "Guillain-Barre syndrome", 60))
    add(
        P("r04-gaps", 47),
        lambda p: p.fasciculation(30).lab(
            "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", 2.0, "m[IU]/L", 400
        ),
    )
    add(
        P("r04-cmp-components", 47),
        lambda p: (
            p.fasciculation(30)
            .lab("2951-2", "Sodium [Moles/volume] in Serum or Plasma", 140, "mmol/L", 29)
            .lab(
                "2823-3", "Potassium [Moles/volume] in Serum or Plasma", 4.1, "mmol/L", 29, low=3.5, high=5.1
            )
            .lab("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 0.9, "mg/dL", 29)
            .lab("2345-7", "Glucose [Mass/volume] in Serum or Plasma", 95, "mg/dL", 29)
            .lab("17861-6", "Calcium [Mass/volume] in Serum or Plasma", 9.4, "mg/dL", 29, low=8.5, high=10.5)
        ),
    )
    add(
        P("r04-pending-cbc", 47),
        lambda p: p.fasciculation(30).order(LNC, "58410-2", "CBC panel - Blood by Automated count"),
    )
    add(
        P("neg-labs-stale-or-void", 47),
        lambda p: (
            p.fasciculation(30)
            .lab("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", 480, "pg/mL", 500)
            .lab(
                "3016-3",
                "Thyrotropin [Units/volume] in Serum or Plasma",
                2.0,
                "m[IU]/L",
                10,
                status="entered-in-error",
            )
            .lab(
                "24351-9",
                "Protein electrophoresis panel - Serum or Plasma",
                None,
                "",
                3,
                status="preliminary",
            )
        ),
    )
    add(
        P("r05a-ck", 33, "male"),
        lambda p: p.fasciculation(30).full_workup().ck(1500),
    )
    add(
        P("r05a-ck-weak", 50, "male"),
        lambda p: p.fasciculation(30).condition(*WEAK, days=5).ck(1500),
    )
    add(
        P("r05b-ck-moderate", 36),
        lambda p: p.fasciculation(30).full_workup().ck(450),
    )
    add(
        P("r05c-tsh", 41),
        lambda p: p.fasciculation(30).lab(
            "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", 0.05, "m[IU]/L", 7, "L", 0.4, 4.5
        ),
    )
    add(
        P("r05d-b12-low", 68),
        lambda p: p.fasciculation(30).lab(
            "2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", 150, "pg/mL", 12, "L"
        ),
    )
    add(
        P("r05d-b12-borderline-si", 63),
        lambda p: p.fasciculation(30).lab(
            "14685-2", "Cobalamin (Vitamin B12) [Moles/volume] in Serum or Plasma", 180, "pmol/L", 12
        ),
    )
    add(
        P("r05e-a1c", 57),
        lambda p: p.fasciculation(30).lab(
            "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", 7.4, "%", 20, "H"
        ),
    )
    add(
        P("r05f-ferritin-rls", 49),
        lambda p: (
            p.fasciculation(30)
            .condition(ICD, "G25.81", "Restless legs syndrome", 30, verification="differential")
            .lab("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", 30, "ng/mL", 10)
        ),
    )
    add(
        P("neg-ferritin-no-rls", 49),
        lambda p: p.fasciculation(30).lab(
            "2276-4", "Ferritin [Mass/volume] in Serum or Plasma", 30, "ng/mL", 10
        ),
    )
    add(
        P("r05g-k-diuretic", 71),
        lambda p: (
            p.fasciculation(30)
            .lab("2823-3", "Potassium [Moles/volume] in Serum or Plasma", 3.0, "mmol/L", 4, "L", 3.5, 5.1)
            .med("310429", "furosemide 20 MG Oral Tablet", 60)
        ),
    )
    add(
        P("r05h-spep", 74, "male"),
        lambda p: p.fasciculation(30).lab(
            "33358-3",
            "Protein.monoclonal [Mass/volume] in Serum or Plasma by Electrophoresis",
            0.8,
            "g/dL",
            15,
        ),
    )
    add(
        P("r05i-gad7", 28),
        lambda p: (
            p.fasciculation(30)
            .full_workup()
            .lab("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score", 15, "{score}", 5)
        ),
    )
    add(
        P("r06-cramps", 39),
        lambda p: p.fasciculation(60).condition(ICD, "R25.2", "Cramp and spasm", 60).full_workup(),
    )
    add(
        P("r06-als-fear", 31),
        lambda p: (
            p.fasciculation(60)
            .condition(
                ICD,
                "F41.1",
                "Generalized anxiety disorder",
                50,
                note="Persistent fear of ALS despite reassurance",
            )
            .full_workup()
        ),
    )
    add(
        P("r07-myositis", 52),
        lambda p: p.fasciculation(30).condition(SCT, "249939004", "Proximal muscle weakness", 14).ck(800),
    )
    add(P("r08-emg-pending", 35), lambda p: p.fasciculation(60).full_workup().order(*EMG_CPT))
    add(P("r11-therapy", 42), lambda p: p.fasciculation(90).full_workup(40))
    add(
        P("r13-prednisone", 64),
        lambda p: p.fasciculation(30).full_workup().med("312615", "prednisone 20 MG Oral Tablet", 14),
    )
    add(P("r14-follow-up", 37), lambda p: p.fasciculation(45).full_workup(10))
    add(
        P("r17-pad", 62, "male"),
        lambda p: (
            p.fasciculation(30)
            .condition(ICD, "I10", "Essential (primary) hypertension", 2000)
            .condition(ICD, "M79.606", "Pain in leg, unspecified", 20, text="Calf pain on walking")
        ),
    )
    add(
        P("r18-sensory", 48),
        lambda p: p.fasciculation(40).full_workup().condition(ICD, "R20.2", "Paresthesia of skin", 25),
    )
    add(
        P("r19-rls", 45),
        lambda p: p.fasciculation(30).full_workup().condition(ICD, "G25.81", "Restless legs syndrome", 60),
    )
    add(P("r20-reassurance", 26), lambda p: p.fasciculation(20).full_workup(15))
    emg_report = (SCT, "42803009", "Electromyography (procedure)")
    add(
        P("r09-normal-emg-stable", 41),
        lambda p: (
            p.fasciculation(300)
            .full_workup(20)
            .procedure(*EMG_CPT, days=240)
            .report(
                *emg_report,
                days=240,
                conclusion="Normal study: fasciculation potentials only, no active denervation.",
                normal=True,
            )
        ),
    )
    add(
        P("r09-normal-emg-recent", 41),
        lambda p: (
            p.fasciculation(120)
            .full_workup(20)
            .procedure(*EMG_CPT, days=60)
            .report(
                *emg_report,
                days=60,
                conclusion="Normal study: fasciculation potentials only, no active denervation.",
                normal=True,
            )
        ),
    )
    add(
        P("r09-new-weakness", 47, "male"),
        lambda p: (
            p.fasciculation(300)
            .full_workup(20)
            .procedure(*EMG_CPT, days=240)
            .report(*emg_report, days=240, conclusion="Normal study.", normal=True)
            .condition(*WEAK, days=30)
        ),
    )
    add(
        P("r09-abnormal-emg", 55, "male"),
        lambda p: (
            p.fasciculation(300)
            .full_workup(20)
            .procedure(*EMG_CPT, days=240)
            .report(
                *emg_report,
                days=240,
                conclusion="Fibrillation potentials and positive sharp waves in two limbs.",
                normal=False,
            )
        ),
    )
    add(
        P("r10-msk-spasm", 38),
        lambda p: p.fasciculation(60).full_workup(20).condition(ICD, "M62.830", "Muscle spasm of back", 5),
    )
    add(
        P("r15-radiculopathy", 52),
        lambda p: (
            p.fasciculation(60).full_workup(20).condition(ICD, "M54.16", "Radiculopathy, lumbar region", 30)
        ),
    )
    add(
        P("r16-low-abi", 67, "male"),
        lambda p: (
            p.fasciculation(60)
            .full_workup(20)
            .exam_value("ABI-L", "Ankle-brachial index, left", 0.5, "{ratio}", 100)
            .exam_value("ABI-R", "Ankle-brachial index, right", 0.82, "{ratio}", 100)
        ),
    )
    add_issue11(add)
    add_issue19(add)
    add_issue17(add)
    add_taper(add)
    add(P("neg-refuted", 30), lambda p: p.fasciculation(20, verification="refuted"))
    add(P("neg-resolved", 30), lambda p: p.fasciculation(800, status="resolved"))
    add(P("bg50-r04", 44, background="bg-50-all"), lambda p: p.fasciculation(30))
    add(
        P("bg300-r01", 59, "male", background="bg-300-unrelated"),
        lambda p: p.fasciculation(30).condition(*WEAK, days=5),
    )
    add(
        P("bg2000-r01", 64, "male", background="bg-2000-unrelated"),
        lambda p: p.fasciculation(30).condition(*WEAK, days=5),
    )
    add(
        P("bg2000-no-trigger", 64, "male", background="bg-2000-all"),
        lambda p: p.condition(ICD, "I10", "Essential (primary) hypertension", 900),
    )
    return out


ALS = (ICD, "G12.21", "Amyotrophic lateral sclerosis")
ATROPHY = (SCT, "88092000", "Muscle atrophy")
NEURO_REF = (SCT, "308474002", "Referral to neurologist (procedure)")
EMG_REPORT = (SCT, "42803009", "Electromyography (procedure)")
PLAIN_EMG = "Needle EMG: no fibrillation potentials or positive sharp waves. Normal recruitment and motor unit morphology."
PREGNANT = (SCT, "77386006", "Pregnant")


def add_issue11(add: Callable[[P, Callable[[P], object]], None]) -> None:
    """Fixtures of issue 11 (clinical safety), both sides of every change; named s<section>-..."""
    # 1. No reassurance or therapy when the picture is not benign
    add(
        P("s1-als-weak-atrophy", 63, "male"),
        lambda p: (
            p.fasciculation(400)
            .condition(*ALS, days=200)
            .condition(*WEAK, days=100)
            .condition(*ATROPHY, days=100)
            .full_workup(40)
        ),
    )
    add(
        P("s1-als-under-neurology", 66, "male"),
        lambda p: p.fasciculation(400).condition(*ALS, days=200).order(*NEURO_REF, status="completed", days=150),
    )
    add(P("s1-sma", 34), lambda p: p.fasciculation(300).condition(ICD, "G12.9", "Spinal muscular atrophy, unspecified", 300).full_workup(40))
    add(P("s1-myopathy", 52), lambda p: p.fasciculation(300).condition(ICD, "G72.9", "Myopathy, unspecified", 200).full_workup(40))
    add(P("s1-thyrotoxicosis", 45), lambda p: p.fasciculation(90).condition(ICD, "E05.90", "Thyrotoxicosis, unspecified", 60).full_workup(40))
    add(P("s1-hyporeflexia-only", 44), lambda p: p.fasciculation(90).finding("405946002", "Hyporeflexia", 10).full_workup(40))
    add(P("s1-all-pending", 29), lambda p: p.fasciculation(60).full_workup(3, status="preliminary"))
    add(
        P("s1-cmp-liver-only", 38),
        lambda p: (
            p.fasciculation(90)
            .full_workup(40, cmp=False)
            .lab("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", 22, "U/L", 40)
            .lab("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", 24, "U/L", 40)
            .lab("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", 70, "U/L", 40)
        ),
    )
    # 2. No false critical alerts
    add(
        P("s2-charted-today", 58),
        lambda p: (
            p.fasciculation(0.2, onset=False)
            .condition(ICD, "R20.2", "Paresthesia of skin", 0.2, onset=False, text="Tingling in both hands for years")
        ),
    )
    add(
        P("s2-reported-weakness-new", 41),
        lambda p: p.fasciculation(2).condition(ICD, "R53.1", "Weakness", 1, asserter="Patient/fx-s2-reported-weakness-new"),
    )
    add(P("s2-new-focal-deficit", 67, "male"), lambda p: p.fasciculation(2).condition(*WEAK, days=1, text="Left arm weakness, MRC 3/5"))
    add(
        P("s2-diabetic-polyneuropathy", 78, "male"),
        lambda p: (
            p.fasciculation(60)
            .condition(ICD, "E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy", 2000)
            .condition(ICD, "R53.1", "Weakness", 10)
            .finding("405946002", "Hyporeflexia", 3)
        ),
    )
    add(
        P("s2-ascending", 36, "male"),
        lambda p: (
            p.fasciculation(10)
            .condition(ICD, "R53.1", "Weakness", 5, note="Ascending weakness from both feet over five days")
            .finding("37280007", "Areflexia", 1)
        ),
    )
    # 3. EMG reports
    add(
        P("s3-normal-negated-list", 39),
        lambda p: (
            p.fasciculation(200).full_workup(29).procedure(*EMG_CPT, days=60).report(*EMG_REPORT, days=60, conclusion=PLAIN_EMG, normal=False)
        ),
    )
    add(
        P("s3-myopathic", 48),
        lambda p: (
            p.fasciculation(200)
            .full_workup(29)
            .procedure(*EMG_CPT, days=60)
            .report(
                *EMG_REPORT,
                days=60,
                conclusion="Short-duration, low-amplitude polyphasic motor unit potentials with early recruitment in proximal muscles: myopathic pattern.",
                normal=False,
            )
        ),
    )
    add(
        P("s3-denervation-weak", 61, "male"),
        lambda p: (
            p.fasciculation(200)
            .condition(*WEAK, days=40)
            .procedure(*EMG_CPT, days=20)
            .report(
                *EMG_REPORT,
                days=20,
                conclusion="Fibrillation potentials and positive sharp waves in three regions with large long-duration MUAPs; no conduction block.",
                normal=False,
            )
            .order(*NEURO_REF, days=15)
        ),
    )
    add(
        P("s3-neuropathic", 57),
        lambda p: (
            p.fasciculation(200)
            .lab("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", 480, "pg/mL", 29)
            .report(*EMG_REPORT, days=20, conclusion="Length-dependent axonal sensorimotor polyneuropathy.", normal=False)
        ),
    )
    add(
        P("s3-neurogenic-minor", 64, "male"),
        lambda p: (
            p.fasciculation(400)
            .full_workup(29)
            .report(
                *EMG_REPORT,
                days=90,
                conclusion="Fasciculation potentials in calves. Mild chronic neurogenic change (occasional long-duration MUAPs), without fibrillations or positive sharp waves.",
                normal=False,
            )
        ),
    )
    add(
        P("s3-indeterminate", 42),
        lambda p: p.fasciculation(200).full_workup(29).report(*EMG_REPORT, days=90, conclusion="Abnormal study; see scanned report.", normal=False),
    )
    add(
        P("s3-coded-als", 70, "male"),
        lambda p: p.fasciculation(200).report(*EMG_REPORT, days=30, conclusion="", normal=False, conclusion_code=(SCT, "86044005", "Amyotrophic lateral sclerosis")),
    )
    # 4. Pregnancy and children
    add(
        P("s4-pregnant-cramps", 31),
        lambda p: (
            p.fasciculation(90)
            .condition(ICD, "Z33.1", "Pregnant state, incidental", 120)
            .condition(ICD, "R25.2", "Cramp and spasm", 60, text="Nocturnal leg cramps")
            .full_workup(29)
        ),
    )
    add(
        P("s4-pregnancy-status", 29),
        lambda p: p.fasciculation(90).answer("82810-3", "Pregnancy status", PREGNANT, 20, "social-history").full_workup(29),
    )
    add(
        P("s4-not-pregnant-status", 29),
        lambda p: (
            p.fasciculation(90)
            .answer("82810-3", "Pregnancy status", (SCT, "60001007", "Not pregnant"), 20, "social-history")
            .full_workup(29)
        ),
    )
    add(
        P("s4-cramps-normal-emg", 44, "male"),
        lambda p: (
            p.fasciculation(200)
            .condition(ICD, "R25.2", "Cramp and spasm", 150)
            .full_workup(29)
            .report(*EMG_REPORT, days=100, conclusion="Normal study: fasciculation potentials only.", normal=True)
        ),
    )
    add(P("s4-child-8", 8, "male"), lambda p: p.fasciculation(40))
    add(P("s4-child-weak", 10), lambda p: p.fasciculation(40).condition(*WEAK, days=10))
    add(P("s4-adolescent-15", 15), lambda p: p.fasciculation(90).full_workup(29))
    # 5. Facts that were lost
    add(P("s5-mrc-4", 50, "male"), lambda p: p.fasciculation(60).mrc("MRC muscle strength, right deltoid", 4))
    add(P("s5-mrc-5", 50, "male"), lambda p: p.fasciculation(60).mrc("MRC muscle strength, right deltoid", 5).full_workup(29))
    add(P("s5-r292-bare", 46), lambda p: p.fasciculation(60).condition(ICD, "R29.2", "Abnormal reflex", 10).full_workup(29))
    add(P("s5-r292-brisk", 46), lambda p: p.fasciculation(60).condition(ICD, "R29.2", "Abnormal reflex", 10, text="Brisk reflexes in both legs"))
    add(
        P("s5-electrolytes-no-range", 55),
        lambda p: (
            p.fasciculation(60)
            .lab("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", 1.5, "mg/dL", 5)
            .lab("2823-3", "Potassium [Moles/volume] in Serum or Plasma", 3.2, "mmol/L", 5)
            .lab("17861-6", "Calcium [Mass/volume] in Serum or Plasma", 8.1, "mg/dL", 5)
        ),
    )
    add(
        P("s5-electrolytes-normal-no-range", 55),
        lambda p: (
            p.fasciculation(60)
            .lab("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", 1.9, "mg/dL", 5)
            .lab("2823-3", "Potassium [Moles/volume] in Serum or Plasma", 4.0, "mmol/L", 5)
            .lab("17861-6", "Calcium [Mass/volume] in Serum or Plasma", 9.2, "mg/dL", 5)
        ),
    )
    add(
        P("s5-b6-plp", 59, "male"),
        lambda p: (
            p.fasciculation(60)
            .condition(*WEAK, days=10)
            .full_workup(20)
            .ck(150)
            .lab("2284-8", "Folate [Mass/volume] in Serum or Plasma", 9.0, "ng/mL", 20)
            .lab("2641-9", "Pyridoxal phosphate [Moles/volume] in Serum or Plasma", 45, "nmol/L", 20)
        ),
    )
    add(P("s5-text-only-fasciculation", 37), lambda p: p.local_condition("Fasciculations of both calves", 60))
    add(P("s5-twitch-only", 37), lambda p: p.local_condition("Eyelid twitching", 60))
    add(
        P("s5-phq9-item9", 33),
        lambda p: p.fasciculation(60).full_workup(20).answer("44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way", (LNC, "LA6569-3", "Several days"), 10),
    )
    add(
        P("s5-phq9-item9-zero", 33),
        lambda p: p.fasciculation(60).full_workup(20).answer("44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way", (LNC, "LA6568-5", "Not at all"), 10),
    )
    add(
        P("s5-pad-hand-numbness", 63, "male"),
        lambda p: (
            p.fasciculation(30)
            .condition(ICD, "I10", "Essential (primary) hypertension", 2000)
            .condition(ICD, "R20.0", "Anesthesia of skin", 20, text="Numbness of right hand")
        ),
    )
    add(P("s5-widespread", 35), lambda p: p.fasciculation(300, note="Widespread fasciculations, unchanged and not progressive for a year").full_workup(29))
    add(P("s5-spreading", 35), lambda p: p.fasciculation(300, note="Fasciculations now spreading from calves to both arms").full_workup(29))
    add(P("s5-eyelid-myokymia", 27), lambda p: p.condition(ICD, "G51.4", "Facial myokymia", 30, text="Eyelid myokymia, left lower lid"))
    add(
        P("s5-spep-flag-only", 61),
        lambda p: p.fasciculation(60).lab("24351-9", "Protein electrophoresis panel - Serum or Plasma", None, "", 10, "A"),
    )


def add_issue19(add: Callable[[P, Callable[[P], object]], None]) -> None:
    """Fixtures of issue 19 (seed coverage), both sides of every change; named sc<section>-..."""
    # 1. Findings the rules must read
    add(P("sc1-areflexia-only", 44), lambda p: p.fasciculation(90).finding("37280007", "Areflexia", 10).full_workup(40))
    add(P("sc1-areflexia-older", 80, "male"), lambda p: p.fasciculation(90).finding("37280007", "Areflexia", 10).full_workup(40))
    add(
        P("sc1-hyporeflexia-polyneuropathy", 58),
        lambda p: p.fasciculation(90).condition(ICD, "G62.9", "Polyneuropathy, unspecified", 700).finding("405946002", "Hyporeflexia", 10).full_workup(40),
    )
    add(P("sc1-hypotonia-text", 39), lambda p: p.fasciculation(90).local_condition("Hypotonia of both legs", 20).full_workup(40))
    add(
        P("sc1-hb-low", 45),
        lambda p: (
            p.fasciculation(90)
            .full_workup(40)
            .lab("718-7", "Hemoglobin [Mass/volume] in Blood", 8.1, "g/dL", 5, "LL", low=12.0, high=15.5)
            .lab("787-2", "MCV [Entitic volume] by Automated count", 108, "fL", 5, "H", low=80, high=100)
        ),
    )
    add(
        P("sc1-folate-low", 45),
        lambda p: p.fasciculation(90).full_workup(40).lab("2284-8", "Folate [Mass/volume] in Serum or Plasma", 1.9, "ng/mL", 5, "L", low=3.0),
    )
    add(
        P("sc1-calcium-high-range-only", 45),
        lambda p: p.fasciculation(90).full_workup(40).lab("17861-6", "Calcium [Mass/volume] in Serum or Plasma", 11.2, "mg/dL", 5, low=8.5, high=10.5),
    )
    add(
        P("sc1-results-in-range", 45),
        lambda p: (
            p.fasciculation(90)
            .full_workup(40)
            .lab("2284-8", "Folate [Mass/volume] in Serum or Plasma", 9.0, "ng/mL", 5, "N", low=3.0)
            .lab("2951-2", "Sodium [Moles/volume] in Serum or Plasma", 140, "mmol/L", 5, low=135, high=145)
            .lab("718-7", "Hemoglobin [Mass/volume] in Blood", 13.1, "g/dL", 5, low=12.0, high=15.5)
        ),
    )
    add(P("sc1-syringomyelia", 41), lambda p: p.fasciculation(90).condition(ICD, "G95.0", "Syringomyelia and syringobulbia", 900).full_workup(40))
    add(P("sc1-post-polio", 71, "male"), lambda p: p.fasciculation(90).condition(ICD, "G14", "Postpolio syndrome", 2000).full_workup(40))
    add(P("sc1-radiculopathy-lumbar", 52), lambda p: p.fasciculation(90).condition(ICD, "M54.16", "Radiculopathy, lumbar region", 200).full_workup(40))
    add(P("sc1-spinal-fusion", 57, "male"), lambda p: p.fasciculation(90).condition(ICD, "Z98.1", "Arthrodesis status", 800).full_workup(40))
    add(
        P("sc1-hemifacial-spasm", 55),
        lambda p: p.condition(ICD, "G51.4", "Facial myokymia", 30).condition(ICD, "G51.3", "Clonic hemifacial spasm", 400),
    )
    add(
        P("sc1-neuromyotonia-myasthenia", 50),
        lambda p: p.condition(ICD, "G71.19", "Other specified myotonic disorders", 120, text="Neuromyotonia (Isaacs syndrome)")
        .condition(ICD, "G70.00", "Myasthenia gravis without (acute) exacerbation", 900)
        .full_workup(40),
    )
    add(
        P("sc1-neuromyotonia-alone", 50),
        lambda p: p.condition(ICD, "G71.19", "Other specified myotonic disorders", 120, text="Neuromyotonia (Isaacs syndrome)").full_workup(40),
    )
    add(P("sc1-envenomation", 38, "male"), lambda p: p.fasciculation(20).condition(ICD, "T63.001A", "Toxic effect of unspecified snake venom, accidental (unintentional), initial encounter", 21).full_workup(10))
    add(P("sc1-myalgia-labs", 42), lambda p: p.fasciculation(90).condition(ICD, "M79.10", "Myalgia, unspecified site", 60).full_workup(40))
    add(
        P("sc1-myalgia-carbamazepine", 42),
        lambda p: (
            p.fasciculation(90)
            .condition(ICD, "M79.10", "Myalgia, unspecified site", 60, text="Muscle aching and stiffness, poor exercise tolerance")
            .full_workup(40)
            .ck(120, 40)
            .lab("2284-8", "Folate [Mass/volume] in Serum or Plasma", 9.0, "ng/mL", 40, low=3.0)
            .lab("2641-9", "Pyridoxal phosphate [Moles/volume] in Serum or Plasma", 45, "nmol/L", 40, low=20, high=125)
        ),
    )
    add(
        P("sc1-myalgia-calves-pad", 63, "male"),
        lambda p: p.fasciculation(30).condition(ICD, "I10", "Essential (primary) hypertension", 2000).condition(ICD, "M79.10", "Myalgia, unspecified site", 20, text="Myalgia of both calves"),
    )
    # 2. No "normal exam" from silence
    add(P("sc2-exam-normal", 35), lambda p: p.fasciculation(90).full_workup(40).normal_exam(10).exam("Fasciculations seen", "Present", 10, site="Left calf"))
    add(P("sc2-exam-partial", 35), lambda p: p.fasciculation(90).full_workup(40).mrc("MRC muscle strength, all groups", 5, 10).exam("Deep tendon reflexes", "2+", 10))
    add(P("sc2-exam-reflexes-absent", 47), lambda p: p.fasciculation(90).full_workup(40).exam("Ankle reflexes", "Absent", 10))
    add(P("sc2-exam-plantar-extensor", 47), lambda p: p.fasciculation(90).full_workup(40).exam("Plantar response, right", "Extensor", 10))
    add(P("sc2-exam-bulk-reduced", 47), lambda p: p.fasciculation(90).full_workup(40).exam("Muscle bulk", "Reduced", 10, site="Left thenar eminence"))
HCTZ = ("310798", "Hydrochlorothiazide 25 MG Oral Tablet")
SYNTHEA_BMP = (  # whole-blood LOINC codes as Synthea writes a basic metabolic panel
    ("2339-0", "Glucose [Mass/volume] in Blood", 92, "mg/dL"),
    ("6299-2", "Urea nitrogen [Mass/volume] in Blood", 14, "mg/dL"),
    ("38483-4", "Creatinine [Mass/volume] in Blood", 0.9, "mg/dL"),
    ("49765-1", "Calcium [Mass/volume] in Blood", 9.4, "mg/dL"),
    ("2947-0", "Sodium [Moles/volume] in Blood", 140, "mmol/L"),
    ("6298-4", "Potassium [Moles/volume] in Blood", 4.2, "mmol/L"),
    ("2069-3", "Chloride [Moles/volume] in Blood", 104, "mmol/L"),
    ("20565-8", "Carbon dioxide, total [Moles/volume] in Blood", 26, "mmol/L"),
)


def panel_report(p: P, code: str, display: str, days: float, results: list[Res]) -> P:
    """A final lab DiagnosticReport listing ``results`` (Observations already added to ``p``)."""
    p.res.append(
        {
            "resourceType": "DiagnosticReport",
            "id": p._id("dr"),
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
            "code": cc(LNC, code, display),
            "subject": p.subject(),
            "effectiveDateTime": ago(days),
            **({"result": [{"reference": f"Observation/{r['id']}"} for r in results]} if results else {}),
        }
    )
    return p


def labs_of(p: P, rows: tuple[tuple[str, str, float, str], ...], days: float) -> list[Res]:
    """Add one final lab Observation per row; returns them (for a report's result list)."""
    start = len(p.res)
    for code, display, value, unit in rows:
        p.lab(code, display, value, unit, days)
    return p.res[start:]


def survey(p: P, code: str, display: str, score: int, days: float) -> P:
    """A questionnaire score as US Core and Synthea file it (category survey)."""
    p.res.append(
        {
            "resourceType": "Observation",
            "id": p._id("o"),
            "status": "final",
            "category": [cc("http://terminology.hl7.org/CodeSystem/observation-category", "survey")],
            "code": cc(LNC, code, display),
            "subject": p.subject(),
            "effectiveDateTime": ago(days),
            "valueQuantity": {"value": score, "unit": "{score}", "system": UCUM, "code": "{score}"},
        }
    )
    return p


def add_issue17(add: Callable[[P, Callable[[P], object]], None]) -> None:
    """Issue 17 (alert burden): cards that were wrong on real-shaped records (a2-) and ranking
    with specific cards before generic ones (a3-). Override memory is exercised by the e2e tests."""
    years = 365.25
    # s.2: only HbA1c or a fasting glucose is a diabetes screen.
    add(
        P("a2-random-glucose", 48),
        lambda p: p.fasciculation(300).full_workup(20, a1c=False).lab("2345-7", "Glucose [Mass/volume] in Serum or Plasma", 104, "mg/dL", 20),
    )
    add(
        P("a2-fasting-glucose", 48),
        lambda p: p.fasciculation(300).full_workup(20, a1c=False).lab("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", 92, "mg/dL", 20),
    )
    # s.2: a Synthea-shaped basic metabolic panel (whole-blood codes + DiagnosticReport 51990-0).
    add(
        P("a2-synthea-bmp", 52),
        lambda p: panel_report(p.fasciculation(300).full_workup(20, cmp=False), "51990-0", "Basic metabolic panel - Blood", 5, labs_of(p, SYNTHEA_BMP, 5)),
    )
    # The report alone counts when its results are filed: Na, Cl, creatinine, random glucose and
    # bicarbonate (no K or Ca, so the components alone would not make a CMP).
    add(
        P("a2-bmp-report", 52),
        lambda p: panel_report(
            p.fasciculation(300).full_workup(20, cmp=False),
            "51990-0",
            "Basic metabolic panel - Blood",
            5,
            labs_of(
                p,
                (
                    ("2947-0", "Sodium [Moles/volume] in Blood", 140, "mmol/L"),
                    ("2069-3", "Chloride [Moles/volume] in Blood", 103, "mmol/L"),
                    ("38483-4", "Creatinine [Mass/volume] in Blood", 0.8, "mg/dL"),
                    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", 90, "mg/dL"),
                    ("1963-8", "Bicarbonate [Moles/volume] in Serum or Plasma", 25, "mmol/L"),
                ),
                5,
            ),
        ),
    )
    add(
        P("a2-bmp-report-empty", 52),
        lambda p: panel_report(p.fasciculation(300).full_workup(20, cmp=False), "51990-0", "Basic metabolic panel - Blood", 5, []),
    )
    # s.2: a test done before its look-back is listed with when it was last done.
    add(P("a2-cbc-4-years", 41), lambda p: p.fasciculation(60).lab("58410-2", "CBC panel - Blood by Automated count", None, "", 4 * years + 30))
    # s.2: long-standing spasticity with a known cause (cerebral palsy) is not a new red flag.
    add(
        P("a2-cp-spasticity-1993", 33),
        lambda p: p.fasciculation(40).condition(ICD, "G80.1", "Spastic diplegic cerebral palsy", 32 * years).condition(SCT, "221360009", "Spasticity", 32 * years),
    )
    add(
        P("a2-cp-spasticity-new", 33),
        lambda p: p.fasciculation(40).condition(ICD, "G80.1", "Spastic diplegic cerebral palsy", 32 * years).condition(SCT, "221360009", "Spasticity", 20),
    )
    add(
        P("a2-spasticity-1993-no-cause", 33),
        lambda p: p.fasciculation(40).condition(SCT, "221360009", "Spasticity", 32 * years),
    )
    # s.2: a prescription left active since 1978 is not trusted as current; a renewal is.
    add(P("a2-thiazide-1978", 70), lambda p: p.fasciculation(300).full_workup(20).med(*HCTZ, days=(2026 - 1978) * years))
    add(
        P("a2-thiazide-renewed", 70),
        lambda p: p.fasciculation(300).full_workup(20).med(*HCTZ, days=(2026 - 1978) * years).med(*HCTZ, days=40),
    )
    # s.2: PHQ-2 and PHQ-A (teen PHQ-9) count as depression screens.
    gad7 = ("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score", 3, "{score}")
    add(
        P("a2-phq2", 40),
        lambda p: survey(
            p.fasciculation(300).full_workup(20, screening=False).lab(*gad7, 20),
            "55758-7",
            "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]",
            1,
            20,
        ),
    )
    # A PHQ-A done at 17 (Synthea screens adolescents with it) still counts at 18.
    add(
        P("a2-phqa-at-17", 18),
        lambda p: p.fasciculation(300).full_workup(20, screening=False).lab(*gad7, 20).lab("89204-2", "Patient Health Questionnaire-9: Modified for Teens total score [Reported.PHQ]", 4, "{score}", 150),
    )
    add(P("a2-gad7-only", 40), lambda p: p.fasciculation(300).full_workup(20, screening=False).lab(*gad7, 20))
    # s.3: a current thiazide is a specific card and is never hidden behind generic ones.
    add(P("a3-thiazide-benign", 45), lambda p: p.fasciculation(300).full_workup(20).med(*HCTZ, days=30))
    add(P("a3-benign-no-drug", 45), lambda p: p.fasciculation(300).full_workup(20))


def add_taper(add: Callable[[P, Callable[[P], object]], None]) -> None:
    """Issue 19 s.1: a systemic corticosteroid course that ended within 30 days is a drug cause
    (seed 002: "particularly with ... rapid tapering"); one that ended long ago is not."""
    pred = ("312615", "prednisone 20 MG Oral Tablet")
    add(P("t19-taper-ended-recently", 52), lambda p: p.fasciculation(60).full_workup(20).course(*pred, days=40, ended=10))
    add(P("t19-taper-stopped-by-supply", 52), lambda p: p.fasciculation(60).full_workup(20).course(*pred, days=20, status="stopped", supply_days=14))
    add(P("t19-taper-ended-long-ago", 52), lambda p: p.fasciculation(300).full_workup(20).course(*pred, days=400, ended=200))
    # A finished course with no end recorded cannot be called recent.
    add(P("t19-taper-no-end", 52), lambda p: p.fasciculation(300).full_workup(20).course(*pred, days=20))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    ps = patients()
    for p in ps:
        (OUT / f"{p.name}.json").write_text(json.dumps(p.bundle(), indent=1) + "\n")
    print(f"wrote {len(ps)} fixtures to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
