"""Issue 17 sections 2 and 3, below the HTTP layer: the ranking discipline (specific before
generic, generic only when nothing specific is shown), override memory as the topic applies it
(fingerprints, expiry, accepted orders, never a critical card), and the record facts it needs
(dispense recency, withdrawn orders, panel reports). The golden fixtures a2-/a3- cover the same
rules end to end; tests/e2e/test_override_memory.py covers storage and the real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cds_service.clinical.engine import discipline, evaluate
from cds_service.clinical.memory import Memory, fingerprint
from cds_service.clinical.moments import Moment
from cds_service.clinical.record_builder import RecordBuilder
from cds_service.clinical.record_model import PatientRecord
from cds_service.clinical.rules import RULES
from cds_service.clinical.rules.base import DEFAULT_LOOKBACKS, Basis, Hit, Suggest
from cds_service.clinical.terminology import ICD10CM, LOINC, RXNORM, terminology
from cds_service.registry import Snooze

T = terminology()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def build(*resources: dict[str, Any]) -> PatientRecord:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    return RecordBuilder(T).build("p1", NOW, by_type)


def fasciculation() -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "c-fasc",
        "code": {"coding": [{"system": ICD10CM, "code": "R25.3"}]},
        "onsetDateTime": ago(300),
    }


def hctz(rid: str, authored_days: float) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "310798"}], "text": "HCTZ 25 mg"},
        "authoredOn": ago(authored_days),
    }


def hits_of(rec: PatientRecord, budget: int = 4, snoozes: tuple[Snooze, ...] = ()) -> list[tuple[str, str]]:
    result = evaluate(rec, Moment.CHART, NOW, dict(DEFAULT_LOOKBACKS), budget, snoozes=snoozes)
    return [(h.rule, h.indicator) for h in result.hits]


# ------------------------------------------------------------------ ranking (section 3)


def test_specific_card_is_never_cut_by_the_budget_behind_generic_ones() -> None:
    hits = [
        Hit("R11", "therapy-gabapentin-first", "info"),
        Hit("R12", "screening-missing", "info"),
        Hit("R14", "follow-up", "info"),
        Hit("R13", "drug-causes", "info"),
    ]
    result = discipline(hits, 1, RULES)
    assert [h.rule for h in result.hits] == ["R13"]
    assert {h.rule for h in result.deferred} == {"R11", "R12", "R14"}
    assert result.withheld == []  # deferred is not "cut by the budget"


def test_generic_cards_are_shown_when_nothing_specific_is_pending() -> None:
    hits = [Hit("R20", "reassurance", "info"), Hit("R12", "screening-missing", "info"), Hit("R14", "follow-up", "info")]
    result = discipline(hits, 4, RULES)
    assert [h.rule for h in result.hits] == ["R12", "R14", "R20"]
    assert result.deferred == []


def test_severity_still_ranks_first_and_specific_before_generic_within_it() -> None:
    hits = [Hit("R04", "lab-gaps", "info"), Hit("R05c", "tsh-abnormal", "warning"), Hit("R13", "drug-causes", "info")]
    assert [h.rule for h in discipline(hits, 4, RULES).hits] == ["R05c", "R04", "R13"]


def test_current_thiazide_beats_the_therapy_card_in_a_full_evaluation() -> None:
    labs = [
        ("4548-4", 5.4, "%"), ("58410-2", None, ""), ("24323-8", None, ""), ("2132-9", 480, "pg/mL"),
        ("3016-3", 1.8, "m[IU]/L"), ("24351-9", None, ""), ("19123-9", 2.0, "mg/dL"),
        ("70274-6", 3, "{score}"), ("44261-6", 2, "{score}"),
    ]  # fmt: skip
    observations = []
    for code, value, unit in labs:
        o: dict[str, Any] = {
            "resourceType": "Observation", "id": f"o-{code}", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": ago(20),
        }  # fmt: skip
        if value is not None:
            o["valueQuantity"] = {"value": value, "unit": unit, "code": unit}
        observations.append(o)
    benign = build(fasciculation(), *observations)
    assert ("R11", "info") in hits_of(benign, budget=1) or ("R14", "info") in hits_of(benign, budget=1)
    with_drug = build(fasciculation(), *observations, hctz("m1", 30))
    assert hits_of(with_drug, budget=1) == [("R13", "info")]


# ------------------------------------------------------------------ record facts (section 2)


def test_drug_recorded_active_since_1978_asks_for_confirmation_unless_dispensed_recently() -> None:
    old = build(fasciculation(), hctz("m1", 48 * 365.25))
    result = evaluate(old, Moment.CHART, NOW, dict(DEFAULT_LOOKBACKS), 10)
    r13 = next(h for h in result.hits if h.rule == "R13")
    assert any("recorded active since 1978, confirm it is current" in line for line in r13.lines)
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "d1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "310798"}]},
        "whenHandedOver": ago(25),
    }
    current = build(fasciculation(), hctz("m1", 48 * 365.25), dispense)
    result = evaluate(current, Moment.CHART, NOW, dict(DEFAULT_LOOKBACKS), 10)
    r13 = next(h for h in result.hits if h.rule == "R13")
    assert not any("confirm it is current" in line for line in r13.lines)
    not_handed = build(fasciculation(), hctz("m1", 48 * 365.25), dict(dispense, status="cancelled"))
    assert not_handed.dispensed == {}


def test_panel_report_counts_only_with_filed_results() -> None:
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": "dr1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "51990-0"}]},
        "effectiveDateTime": ago(5),
        "result": [{"reference": "http://ehr.example/fhir/Observation/na1/_history/2"}],
    }
    sodium = {
        "resourceType": "Observation", "id": "na1", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2947-0"}]}, "effectiveDateTime": ago(5),
        "valueQuantity": {"value": 140, "unit": "mmol/L", "code": "mmol/L"},
    }  # fmt: skip
    filed = build(fasciculation(), report, sodium)
    assert filed.orders[0].results == ("Observation/na1",)
    gaps = evaluate(filed, Moment.CHART, NOW, dict(DEFAULT_LOOKBACKS), 10).hits
    assert "CMP" not in next(h for h in gaps if h.rule == "R04").values["missing"]
    unfiled = build(fasciculation(), report)  # the result it lists is not in the record
    gaps = evaluate(unfiled, Moment.CHART, NOW, dict(DEFAULT_LOOKBACKS), 10).hits
    assert "CMP" in next(h for h in gaps if h.rule == "R04").values["missing"]


def test_random_glucose_is_not_a_diabetes_screen_but_fasting_glucose_is() -> None:
    def missing(code: str) -> str:
        glucose = {
            "resourceType": "Observation", "id": "g1", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": ago(5),
            "valueQuantity": {"value": 95, "unit": "mg/dL", "code": "mg/dL"},
        }  # fmt: skip
        hits = evaluate(build(fasciculation(), glucose), Moment.CHART, NOW, dict(DEFAULT_LOOKBACKS), 10).hits
        return next(h for h in hits if h.rule == "R04").values["missing"]

    assert "HbA1c" in missing("2345-7")
    assert "HbA1c" not in missing("1558-6")


# ------------------------------------------------------------------ override memory (section 3)


def _snooze(hit: Hit, outcome: str = "overridden", **kw: Any) -> Snooze:
    base: dict[str, Any] = {
        "rule_id": hit.rule,
        "fingerprint": fingerprint(hit),
        "outcome": outcome,
        "issued_at": NOW - timedelta(days=2),
        "until": NOW + timedelta(days=28),
        "concepts": (),
    }
    base.update(kw)
    return Snooze(**base)


def _gaps_hit() -> Hit:
    h = Hit("R04", "lab-gaps", "info", suggest=[Suggest("hba1c")])
    h.values.update(missing="HbA1c", count="1")
    return h


def test_override_snoozes_the_same_card_and_says_so() -> None:
    rec = build(fasciculation())
    snoozed = _gaps_hit()
    other = Hit("R13", "drug-causes", "info", [Basis("HCTZ (active)", NOW, "MedicationRequest/m1")])
    result = discipline([_gaps_hit(), other], 4, RULES, Memory([_snooze(snoozed)], rec))
    assert [h.rule for h in result.hits] == ["R13"]
    assert [h.rule for h, _ in result.snoozed] == ["R04"]
    assert result.hits[-1].snoozed == ["R04"]
    assert any("1 card snoozed after override (R04)" in line for line in result.hits[-1].lines)


def test_changed_inputs_or_expiry_bring_the_card_back() -> None:
    rec = build(fasciculation())
    memory = Memory([_snooze(_gaps_hit())], rec)
    changed = _gaps_hit()
    changed.values.update(missing="HbA1c, CBC", count="2")  # a new gap: different inputs
    assert memory.holds(changed) is None
    new_basis = _gaps_hit()
    new_basis.basis.append(Basis("TSH: pending", NOW, "Observation/t2"))
    assert memory.holds(new_basis) is None
    expired = Memory([_snooze(_gaps_hit(), until=NOW - timedelta(seconds=1))], rec)
    assert expired.holds(_gaps_hit()) is None
    other_rule = Memory([_snooze(_gaps_hit(), rule_id="R12")], rec)
    assert other_rule.holds(_gaps_hit()) is None


def test_a_critical_card_is_never_snoozed_even_with_a_matching_memory() -> None:
    rec = build(fasciculation())
    critical = Hit("R01", "red-flag-motor", "critical", [Basis("Spasticity", NOW, "Condition/c1")])
    memory = Memory([_snooze(critical)], rec)  # storage never returns one; the topic refuses anyway
    assert memory.holds(critical) is None
    result = discipline([critical], 4, RULES, memory)
    assert [h.rule for h in result.hits] == ["R01"] and result.snoozed == []


def test_accepted_suggestion_snoozes_until_the_order_is_resulted_or_cancelled() -> None:
    accepted = _snooze(_gaps_hit(), outcome="accepted", concepts=("hba1c",))
    open_order = {
        "resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": "4548-4"}]}, "authoredOn": ago(1),
    }  # fmt: skip
    assert Memory([accepted], build(fasciculation(), open_order)).holds(_gaps_hit()) is not None
    cancelled = dict(open_order, status="revoked")
    assert Memory([accepted], build(fasciculation(), cancelled)).holds(_gaps_hit()) is None
    result = {
        "resourceType": "Observation", "id": "a1c", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "4548-4"}]}, "effectiveDateTime": ago(1),
        "valueQuantity": {"value": 5.5, "unit": "%", "code": "%"},
    }  # fmt: skip
    assert Memory([accepted], build(fasciculation(), result)).holds(_gaps_hit()) is None
    # A result from before the card was issued is not the answer to the accepted order.
    old = dict(result, effectiveDateTime=ago(400))
    assert Memory([accepted], build(fasciculation(), old)).holds(_gaps_hit()) is not None


def test_snoozed_card_frees_its_place_in_the_budget() -> None:
    rec = build(fasciculation())
    hits = [_gaps_hit(), Hit("R05c", "tsh-abnormal", "warning"), Hit("R13", "drug-causes", "info")]
    result = discipline(hits, 2, RULES, Memory([_snooze(_gaps_hit())], rec))
    assert [h.rule for h in result.hits] == ["R05c", "R13"] and result.withheld == []


def test_a_snoozed_specific_card_still_keeps_generic_cards_back() -> None:
    """The snooze hides the card the clinician answered; it does not let the generic ones in."""
    rec = build(fasciculation())
    hits = [_gaps_hit(), Hit("R14", "follow-up", "info")]
    result = discipline(hits, 4, RULES, Memory([_snooze(_gaps_hit())], rec))
    assert result.hits == [] and [h.rule for h in result.deferred] == ["R14"]


# ------------------------------------------------------------------ storage (real SQLite)


def test_store_remembers_overrides_but_never_for_a_critical_card(tmp_path: Any) -> None:
    import asyncio

    from cds_service.protocol.models import FeedbackItem
    from cds_service.storage.db import upgrade
    from cds_service.storage.repo import IssuedCard, SnoozePolicy, Store

    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    upgrade(url)

    async def run() -> tuple[list[str], list[str], list[str]]:
        from cds_service.storage.db import make_engine

        engine = make_engine(url)
        store = Store(engine)
        try:
            issued = [
                IssuedCard("c-info", "svc", "R04", "info", "patient-view", "h", "p" * 32, NOW, "fp1", ("hba1c",)),
                IssuedCard("c-crit", "svc", "R01", "critical", "patient-view", "h", "p" * 32, NOW, "fp2"),
                IssuedCard("c-other", "svc", "R12", "info", "patient-view", "h", "q" * 32, NOW, "fp3"),
            ]
            await store.record_issued(issued)
            items = [
                FeedbackItem.model_validate({"card": c, "outcome": "overridden", "outcomeTimestamp": NOW.isoformat()})
                for c in ("c-info", "c-crit", "c-other")
            ]
            await store.save_feedback("svc", items, NOW, SnoozePolicy(30, 90))
            await store.save_feedback("svc", items, NOW, SnoozePolicy(30, 90))  # a repeat: no second memory
            mine = await store.active_snoozes("svc", "p" * 32, NOW + timedelta(days=1))
            later = await store.active_snoozes("svc", "p" * 32, NOW + timedelta(days=31))
            off_store = await store.active_snoozes("other-svc", "p" * 32, NOW)
            return [s.rule_id for s in mine], [s.rule_id for s in later], [s.rule_id for s in off_store]
        finally:
            await engine.dispose()

    mine, later, other_service = asyncio.run(run())
    assert mine == ["R04"]  # not the critical R01, not another patient's R12
    assert later == [] and other_service == []
