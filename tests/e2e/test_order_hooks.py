"""order-select and order-sign through the real HTTP endpoint: every case of
fixtures/order-cases.yaml, in both data paths (record as prefetch; record fetched from a real FHIR
server), R4 / STU3 / DSTU2 / invalid drafts. Every response passes the protocol validator and every
created resource the independent FHIR R4 validator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from cds_service.clinical.services import SERVICE_IDS
from cds_tools import fixtures
from tests.support.client import checked, hook_body, rule_of
from tests.support.fhir_validator import validate_resources
from tests.support.servers import FHIR_TOKEN, CdsServer, FhirServer, run_cds_server

pytestmark = pytest.mark.e2e

SERVICE = {hook: f"/cds-services/{sid}" for hook, sid in SERVICE_IDS.items()}
CASES = yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text())
CREATED: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server({"CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


@pytest.fixture(scope="module")
def templates(server: CdsServer) -> dict[str, dict[str, str]]:
    body = checked(httpx.get(server.url("/cds-services")))
    return {s["hook"]: s["prefetch"] for s in body["services"] if s["id"] == SERVICE_IDS.get(s["hook"])}


@pytest.fixture(scope="module")
def loaded(fhir_bearer: FhirServer) -> set[str]:
    names = {c["patient"] for c in CASES}
    for name in names:
        fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
        result = fhir_bearer.load(fx.bundle)
        assert all(e["response"]["status"].startswith("20") for e in result["entry"])
    return names


def request(case: dict[str, Any], fx: fixtures.Fixture, **kw: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"draftOrders": {"resourceType": "Bundle", "type": "collection",
                                               "entry": [{"resource": d} for d in case["drafts"]]}}
    if case["hook"] == "order-select":
        ids = [f"{d['resourceType']}/{d.get('id')}" for d in case["drafts"] if isinstance(d, dict)]
        context["selections"] = case.get("selections", ids)
    return hook_body(case["hook"], patient=fx.patient_id, **kw, **context)


def summarise(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for card in body["cards"]:
        deletes, creates = [], []
        for s in card.get("suggestions", []):
            for a in s.get("actions", []):
                if a["type"] == "delete":
                    deletes.append(a["resourceId"])
                elif len(s["actions"]) == 1:
                    CREATED.append(a["resource"])
                    code = a["resource"]["code"]
                    creates.append(f"{code['coding'][0]['system']}|{code['coding'][0]['code']}")
        out.append({"rule": rule_of(card), "indicator": card["indicator"], "delete": deletes, "suggests": creates})
    return out


def test_discovery_lists_each_order_hook_under_its_own_id(templates: dict[str, dict[str, str]]) -> None:
    assert set(templates) == {"patient-view", "order-select", "order-sign"}
    assert templates["order-sign"] == templates["patient-view"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_with_prefetch(server: CdsServer, templates: dict[str, dict[str, str]], case: dict[str, Any]) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{case['patient']}.json")
    body = request(case, fx, prefetch=fixtures.prefetch_for(fx, templates[case["hook"]]))
    got = summarise(checked(httpx.post(server.url(SERVICE[case["hook"]]), json=body, timeout=30)))
    assert got == case["expect"], case["why"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_from_fhir_server(server: CdsServer, fhir_bearer: FhirServer, loaded: set[str], case: dict[str, Any]) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{case['patient']}.json")
    body = request(case, fx, fhir_server=fhir_bearer.base, token=FHIR_TOKEN)
    got = summarise(checked(httpx.post(server.url(SERVICE[case["hook"]]), json=body, timeout=30)))
    assert got == case["expect"], case["why"]


@pytest.mark.parametrize(
    "draft_orders",
    [None, [], "text", {"resourceType": "Bundle"}, {"entry": "x"}, {"entry": [None, 1, {"resource": []}]}],
)
def test_malformed_draft_orders_never_error(server: CdsServer, draft_orders: Any) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    body = hook_body("order-sign", patient=fx.patient_id, prefetch={k: None for k in ("conditions", "labs", "findings")},
                     draftOrders=draft_orders)
    r = httpx.post(server.url(SERVICE["order-sign"]), json=body)
    # draftOrders that is not an object is a missing REQUIRED context field (400); anything else is read leniently
    assert r.status_code == (400 if not isinstance(draft_orders, dict) else 200), r.text
    checked(r)


def test_created_resources_pass_independent_validator() -> None:
    assert CREATED, "cases must run first"
    results = validate_resources(CREATED)
    bad = [(r, v.errors) for r, v in zip(CREATED, results, strict=True) if not v.valid]
    assert not bad, bad[:3]
