"""Interoperability with a third-party CDS client: ``@medplum/core`` 5.2.13.

Medplum's client is an independent implementation of the client side of CDS Hooks: it reads our
discovery document, resolves every prefetch template against a real FHIR server (SEKMET) with its
own token substitution and search code, and calls the service (``tools/node/cds-client.mjs``). The
cards it gets back must be exactly the ones fixtures/expected.yaml and order-cases.yaml pin for the
same patients, and every answer must pass the protocol validator.

Medplum's own behaviour, checked so that it stays known: it sends no ``fhirServer`` (so the service
works from the prefetch alone), ``null`` for a template whose token it cannot fill, and it makes no
call at all when a read in the prefetch answers 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from cds_service.clinical.services import SERVICE_IDS
from cds_service.protocol.validate import response_problems
from cds_tools import fixtures
from tests.support.servers import FHIR_TOKEN, CdsServer, FhirServer, run_cds_server, unavailable
from tests.support.third_party import card_summary, medplum_missing, run_medplum

pytestmark = [pytest.mark.e2e, pytest.mark.node]

EXPECTED = fixtures.expectations()
# One of each kind: critical red flag, red flag among 300 unrelated observations, GBS pathway,
# CK warning, reassurance only, and a patient without fasciculation (silent).
PATIENTS = ["r01-weakness", "bg300-r01", "r03-gbs", "r05a-ck", "r20-reassurance", "no-trigger"]
ORDER_CASES = {
    c["name"]: c
    for c in yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text())
    if c["name"] in ("r10-cyclobenzaprine-r4-sign", "r10-cyclobenzaprine-dstu2-select")
}


@pytest.fixture(scope="module", autouse=True)
def _node_kit() -> None:
    """Skip before starting any server when Node or the kit is missing (fail under REQUIRE_ALL)."""
    reason = medplum_missing()
    if reason is not None:
        unavailable(reason)


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server({"CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


@pytest.fixture(scope="module")
def loaded(fhir_open: FhirServer) -> dict[str, fixtures.Fixture]:
    names = set(PATIENTS) | {c["patient"] for c in ORDER_CASES.values()}
    out = {}
    for name in sorted(names):
        fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
        result = fhir_open.load(fx.bundle)
        assert all(e["response"]["status"].startswith("20") for e in result["entry"]), name
        out[name] = fx
    return out


def answered(run: Any) -> dict[str, Any]:
    assert run.returncode == 0, run.report
    body: dict[str, Any] = run.report["response"]
    assert response_problems(body) == [], response_problems(body)
    return body


@pytest.mark.parametrize("name", PATIENTS)
def test_patient_view_cards_match_expected(
    server: CdsServer, fhir_open: FhirServer, loaded: dict[str, fixtures.Fixture], name: str
) -> None:
    fx = loaded[name]
    run = run_medplum(fhir_open.base, server.url("/cds-services"), fx.patient_id)
    request = run.report["request"]
    assert run.report["service"]["id"] == SERVICE_IDS["patient-view"]
    assert "fhirServer" not in request and "fhirAuthorization" not in request
    assert set(request["prefetch"]) == set(run.report["service"]["prefetch"]), "Medplum filled every key"
    got = card_summary(answered(run))
    want = [{**c, "delete": []} for c in EXPECTED[name]["cards"]]
    assert got == want, EXPECTED[name]["why"]


def test_red_flag_is_a_critical_card(
    server: CdsServer, fhir_open: FhirServer, loaded: dict[str, Any]
) -> None:
    body = answered(
        run_medplum(fhir_open.base, server.url("/cds-services"), loaded["r01-weakness"].patient_id)
    )
    critical = [c for c in body["cards"] if c["indicator"] == "critical"]
    assert critical and "EMG" in critical[0]["summary"]
    assert critical[0]["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "ServiceRequest"


@pytest.mark.parametrize("name", sorted(ORDER_CASES))
def test_order_hooks(server: CdsServer, fhir_open: FhirServer, loaded: dict[str, Any], name: str) -> None:
    case = ORDER_CASES[name]
    context: dict[str, Any] = {
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in case["drafts"]],
        }
    }
    if case["hook"] == "order-select":
        context["selections"] = case["selections"]
    run = run_medplum(
        fhir_open.base, server.url("/cds-services"), loaded[case["patient"]].patient_id, case["hook"], context
    )
    assert run.report["service"]["hook"] == case["hook"]
    assert run.report["service"]["id"] == SERVICE_IDS[case["hook"]], "Medplum called the hook's own id"
    assert card_summary(answered(run)) == case["expect"], case["why"]


def test_bearer_fhir_server(server: CdsServer, fhir_bearer: FhirServer) -> None:
    """Medplum sends its token to the FHIR server only; the service needs none (full prefetch)."""
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    fhir_bearer.load(fx.bundle)
    run = run_medplum(fhir_bearer.base, server.url("/cds-services"), fx.patient_id, fhir_token=FHIR_TOKEN)
    assert card_summary(answered(run)) == [{**c, "delete": []} for c in EXPECTED["r01-weakness"]["cards"]]
    assert FHIR_TOKEN not in str(run.report["request"])


def test_read_404_means_no_call(server: CdsServer, fhir_open: FhirServer) -> None:
    """Medplum throws when ``Patient/{id}`` is not found, so the service never sees the hook."""
    run = run_medplum(fhir_open.base, server.url("/cds-services"), "no-such-patient")
    assert run.returncode == 3 and run.report["stage"] == "prefetch"
    assert run.report["error"]["issue"][0]["code"] == "not-found"
    assert "request" not in run.report


def test_unresolved_token_is_sent_as_null(fhir_open: FhirServer, loaded: dict[str, Any]) -> None:
    """Without ``context.encounterId``, ``Encounter/{{context.encounterId}}`` cannot be filled: Medplum
    sends ``null`` for that key (the Sandbox would leave it out), and the service takes it as "no
    data", neither an error nor a fetch (the probe service reports each key's state)."""
    env = {"CDS_SERVICE_MODULES": '["tests.support.encounter_probe_service"]'}
    with run_cds_server(env) as probe:
        run = run_medplum(fhir_open.base, probe.url("/cds-services"), loaded["r01-weakness"].patient_id)
        assert run.report["request"]["prefetch"]["encounter"] is None
        detail = answered(run)["cards"][0]["detail"]
        assert "encounter=null:0" in detail and "patient=prefetched:1" in detail
