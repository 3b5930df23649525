"""Property tests: arbitrary, EHR-shaped clinical data through the record, the rules and the renderer.

EHRs send what they have: R4, STU3 or DSTU2 shapes, missing fields, a single object where R4 wants an
array, a number where a string belongs, dates like ``2026-13-45``. The prefetch and draft orders are
raw JSON by design (``protocol.models``), so every reader downstream must cope. These tests generate
such data with hypothesis, biased towards the codes the rules know (otherwise nothing would fire), and
run the same chain as the service handler (``Topic.assess``: record, rules, cards) for all three hooks. The
properties: nothing raises, and every response is a conformant CDS Hooks response
(``response_problems(...) == []``) that also parses with the strict response model.

A second property covers the prefetch engine: any JSON value under any prefetch key gives data or a
412, never another exception. Example counts are bounded so the module runs in seconds.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.clinical.drafts import read_drafts
from cds_service.clinical.services import WorkupService, prefetch_templates
from cds_service.clinical.terminology import ICD10CM, LOINC, RXNORM, SNOMED, terminology
from cds_service.data.gather import GatheredData, Gatherer, KeyResult, KeyState
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import CONTEXT_MODELS, CdsResponse, Hook, HookRequest, dump
from cds_service.protocol.validate import response_problems
from cds_service.registry import HookCall
from cds_service.settings import Settings
from cds_tools import fixtures

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

T = terminology()
SETTINGS = Settings()
SERVICE = WorkupService()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PATIENT = "pt-fuzz"
FUZZ = settings(
    max_examples=int(os.environ.get("CDS_FUZZ_EXAMPLES", "80")),  # ~5 s per test; raise it to hunt
    deadline=None,  # no timed assertions: CI machines are slow and shared
    database=None,  # nothing written to the checkout; failures print their reproducing example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ------------------------------------------------------------------------------------------ leaves

KNOWN_CODES = sorted({(c.system, c.code) for k in T.concepts.values() for c in k.codes})
TRIGGER = {"system": ICD10CM, "code": "R25.3", "display": "Fasciculation"}
SYSTEMS = [SNOMED, LOINC, ICD10CM, RXNORM, "urn:local", "http://example.org/codes"]
UNITS = [
    "U/L",
    "m[IU]/L",
    "mg/dL",
    "mmol/L",
    "pg/mL",
    "%",
    "ng/mL",
    "{score}",
    "1",
    "ukat/L",
    "mmol/mol",
    "?",
]

# JSON as orjson hands it to the service: 64-bit integers, finite floats, any strings.
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_any = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


# A wrong-typed value for one field: cheap to draw (the recursive ``json_any`` in every field of every
# resource would make generation, not the service, the cost of the test).
wrong_type = st.one_of(
    json_leaf, st.lists(json_leaf, max_size=2), st.dictionaries(st.text(max_size=4), json_leaf, max_size=2)
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the well-shaped value, sometimes absent (None, dropped by ``obj``) or of a wrong type."""
    return st.one_of(strategy, strategy, strategy, st.none(), wrong_type)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object whose fields may each be missing or of the wrong type."""
    return st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


def one_or_many(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """R4 arrays, and the lone object STU3/DSTU2 (or a sloppy EHR) sends instead."""
    return st.one_of(st.lists(strategy, min_size=1, max_size=3), strategy)


dates = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.isoformat()
    ),
    st.integers(min_value=0, max_value=4000).map(
        lambda days: (NOW - timedelta(days=days)).date().isoformat()
    ),
    st.sampled_from(
        [
            "2026",
            "2026-05",
            "2026-13-45",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2026-05-01T10:00:00",
            "yesterday",
            "",
        ]
    ),
)
known_coding = st.sampled_from(KNOWN_CODES).map(lambda sc: {"system": sc[0], "code": sc[1]})
any_coding = obj(system=st.sampled_from(SYSTEMS), code=st.text(max_size=8), display=st.text(max_size=20))
coding = st.one_of(known_coding, known_coding, st.just(TRIGGER), any_coding)
codeable = obj(
    coding=one_or_many(coding),
    text=st.one_of(
        st.sampled_from(["fasciculations", "muscle twitching", "weakness", "Flexeril 10 mg", "EMG"]),
        st.text(max_size=20),
    ),
)
quantity = obj(
    value=st.one_of(
        st.floats(min_value=0, max_value=5000, allow_nan=False),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    unit=st.sampled_from(UNITS),
    code=st.sampled_from(UNITS),
    system=st.just("http://unitsofmeasure.org"),
)
reference = st.one_of(
    obj(reference=st.sampled_from([f"Patient/{PATIENT}", "Practitioner/dr-1", "RelatedPerson/r", "#m1"])),
    st.text(max_size=10),
)
annotation = obj(text=st.text(max_size=30))
status_obs = st.sampled_from(["final", "amended", "corrected", "preliminary", "registered", "cancelled"])
status_order = st.sampled_from(["draft", "active", "on-hold", "completed", "revoked", "entered-in-error"])
clinical_status = st.one_of(
    obj(coding=one_or_many(obj(code=st.sampled_from(["active", "resolved", "inactive", "remission"])))),
    st.sampled_from(["active", "resolved"]),  # DSTU2: a plain code
)
ids = st.one_of(st.uuids().map(str), st.text(max_size=6))

# ------------------------------------------------------------------------------------------ resources


def resource(resource_type: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return obj(id=ids, **fields).map(lambda d: {"resourceType": resource_type, **d})


conditions = resource(
    "Condition",
    code=codeable,
    clinicalStatus=clinical_status,
    verificationStatus=st.one_of(
        obj(coding=one_or_many(obj(code=st.sampled_from(["confirmed", "refuted", "entered-in-error"])))),
        st.just("confirmed"),
    ),
    onsetDateTime=dates,
    recordedDate=dates,
    dateRecorded=dates,  # DSTU2
    onsetPeriod=obj(start=dates),
    asserter=reference,
    recorder=reference,
    note=one_or_many(annotation),
    subject=reference,
    patient=reference,  # DSTU2
)
observations = resource(
    "Observation",
    status=status_obs,
    code=codeable,
    category=one_or_many(codeable),
    valueQuantity=quantity,
    valueCodeableConcept=codeable,
    valueString=st.sampled_from(["absent", "negative", "present", "2+ brisk", ""]),
    valueBoolean=st.booleans(),
    valueInteger=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    interpretation=one_or_many(
        obj(coding=one_or_many(obj(code=st.sampled_from(["H", "L", "HH", "LL", "N", "NEG", "A"]))))
    ),
    referenceRange=one_or_many(obj(low=quantity, high=quantity)),
    effectiveDateTime=dates,
    effectivePeriod=obj(start=dates),
    issued=dates,
    dataAbsentReason=codeable,
    performer=one_or_many(reference),
    comments=st.text(max_size=20),  # DSTU2
)
medications = st.one_of(
    *(
        resource(
            kind,
            status=st.sampled_from(["active", "on-hold", "intended", "stopped", "completed"]),
            medicationCodeableConcept=codeable,
            medicationReference=reference,
            contained=one_or_many(resource("Medication", code=codeable).map(lambda m: {**m, "id": "m1"})),
            authoredOn=dates,
            dateWritten=dates,  # DSTU2 MedicationOrder
            effectiveDateTime=dates,
            effectivePeriod=obj(start=dates),
            dosageInstruction=one_or_many(obj(route=codeable, text=st.text(max_size=10))),
            dosage=one_or_many(obj(route=codeable)),
        )
        for kind in ("MedicationRequest", "MedicationStatement", "MedicationOrder")
    )
)
orders = st.one_of(
    *(
        resource(
            kind,
            status=st.one_of(status_order, status_obs),
            code=codeable,
            authoredOn=dates,
            occurrenceDateTime=dates,
            performedDateTime=dates,
            performedPeriod=obj(start=dates),
            effectiveDateTime=dates,
            issued=dates,
            conclusion=st.text(max_size=30),
            conclusionCode=one_or_many(codeable),
        )
        for kind in ("ServiceRequest", "ProcedureRequest", "Procedure", "DiagnosticReport")
    )
)
patients = resource(
    "Patient",
    birthDate=dates,
    gender=st.sampled_from(["male", "female", "other", "unknown"]),
).map(lambda p: {**p, "id": PATIENT} if "id" not in p or isinstance(p["id"], str) else p)
appointments = resource(
    "Appointment", status=st.sampled_from(["proposed", "booked", "cancelled"]), start=dates
)
TRIGGER_CONDITION = {
    "resourceType": "Condition",
    "id": "trigger",
    "code": {"coding": [TRIGGER]},
    "clinicalStatus": {"coding": [{"code": "active"}]},
    "onsetDateTime": (NOW - timedelta(days=30)).isoformat(),
}
trigger_condition = st.just(TRIGGER_CONDITION)
generated = st.fixed_dictionaries(
    {
        "Patient": st.lists(patients, max_size=1),
        "Condition": st.tuples(st.lists(trigger_condition, max_size=1), st.lists(conditions, max_size=4)).map(
            lambda t: t[0] + t[1]
        ),
        "Observation": st.lists(observations, max_size=5),
        "ServiceRequest": st.lists(orders, max_size=3),
        "MedicationRequest": st.lists(medications, max_size=2),
        "Appointment": st.lists(appointments, max_size=2),
    }
)

# Real fixture patients (coherent records that make every rule fire somewhere), mutated: a random
# generator alone rarely builds the combinations the rules look for (weakness with a fasciculation,
# a CK above the limit with proximal weakness, ...). Background-history fixtures are left out: their
# thousands of unrelated vitals add run time, not cases.
FIXTURES = [
    fixtures.load(path, now=NOW) for path in fixtures.all_fixtures() if not path.stem.startswith("bg")
]


def _slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) below ``value``: the places a mutation can hit."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "resourceType":
                out.append((value, k))
                _slots(v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((value, i))
            _slots(v, out)
    return out


def mutate(draw: st.DrawFn, roots: list[dict[str, Any]]) -> None:
    """Up to four mutations inside the given resources: a field dropped or replaced by a wrong-typed
    value, an array unwrapped to its first member (STU3/DSTU2 style) or an object wrapped in an array,
    a number turned into a string. The resources themselves stay objects with a ``resourceType``
    (the prefetch engine passes nothing else on)."""
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        slots: list[tuple[Any, Any]] = []
        for resource in roots:
            _slots(resource, slots)
        if not slots:
            return
        container, key = draw(st.sampled_from(slots))
        value = container[key]
        op = draw(st.sampled_from(["drop", "wrong", "unwrap", "wrap", "stringify"]))
        if op == "drop" and isinstance(container, dict):
            del container[key]
        elif op == "unwrap" and isinstance(value, list) and value:
            container[key] = value[0]
        elif op == "wrap" and isinstance(value, dict):
            container[key] = [value]
        elif op == "stringify" and isinstance(value, int | float):
            container[key] = str(value)
        else:
            container[key] = draw(wrong_type)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """One fixture patient's record, mutated, plus a few generated resources."""
    fx = draw(st.sampled_from(FIXTURES))
    record = copy.deepcopy(fx.by_type())
    mutate(draw, [r for found in record.values() for r in found])
    extra = draw(generated)
    for kind, found in extra.items():
        if isinstance(record.get(kind), list):
            record[kind] = [*record[kind], *(r for r in found if kind != "Patient")]
        else:
            record[kind] = found
    return fx.patient_id, record


