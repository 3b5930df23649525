"""Lean request decoding (``cds_service/data/sieve.py``, issue 15) never changes an answer.

The service decodes a hook request with the topic's sieve: Observations whose code and coded value
name no concept reach the pipeline as stubs (status, subject, id). These tests hold it to the full
parse (``orjson.loads``), through the whole call (``run_call``: gather, subject screen, record,
rules, cards, issued-card rows, the call record):

* every golden fixture patient on patient-view, and every order case on its order hook;
* generated charts: a trigger plus arbitrary Observations (known codes, the texts the patterns
  read, random codes, wrong types, other patients' subjects, duplicate and missing ids) under
  every Observation prefetch key;
* the decoder alone, on arbitrary JSON bodies: it returns exactly what ``orjson.loads`` returns
  with the unusable resources reduced to stubs (or, for a body it cannot read that way, exactly
  ``orjson.loads``), and raises exactly when ``orjson.loads`` raises.

No timing here: bench/ measures, tests never assert on time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.call import run_call
from cds_service.clinical.record_builder import OBSERVATION_STUB
from cds_service.clinical.services import SERVICE_ID, SERVICE_IDS, prefetch_templates, register
from cds_service.clinical.terminology import ICD10CM, LOINC, SNOMED, terminology
from cds_service.data.gather import Gatherer
from cds_service.data.sieve import ENTRY_FIELDS, Sieve, lean_bundle, lean_loads
from cds_service.ops.record import CallRecord
from cds_service.protocol.errors import CdsError
from cds_service.protocol.models import Hook, HookRequest
from cds_service.registry import Registry
from cds_service.settings import Settings
from cds_tools import fixtures

SETTINGS = Settings(database_url="sqlite+aiosqlite://")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
T = terminology()
TEMPLATES = {spec.key: spec.template for spec in prefetch_templates(T)}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FUZZ = settings(
    max_examples=60,
    deadline=None,  # no timed assertions
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


def registry() -> Registry:
    reg = Registry()
    register(reg, SETTINGS)
    return reg


REGISTRY = registry()
SIEVE = REGISTRY.sieve_of(SERVICE_ID)


@pytest.fixture
async def gatherer() -> AsyncIterator[Gatherer]:
    async with httpx.AsyncClient() as client:
        yield Gatherer(SETTINGS, client)


async def answer(service_id: str, decoded: Any, gatherer: Gatherer) -> Any:
    """Everything a call produces, with the random uuids replaced by their order of appearance."""
    record = CallRecord("POST", "service", service_id)
    try:
        req = HookRequest.model_validate(decoded)
        outcome = await run_call(
            service_id, req, settings=SETTINGS, registry=REGISTRY, gatherer=gatherer, client=None,
            base_url="http://cds.test", record=record, now=NOW,
        )  # fmt: skip
    except CdsError as exc:
        return ("error", exc.status, str(exc))
    rows = [(r.rule_id, r.indicator, r.hook, r.patient_hash, r.fingerprint, r.concepts) for r in outcome.issued]
    audit = {k: v for k, v in record.audit_fields().items() if not k.endswith("_ms")}  # timings differ
    text = orjson.dumps([outcome.body, rows, record.foreign_dropped, audit]).decode()
    seen: dict[str, str] = {}
    return UUID.sub(lambda m: seen.setdefault(m.group(0), f"uuid-{len(seen)}"), text)


async def same_answer(service_id: str, body: bytes, gatherer: Gatherer) -> Any:
    assert SIEVE is not None
    full = await answer(service_id, orjson.loads(body), gatherer)
    lean = await answer(service_id, lean_loads(body, SIEVE), gatherer)
    assert lean == full
    return full


def hook_body(hook: str, patient_id: str, prefetch: dict[str, Any], **context: Any) -> bytes:
    return orjson.dumps({
        "hook": hook,
        "hookInstance": "9e3a6c1e-3c8b-4a43-8a7e-0c9d1f2b3a4c",
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id, **context},
        "prefetch": prefetch,
    })  # fmt: skip


def test_the_service_declares_a_sieve_for_every_id() -> None:
    for service_id in {*SERVICE_IDS.values(), SERVICE_ID}:
        assert REGISTRY.sieve_of(service_id) is SIEVE is not None
    assert REGISTRY.sieve_of("no-such-service") is None


@pytest.mark.parametrize("path", fixtures.all_fixtures(), ids=lambda p: p.stem)
async def test_every_golden_patient_gets_the_same_answer(path: Any, gatherer: Gatherer) -> None:
    fx = fixtures.load(path, now=NOW)
    body = hook_body("patient-view", fx.patient_id, fixtures.prefetch_for(fx, TEMPLATES))
    await same_answer(SERVICE_ID, body, gatherer)


CASES = yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
async def test_every_order_case_gets_the_same_answer(case: dict[str, Any], gatherer: Gatherer) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{case['patient']}.json", now=NOW)
    context: dict[str, Any] = {
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in case["drafts"]]}
    }
    if case["hook"] == "order-select":
        ids = [f"{d['resourceType']}/{d.get('id')}" for d in case["drafts"] if isinstance(d, dict)]
        context["selections"] = case.get("selections", ids)
    body = hook_body(case["hook"], fx.patient_id, fixtures.prefetch_for(fx, TEMPLATES), **context)
    await same_answer(SERVICE_IDS[Hook(case["hook"])], body, gatherer)


# ------------------------------------------------------------------------------ generated charts

PATIENT = "pt-sieve"
KNOWN = sorted({(c.system, c.code) for k in T.concepts.values() for c in k.codes})
TEXTS = ["Fasciculations", "muscle twitching", "Reflexes", "Plantar response", "Muscle bulk", "Babinski sign",
         "Body weight", "Heart rate", "TSH", "Vitamin B12", "creatine kinase", "absent", "extensor", "", "Ärzt €"]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
coding = st.one_of(
    st.sampled_from(KNOWN).map(lambda sc: {"system": sc[0], "code": sc[1]}),
    st.fixed_dictionaries({"system": st.sampled_from([SNOMED, LOINC, ICD10CM, "urn:x"]), "code": st.text(max_size=6)},
                          optional={"display": st.sampled_from(TEXTS)}),
    json_leaf,
)
codeable = st.one_of(
    st.fixed_dictionaries({}, optional={"coding": st.one_of(st.lists(coding, max_size=3), coding),
                                        "text": st.one_of(st.sampled_from(TEXTS), json_leaf)}),
    json_leaf,
)
subject = st.sampled_from([{"reference": f"Patient/{PATIENT}"}, {"reference": "Patient/someone-else"},
                           {"reference": f"https://ehr.example/fhir/Patient/{PATIENT}"}, {"display": "x"}, "Patient/x"])
observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "id": st.one_of(st.sampled_from(["o1", "o2", "o3"]), st.text(max_size=5), json_leaf),
        "status": st.one_of(st.sampled_from(["final", "amended", "preliminary", "registered", "cancelled",
                                             "entered-in-error"]), json_leaf),
        "code": codeable,
        "valueCodeableConcept": codeable,
        "subject": subject,
        "patient": subject,
        "valueQuantity": st.fixed_dictionaries({"value": st.floats(0, 500), "unit": st.sampled_from(["U/L", "mg/dL"])}),
        "valueString": st.sampled_from(["absent", "2+", "extensor", "normal", "4/5"]),
        "effectiveDateTime": st.sampled_from(["2026-05-30", "2025-01-01T10:00:00Z", "2026"]),
        "interpretation": st.just([{"coding": [{"code": "H"}]}]),
        "performer": st.just([{"reference": f"Patient/{PATIENT}"}]),
    },
)
resource = st.one_of(observation, observation, observation,
                     st.fixed_dictionaries({"resourceType": st.sampled_from(["Condition", "Procedure", 7])},
                                           optional={"id": st.text(max_size=3), "code": codeable, "subject": subject}))
TRIGGER = {"resourceType": "Condition", "id": "c-trigger", "subject": {"reference": f"Patient/{PATIENT}"},
           "clinicalStatus": {"coding": [{"code": "active"}]},
           "code": {"coding": [{"system": ICD10CM, "code": "R25.3"}]}}


def searchset(resources: list[Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"urn:uuid:{i}", "resource": r, "search": {"mode": "match"}}
                      for i, r in enumerate(resources)]}


@FUZZ
@given(
    labs=st.lists(resource, max_size=8),
    findings=st.lists(resource, max_size=8),
    exams=st.lists(resource, max_size=8),
    hook=st.sampled_from([Hook.PATIENT_VIEW, Hook.ORDER_SIGN]),
    trigger=st.booleans(),
)
async def test_generated_charts_get_the_same_answer(
    labs: list[Any], findings: list[Any], exams: list[Any], hook: Hook, trigger: bool, gatherer: Gatherer
) -> None:
    prefetch: dict[str, Any] = {key: searchset([]) for key in TEMPLATES}
    prefetch["patient"] = {"resourceType": "Patient", "id": PATIENT, "birthDate": "1960-01-01", "gender": "female"}
    prefetch["conditions"] = searchset([TRIGGER] if trigger else [])
    prefetch.update(labs=searchset(labs), findings=searchset(findings), exams=searchset(exams))
    context: dict[str, Any] = {}
    if hook is Hook.ORDER_SIGN:
        context["draftOrders"] = searchset([{"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft",
                                             "intent": "order", "code": {"coding": [{"system": SNOMED,
                                                                                     "code": "42803009"}]}}])
    await same_answer(SERVICE_IDS[hook], hook_body(hook.value, PATIENT, prefetch, **context), gatherer)


# ------------------------------------------------------------------------------ the decoder alone


def stubbed(decoded: Any, sieve: Sieve) -> Any:
    """What the lean decoder should return for a body, computed from the full parse."""
    if not isinstance(decoded, dict) or not isinstance(decoded.get("prefetch"), dict):
        return decoded
    out = dict(decoded)
    out["prefetch"] = {}
    for key, value in decoded["prefetch"].items():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle" and "entry" in value:
            value = {**value, "entry": [_entry(e, sieve) for e in value["entry"]]}
        out["prefetch"][key] = value
    return out


def _entry(entry: dict[str, Any], sieve: Sieve) -> dict[str, Any]:
    item = {k: entry[k] for k in ENTRY_FIELDS if k in entry}
    res = item.get("resource")
    if isinstance(res, dict) and res.get("resourceType") == "Observation":
        fields = {k: res[k] for k in sieve.key["Observation"] if k in res}
        if not sieve.keep("Observation", fields):
            item["resource"] = {k: res[k] for k in ("resourceType", "id", *OBSERVATION_STUB) if k in res}
    return item


odd_leaf = st.one_of(json_leaf, st.sampled_from(["Bundle", "Observation", "entry", "resource"]))
odd_json = st.recursive(odd_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["resourceType", "entry", "resource", "code", "prefetch", "x"]),
                                                 inner, max_size=3)), max_leaves=10)
entry = st.one_of(st.fixed_dictionaries({"resource": resource}, optional={"fullUrl": st.text(max_size=4),
                                                                          "search": st.just({"mode": "match"}),
                                                                          "junk": json_leaf}),
                  odd_json)
bundle = st.fixed_dictionaries({"resourceType": st.just("Bundle"), "entry": st.lists(entry, max_size=4)},
                               optional={"total": st.integers(0, 9), "link": st.just([{"relation": "self", "url": "u"}])})
odd_entry = st.fixed_dictionaries({"resourceType": st.sampled_from(["Patient", "Bundle"]), "entry": odd_json})
prefetch_value = st.one_of(bundle, bundle, resource, odd_json, odd_entry, st.none())
body_value = st.one_of(
    st.fixed_dictionaries({"hook": st.just("patient-view"),
                           "prefetch": st.one_of(st.dictionaries(st.text(max_size=4), prefetch_value, max_size=4),
                                                 st.none(), odd_json)},
                          optional={"context": odd_json, "extension": odd_json, "somethingElse": json_leaf}),
    odd_json,
)


@FUZZ
@given(body_value)
def test_the_decoder_is_the_full_parse_with_stubs(value: Any) -> None:
    assert SIEVE is not None
    body = orjson.dumps(value)
    full = orjson.loads(body)
    lean = lean_loads(body, SIEVE)
    # A prefetch object whose ``entry`` is not a list of objects with object resources makes the
    # decoder fall back to the full parse for the whole body.
    well_formed = all(
        not (isinstance(v, dict) and "entry" in v)
        or (isinstance(v["entry"], list) and all(isinstance(e, dict) and isinstance(e.get("resource", {}), dict)
                                                 for e in v["entry"]))
        for v in (full.get("prefetch") or {}).values()
    ) if isinstance(full, dict) and isinstance(full.get("prefetch"), dict) else True
    assert lean == (stubbed(full, SIEVE) if well_formed else full)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"prefetch": {"a": {"resourceType": "Bundle", "entry": [}}}', b'{"a": NaN}',
     b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "x": "\xff"}}]}}}',
     b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "x": "\\ud800"}}]}}}',
     b"[" * 5000 + b"]" * 5000,
     b'{"prefetch": {"k": {"resourceType": "Bundle", "entry": [{"resource": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}]}}}"],
    ids=["empty", "truncated", "bad-entry", "nan", "bad-utf8-in-skipped", "lone-surrogate", "deep", "deep-in-resource"],
)
def test_the_decoder_fails_exactly_when_orjson_fails(body: bytes) -> None:
    assert SIEVE is not None
    try:
        expected: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        expected = ("error", type(exc))
    try:
        got: Any = lean_loads(body, SIEVE)
    except orjson.JSONDecodeError as exc:
        got = ("error", type(exc))
    assert got == (stubbed(expected, SIEVE) if not isinstance(expected, tuple) else expected)


@pytest.mark.parametrize("path", fixtures.all_fixtures()[::7], ids=lambda p: p.stem)
def test_fetched_bundles_are_the_full_parse_with_stubs(path: Any) -> None:
    """What a FHIR server answers (``Gatherer._fetch``) goes through the same sieve: each search
    Bundle of a fixture decodes to ``orjson.loads`` with the unusable Observations stubbed."""
    assert SIEVE is not None
    fx = fixtures.load(path, now=NOW)
    for value in fixtures.prefetch_for(fx, TEMPLATES).values():
        content = orjson.dumps(value)
        assert lean_bundle(content, SIEVE) == stubbed({"prefetch": {"k": orjson.loads(content)}}, SIEVE)["prefetch"]["k"]


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b"null", b'{"resourceType": "OperationOutcome"}', b'{"resourceType": "Bundle", "entry": 3}',
     b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "x": "\xff"}}]}'],
)
def test_fetched_oddities_are_exactly_orjson(content: bytes) -> None:
    assert SIEVE is not None
    try:
        expected: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        with pytest.raises(orjson.JSONDecodeError):
            lean_bundle(content, SIEVE)
        return
    assert lean_bundle(content, SIEVE) == expected


def test_the_keep_decision_is_remembered_and_bounded() -> None:
    calls: list[dict[str, Any]] = []

    def keep(kind: str, fields: dict[str, Any]) -> bool:
        calls.append(fields)
        return fields.get("code") == {"text": "keep"}

    sieve = Sieve(key={"Observation": ("code",)}, stub={"Observation": ("status",)}, keep=keep)
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Observation", "id": str(i), "status": "final",
                      "code": {"text": "keep" if i % 2 else "drop"}, "valueQuantity": {"value": i}}}
        for i in range(100)]}  # fmt: skip
    out = lean_loads(orjson.dumps({"prefetch": {"k": bundle}}), sieve)
    entries = out["prefetch"]["k"]["entry"]
    assert entries[0]["resource"] == {"resourceType": "Observation", "id": "0", "status": "final"}
    assert entries[1]["resource"] == bundle["entry"][1]["resource"]  # kept whole
    assert len(calls) == 2  # one decision per distinct code text
