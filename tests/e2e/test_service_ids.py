"""One discovery id per hook (issue 12): the CDS Hooks Sandbox keys services by id, so a shared id
lost two of our three hooks there. Checked through the real HTTP endpoint: distinct ids, strict
(id, hook) dispatch, the deprecated alias of the order hooks' former id, and the conformance
checker's interoperability rule against a service that still shares an id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.clinical.services import SERVICE_ID, SERVICE_IDS
from cds_tools import fixtures
from tests.conftest import PROBE_ENV
from tests.support.cards import comparable
from tests.support.client import checked, hook_body
from tests.support.ehr_cli import cds_cli
from tests.support.servers import CdsServer, run_cds_server

pytestmark = pytest.mark.e2e

CYCLOBENZAPRINE = {
    "resourceType": "MedicationRequest",
    "id": "mr-1",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": "Patient/fx-r20-reassurance"},
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}]
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server() as s:
        yield s


def order_sign(prefetch: dict[str, Any], patient: str) -> dict[str, Any]:
    drafts = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": CYCLOBENZAPRINE}]}
    return hook_body("order-sign", patient=patient, prefetch=prefetch, draftOrders=drafts)


def test_discovery_lists_one_id_per_hook(server: CdsServer) -> None:
    services = checked(httpx.get(server.url("/cds-services")))["services"]
    assert {s["hook"]: s["id"] for s in services} == {
        "patient-view": "fasciculation-workup",
        "order-select": "fasciculation-order-select",
        "order-sign": "fasciculation-order-sign",
    }
    assert len({s["id"] for s in services}) == len(services)


def test_dispatch_is_strict_on_id_and_hook(server: CdsServer) -> None:
    nulls = {k: None for k in ("conditions", "labs", "findings")}
    for hook, sid in SERVICE_IDS.items():
        for other in SERVICE_IDS:
            if other == hook or (sid == SERVICE_ID and other != "patient-view"):
                continue  # the own hook; the deprecated alias (next test)
            extra = {} if other == "patient-view" else {"draftOrders": {"resourceType": "Bundle"}}
            r = httpx.post(server.url(f"/cds-services/{sid}"), json=hook_body(other, prefetch=nulls, **extra))
            assert r.status_code == 400, (sid, other)
            assert f"does not serve hook '{other}' (it serves: {hook})" in checked(r)["issue"][0]["diagnostics"]


def test_former_shared_id_still_answers_order_hooks_with_a_deprecation_log(server: CdsServer) -> None:
    """Decision: for one release ``fasciculation-workup`` keeps answering order-select and order-sign
    exactly as their new ids do (EHRs configured with it keep working), is no longer discovered,
    and every such call is logged as deprecated with the id to use instead."""
    fx = fixtures.load(fixtures.ROOT / "patients" / "r20-reassurance.json")
    services = checked(httpx.get(server.url("/cds-services")))["services"]
    templates = next(s["prefetch"] for s in services if s["hook"] == "order-sign")
    body = order_sign(fixtures.prefetch_for(fx, templates), fx.patient_id)
    new = checked(httpx.post(server.url(f"/cds-services/{SERVICE_IDS['order-sign']}"), json=body, timeout=30))
    assert "deprecated service id" not in server.logs()
    old = checked(httpx.post(server.url(f"/cds-services/{SERVICE_ID}"), json=body, timeout=30))
    assert comparable(old) == comparable(new)
    assert any(c["indicator"] == "warning" for c in old["cards"]), "cyclobenzaprine draft: a warning card"
    line = next(json.loads(x) for x in server.logs().splitlines() if "deprecated service id" in x)
    assert line["service"] == SERVICE_ID and line["hook"] == "order-sign"
    assert line["use"] == SERVICE_IDS["order-sign"]


def test_checker_fails_a_shared_id_and_says_why() -> None:
    """The probe service (tests/support/probe_service.py) still serves several hooks under the id
    ``probe``: the interoperability rule fails it, naming the id, its hooks and the consequence."""
    with run_cds_server(PROBE_ENV) as probe:
        proc = cds_cli("conformance", probe.url("/cds-services"), "--json")
    assert proc.returncode == 1, proc.stderr
    rule = next(r for r in json.loads(proc.stdout)["rules"] if r["rule"] == "2.5-ids")
    assert rule["status"] == "fail" and rule["level"] == "INTEROP"
    [problem] = rule["problems"]
    assert problem.startswith("id 'probe' is listed for ") and "keep only the last entry" in problem


def test_checker_passes_our_distinct_ids(server: CdsServer) -> None:
    proc = cds_cli("conformance", server.url("/cds-services"), "--json")
    rules = {r["rule"]: r for r in json.loads(proc.stdout)["rules"]}
    assert rules["2.5-ids"]["status"] == "pass" and rules["2.5-ids"]["checked"] == 3