records = st.one_of(
    mutated_fixture(),
    mutated_fixture(),
    generated.map(lambda r: (PATIENT, r)),
)

draft_resource = st.one_of(
    *(
        resource(
            kind,
            status=st.just("draft"),
            intent=st.just("order"),
            code=codeable,
            codeCodeableConcept=codeable,
            medicationCodeableConcept=codeable,
            medicationReference=reference,
            contained=one_or_many(resource("Medication", code=codeable).map(lambda m: {**m, "id": "m1"})),
            reasonCode=one_or_many(codeable),
            note=one_or_many(annotation),
            orderDetail=one_or_many(codeable),
            category=one_or_many(codeable),
            dispenseRequest=obj(
                expectedSupplyDuration=obj(
                    value=st.one_of(st.integers(min_value=0, max_value=10**6), st.floats(allow_nan=False)),
                    unit=st.sampled_from(["d", "days", "wk", "mo", "h", "?"]),
                    code=st.sampled_from(["d", "wk", "mo"]),
                ),
                validityPeriod=obj(start=dates, end=dates),
            ),
        )
        for kind in (
            "ServiceRequest",
            "ProcedureRequest",
            "DeviceRequest",
            "MedicationRequest",
            "MedicationOrder",
            "Observation",
        )
    )
)
# The draft orders of fixtures/order-cases.yaml (R4, STU3 and DSTU2 shapes the order rules know), mutated.
ORDER_DRAFTS = [
    d for case in yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text()) for d in case["drafts"]
]


