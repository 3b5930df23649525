"""Interoperability with a third-party CDS client used as a negative client: HealthChain 0.16.1.

HealthChain's ``SandboxClient`` (in its own venv, see ``scripts/healthchain-venv``) sends requests it
builds itself (``tests/support/healthchain_driver.py``): synthetic patients with random patient ids and
invalid FHIR R4, its own prefetch keys instead of our discovery templates, a prefetch file of ours
under a random patient id, an explicit context for a patient on a real FHIR server (SEKMET), an
order-sign with a draft order, a hook we do not serve, an array-valued ``extension`` and an unknown
service id. Every exchange must be a correct 200 (a conformant response, with the cards the data
calls for) or a clear 4xx (an OperationOutcome saying what was wrong); never a 5xx.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.clinical.services import SERVICE_IDS
from cds_service.protocol.validate import response_problems
from cds_tools import fixtures
from tests.support.servers import CdsServer, FhirServer, run_cds_server
from tests.support.third_party import HC_DRIVER, card_summary, healthchain_python

pytestmark = pytest.mark.e2e

SERVICE = f"/cds-services/{SERVICE_IDS['patient-view']}"
ORDER_SIGN = f"/cds-services/{SERVICE_IDS['order-sign']}"
ORDER_DRAFT = {  # cyclobenzaprine: would give the R10 warning, had HealthChain sent it
    "resourceType": "MedicationRequest",
    "id": "mr-1",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}]
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server({"CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


@pytest.fixture(scope="module")
def run(server: CdsServer, fhir_open: FhirServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Install HealthChain if needed, load two fixture patients, run the driver once."""
    python = healthchain_python()
    weak = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    calm = fixtures.load(fixtures.ROOT / "patients" / "r20-reassurance.json")
    for fx in (weak, calm):
        fhir_open.load(fx.bundle)
    # Our keys, filled from the fixture (a real EHR would filter Observations by code; the service
    # de-duplicates across keys), for HealthChain's load_from_path.
    observations = weak.prefetch_bundle("Observation")
    prefetch = {
        "patient": next(r for r in weak.resources() if r["resourceType"] == "Patient"),
        "conditions": weak.prefetch_bundle("Condition"),
        "labs": observations,
        "findings": observations,
    }
    prefetch_file = Path(tmp_path_factory.mktemp("healthchain")) / "prefetch.json"
    prefetch_file.write_text(json.dumps(prefetch))
    plan = {
        "service_url": server.url(SERVICE),
        "order_sign_url": server.url(ORDER_SIGN),
        "unknown_url": server.url("/cds-services/no-such-service"),
        "fhir": fhir_open.base,
        "patient": weak.patient_id,
        "prefetch_file": str(prefetch_file),
        "order": {
            "patient": calm.patient_id,
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": ORDER_DRAFT}],
            },
        },
    }
    proc = subprocess.run(
        [str(python), str(HC_DRIVER), json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def exchanges(run: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    found = [e for e in run["exchanges"] if e["scenario"] == scenario]
    assert found, f"HealthChain sent nothing for {scenario}"
    return found


def test_every_answer_is_a_correct_200_or_a_clear_4xx(run: dict[str, Any], server: CdsServer) -> None:
    assert len(run["exchanges"]) == 11
    for e in run["exchanges"]:
        assert e["status"] in (200, 400, 404, 412), e
        if e["status"] == 200:
            assert response_problems(e["body"]) == [], (e["scenario"], response_problems(e["body"]))
        else:
            assert e["body"]["resourceType"] == "OperationOutcome", e
            assert e["body"]["issue"][0]["severity"] == "error"
            assert e["body"]["issue"][0]["diagnostics"], e
    assert "unhandled error" not in server.logs()


def test_synthetic_patients_without_fhir_server_are_412(run: dict[str, Any]) -> None:
    """HealthChain's own keys (patient, encounter, condition) are not ours and it gives no FHIR
    server: the required data cannot be had, and the answer says which keys."""
    for e in exchanges(run, "synthetic"):
        assert e["prefetchKeys"] == ["condition", "encounter", "patient"] and not e["fhirServer"]
        assert e["status"] == 412
        text = e["body"]["issue"][0]["diagnostics"]
        assert "'conditions'" in text and "'labs'" in text and "no fhirServer" in text


def test_synthetic_patients_with_fhir_server_are_refused_as_another_patient(run: dict[str, Any]) -> None:
    """HealthChain's synthetic requests prefetch, under our key name ``patient``, a Patient whose
    random id is not the random ``context.patientId``: the data is about someone else, so the call
    is refused naming the key, before anything is fetched or computed (issue 16, wrong-patient
    data)."""
    for e in exchanges(run, "synthetic-fhir"):
        assert e["status"] == 400
        text = e["body"]["issue"][0]["diagnostics"]
        assert "'patient'" in text and "context.patientId" in text


def test_our_prefetch_under_a_random_patient_id(run: dict[str, Any]) -> None:
    """A fixture patient's prefetch sent under HealthChain's random ``patientId``: the cards would
    describe one patient under another's id, so the call is refused naming the key (issue 16)."""
    [e] = exchanges(run, "prefetch-file")
    assert e["status"] == 400
    text = e["body"]["issue"][0]["diagnostics"]
    assert "'patient'" in text and "context.patientId" in text


def test_explicit_context_gets_the_expected_cards(run: dict[str, Any]) -> None:
    [e] = exchanges(run, "explicit")
    assert e["status"] == 200 and e["prefetchKeys"] == []
    want = [{**c, "delete": []} for c in fixtures.expectations()["r01-weakness"]["cards"]]
    assert card_summary(e["body"]) == want
    assert run["healthchain_results"]["explicit"][0]["cards"][0]["indicator"] == "critical"


def test_order_sign_loses_its_draft_orders_and_is_400(run: dict[str, Any]) -> None:
    """HealthChain 0.16.1 declares ``CDSRequest.context`` as its base context model, so pydantic
    serialises only ``userId`` and ``patientId``: the ``draftOrders`` it was given never leave the
    client. order-sign requires them, so the service answers 400 and names the missing field."""
    [e] = exchanges(run, "order-sign")
    assert e["hook"] == "order-sign" and e["status"] == 400
    assert "context.draftOrders" in e["body"]["issue"][0]["diagnostics"]


def test_unserved_hook_is_400_naming_the_hooks(run: dict[str, Any]) -> None:
    [e] = exchanges(run, "encounter-discharge")
    assert e["hook"] == "encounter-discharge" and e["status"] == 400
    assert "patient-view" in e["body"]["issue"][0]["diagnostics"]


def test_array_extension_is_400(run: dict[str, Any]) -> None:
    [e] = exchanges(run, "extension-array")
    assert isinstance(e["extension"], list) and e["status"] == 400
    assert "extension" in e["body"]["issue"][0]["diagnostics"]


def test_unknown_service_is_404(run: dict[str, Any]) -> None:
    [e] = exchanges(run, "unknown-service")
    assert e["status"] == 404 and e["body"]["issue"][0]["code"] == "not-found"
    assert run["healthchain_results"]["unknown-service"] == [{}], "HealthChain reports errors as {}"