@st.composite
def mutated_drafts(draw: st.DrawFn) -> dict[str, Any]:
    chosen = copy.deepcopy(draw(st.lists(st.sampled_from(ORDER_DRAFTS), min_size=1, max_size=3)))
    mutate(draw, chosen)
    extra = draw(st.lists(draft_resource, max_size=1))
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in chosen + extra],
    }


draft_orders = st.one_of(
    mutated_drafts(),
    mutated_drafts(),
    obj(
        resourceType=st.just("Bundle"),
        type=st.just("collection"),
        entry=st.lists(st.one_of(obj(resource=draft_resource), json_any), max_size=4),
    ),
    json_any,
)

# ------------------------------------------------------------------------------------------ harness


def hook_call(
    hook: str, resources: dict[str, list[dict[str, Any]]], context: dict[str, Any], patient: str = PATIENT
) -> HookCall:
    """A HookCall as the app builds it, with the resources as prefetched data."""
    data = GatheredData()
    for kind, items in resources.items():
        data.keys[kind] = KeyResult(kind, KeyState.PREFETCHED, items)
    data.keys["appointments-missing"] = KeyResult("appointments-missing", KeyState.MISSING, [], "timed out")
    ctx = {"userId": "Practitioner/dr-1", "patientId": patient, **context}
    request = HookRequest(hook=hook, hookInstance=str(uuid.uuid4()), context=ctx)
    return HookCall(request, CONTEXT_MODELS[Hook(hook)].model_validate(ctx), data, NOW, "http://127.0.0.1:8100")


def assert_conformant(body: dict[str, Any]) -> None:
    wire = orjson.loads(orjson.dumps(body))  # what a client receives
    assert response_problems(wire) == [], response_problems(wire)
    CdsResponse.model_validate(wire)


@FUZZ
@given(record=records)
def test_patient_view_never_crashes_and_cards_are_valid(
    record: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    patient, resources = record
    result = asyncio.run(SERVICE.handle(hook_call("patient-view", resources, {}, patient)))
    assert_conformant(dump(result.response))
    assert len(result.issued) == len(result.response.cards)


@FUZZ
@given(
    record=records,
    drafts=draft_orders,
    hook=st.sampled_from(["order-select", "order-sign"]),
    selections=st.one_of(
        st.lists(
            st.sampled_from(["ServiceRequest/x", "MedicationRequest/#0", "MedicationOrder/m"]), max_size=2
        ),
        json_any,
    ),
)
def test_order_hooks_never_crash_and_cards_are_valid(
    record: tuple[str, dict[str, list[dict[str, Any]]]], drafts: Any, hook: str, selections: Any
) -> None:
    patient, resources = record
    context: dict[str, Any] = {"draftOrders": drafts if isinstance(drafts, dict) else {"entry": drafts}}
    if hook == "order-select":
        context["selections"] = selections if isinstance(selections, list) else []
    try:
        call = hook_call(hook, resources, context, patient)
    except ValueError:
        return  # the context model rejects it: the app answers 400 before any clinical code runs
    result = asyncio.run(SERVICE.handle(call))
    assert_conformant(dump(result.response))


@FUZZ
@given(drafts=json_any | draft_orders)
def test_read_drafts_reads_anything(drafts: Any) -> None:
    for draft in read_drafts(T, drafts):
        assert draft.ref.split("/", 1)[0] in draft.kind
        assert draft.label


# ------------------------------------------------------------------------------------------ prefetch engine

SPECS = prefetch_templates(T)
GATHERER = Gatherer(SETTINGS, httpx.AsyncClient(trust_env=False))  # never used: no fhirServer to call
prefetch_value = st.one_of(
    json_any,
    obj(
        resourceType=st.sampled_from(["Bundle", "OperationOutcome", "Patient"]), entry=json_any, link=json_any
    ),
    obj(
        resourceType=st.just("Bundle"),
        entry=st.lists(
            st.one_of(obj(resource=st.one_of(conditions, observations, json_any)), json_any), max_size=3
        ),
        link=one_or_many(obj(relation=st.sampled_from(["next", "self"]), url=st.text(max_size=10))),
    ),
    obj(
        resourceType=st.just("OperationOutcome"),
        issue=one_or_many(obj(severity=st.sampled_from(["error", "information"]))),
    ),
)


@FUZZ
@given(prefetch=st.dictionaries(st.sampled_from([s.key for s in SPECS]), prefetch_value, max_size=len(SPECS)))
def test_prefetch_engine_gives_data_or_412(prefetch: dict[str, Any]) -> None:
    request = HookRequest(
        hook="patient-view",
        hookInstance=str(uuid.uuid4()),
        context={"userId": "Practitioner/dr-1", "patientId": PATIENT},
        prefetch=prefetch,
    )

    async def gather() -> GatheredData | None:
        try:
            return await GATHERER.gather(SPECS, request)
        except PreconditionFailed:
            return None

    data = asyncio.run(gather())
    required = [s.key for s in SPECS if s.required]
    usable = all(k in prefetch and usable_prefetch(prefetch[k]) for k in required)
    assert (data is not None) == usable, "412 exactly when a required key is absent or unusable"
    if data is not None:
        for key in required:
            assert data.keys[key].state in (KeyState.PREFETCHED, KeyState.NULL, KeyState.PARTIAL)


def usable_prefetch(value: Any) -> bool:
    """The spec's reading of a prefetch value, written independently of the engine: ``null`` (no
    data) or a FHIR resource that is not an error (an OperationOutcome, or a Bundle carrying one with
    an error or fatal issue). Anything else must be fetched, and without a fhirServer that fails."""
    if value is None:
        return True
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return False
    if value["resourceType"] == "OperationOutcome":
        return False
    entries = value.get("entry") if value["resourceType"] == "Bundle" else None
    for entry in entries if isinstance(entries, list) else [entries] if isinstance(entries, dict) else []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "OperationOutcome":
            issues = res.get("issue")
            issues = issues if isinstance(issues, list) else [issues]
            if any(isinstance(i, dict) and i.get("severity") in ("error", "fatal") for i in issues):
                return False
    return True


@pytest.mark.parametrize("hook", ["patient-view", "order-sign"])
def test_trigger_alone_is_in_scope(hook: str) -> None:
    """Sanity check of the harness: the biased generator reaches the rules (a trigger fires cards)."""
    trigger = copy.deepcopy(TRIGGER_CONDITION)
    context = {"draftOrders": {"resourceType": "Bundle", "entry": []}} if hook == "order-sign" else {}
    call = hook_call(hook, {"Condition": [trigger]}, context)
    body = dump(asyncio.run(SERVICE.handle(call)).response)
    assert_conformant(body)
    if hook == "patient-view":
        assert body["cards"], "a lone fasciculation must at least ask for the first-tier labs"


# ------------------------------------------------------------------------------------------ regressions
# Inputs that raised (a 500 for the whole hook call) before the readers went through
# ``cds_service.jsonshape``; each sits beside a fasciculation so the record and rules run.

FASC = {"system": ICD10CM, "code": "R25.3"}
CK = {"system": LOINC, "code": "2157-6"}
REGRESSIONS: dict[str, dict[str, Any]] = {
    "coding is a number": {"resourceType": "Condition", "id": "x", "code": {"coding": 5}},
    "asserter is a string": {
        "resourceType": "Condition",
        "id": "x",
        "code": {"coding": [FASC]},
        "asserter": "Practitioner/1",
    },
    "code is a string with trigger text": {"resourceType": "Condition", "id": "x", "code": "twitching"},
    "note is a number": {"resourceType": "Condition", "id": "x", "code": {"coding": [FASC]}, "note": 3},
    "status is a list": {
        "resourceType": "Observation",
        "id": "x",
        "status": ["final"],
        "code": {"coding": [CK]},
    },
    "unit is a number": {
        "resourceType": "Observation",
        "id": "x",
        "status": "final",
        "code": {"coding": [CK]},
        "valueQuantity": {"value": 5000, "unit": 7, "code": 8},
    },
    "interpretation is a number": {
        "resourceType": "Observation",
        "id": "x",
        "status": "final",
        "code": {"coding": [CK]},
        "interpretation": 3,
    },
    "referenceRange is a number, bound unit a list": {
        "resourceType": "Observation",
        "id": "x",
        "status": "final",
        "code": {"coding": [CK]},
        "valueQuantity": {"value": 300, "unit": "U/L"},
        "referenceRange": [{"high": {"value": 200, "unit": ["U/L"]}}, 4],
    },
    "performer is a number": {
        "resourceType": "Observation",
        "id": "x",
        "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "26544005"}]},
        "performer": 1,
    },
    "conclusionCode is a float": {
        "resourceType": "DiagnosticReport",
        "id": "x",
        "status": "final",
        "code": {"text": "EMG"},
        "conclusionCode": 1.5,
    },
    "medicationReference is a string, contained a number": {
        "resourceType": "MedicationRequest",
        "id": "x",
        "status": "active",
        "medicationReference": "#m",
        "contained": 2,
    },
    "ServiceRequest status is a list": {
        "resourceType": "ServiceRequest",
        "id": "x",
        "status": ["active"],
        "code": {"text": "follow-up visit"},
    },
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_wrong_types_in_record(name: str) -> None:
    res = REGRESSIONS[name]
    resources: dict[str, list[dict[str, Any]]] = {"Condition": [copy.deepcopy(TRIGGER_CONDITION)]}
    resources.setdefault(res["resourceType"], []).append(res)
    body = dump(asyncio.run(SERVICE.handle(hook_call("patient-view", resources, {}))).response)
    assert_conformant(body)
    assert body["cards"]


@pytest.mark.parametrize(
    "draft",
    [
        {"resourceType": ["MedicationRequest"], "id": "a"},
        {"resourceType": "ServiceRequest", "id": "a", "reasonCode": 5, "note": 1, "orderDetail": True},
        {"resourceType": "MedicationRequest", "id": "a", "medicationReference": "#m", "contained": 7},
    ],
)
def test_regression_wrong_types_in_drafts(draft: dict[str, Any]) -> None:
    context = {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": draft}]}}
    call = hook_call("order-sign", {"Condition": [copy.deepcopy(TRIGGER_CONDITION)]}, context)
    assert_conformant(dump(asyncio.run(SERVICE.handle(call)).response))


@pytest.mark.parametrize(
    "value",
    [
        {"resourceType": "Bundle", "entry": 5},
        {
            "resourceType": "Bundle",
            "link": 1,
            "entry": [{"resource": {"resourceType": "OperationOutcome", "issue": 2}}],
        },
        {"resourceType": "Bundle", "entry": {"resource": {"resourceType": 7}}},
    ],
)
def test_regression_wrong_types_in_prefetch(value: dict[str, Any]) -> None:
    request = HookRequest(
        hook="patient-view",
        hookInstance="regression",
        context={"userId": "Practitioner/dr-1", "patientId": PATIENT},
        prefetch={"conditions": value, "labs": None, "findings": None},
    )
    data = asyncio.run(GATHERER.gather(SPECS, request))
    assert data.keys["conditions"].state is KeyState.PREFETCHED
