"""End to end, data completeness (issue 17, section 1): a patient of 260 Conditions whose
fasciculation is the last one (on page 2 of a ``_count=200`` search) in a real, bearer-protected
SEKMET server, and the real service process.

* prefetch holding page 1 only (SEKMET's own page, with its ``next`` link) + fhirServer + token:
  the service completes the search and answers the fasciculation cards;
* no prefetch at all: the service fetches every page itself, same cards;
* page 1 only and no token (the service may not fetch): never a silent 200, a 412 naming the key;
* a patient without fasciculation whose page 1 only is given and cannot be completed: 412 too,
  while the same patient given whole gets the normal silent answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.clinical.services import prefetch_templates
from cds_service.clinical.terminology import terminology
from tests.support.client import hook_body
from tests.support.servers import FHIR_TOKEN, CdsServer, FhirServer, run_cds_server

pytestmark = pytest.mark.e2e

SERVICE = "/cds-services/fasciculation-workup"
BIG, PLAIN = "pt-many-conditions", "pt-many-no-fasc"
N_BACKGROUND = 260
FASC = {"system": "http://snomed.info/sct", "code": "82470000", "display": "Muscle fasciculation (finding)"}
# Ordinary chronic problems (none of them a code the rules react to), cycled over 260 Conditions.
BACKGROUND = [
    ("38341003", "Hypertensive disorder"),
    ("55822004", "Hyperlipidemia"),
    ("195967001", "Asthma"),
    ("40055000", "Chronic sinusitis"),
    ("444814009", "Viral sinusitis"),
]


def _condition(pid: str, i: int, coding: dict[str, str], onset: str) -> dict[str, Any]:
    cid = f"{pid}-c{i:03d}"
    return {
        "resource": {
            "resourceType": "Condition",
            "id": cid,
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {"coding": [coding]},
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": onset,
        },
        "request": {"method": "PUT", "url": f"Condition/{cid}"},
    }


def patient_bundle(pid: str, with_fasciculation: bool) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {
            "resource": {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1968-04-02"},
            "request": {"method": "PUT", "url": f"Patient/{pid}"},
        }
    ]
    for i in range(N_BACKGROUND):
        code, display = BACKGROUND[i % len(BACKGROUND)]
        coding = {"system": "http://snomed.info/sct", "code": code, "display": display}
        entries.append(_condition(pid, i, coding, f"{1990 + i % 30}-03-01"))
    if with_fasciculation:
        entries.append(_condition(pid, 999, FASC, "2026-10-01"))  # the last one: page 2
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture(scope="module")
def fhir(fhir_bearer: FhirServer) -> FhirServer:
    for pid, fasc in ((BIG, True), (PLAIN, False)):
        result = fhir_bearer.load(patient_bundle(pid, fasc))
        assert all(e["response"]["status"].startswith("20") for e in result["entry"])
    return fhir_bearer


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    # Tokenless fetching off (as in production): without fhirAuthorization the service may not fetch.
    with run_cds_server({"CDS_VALIDATE_RESPONSES": "true", "CDS_ALLOW_OPEN_FHIR_FETCH": "false"}) as s:
        yield s


def _get(fhir: FhirServer, path: str) -> dict[str, Any]:
    r = httpx.get(f"{fhir.base}/{path}", headers=fhir.headers(), timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def page_one_prefetch(fhir: FhirServer, pid: str) -> dict[str, Any]:
    """What an EHR that does not page sends: each template's first page, as SEKMET answers it, in
    the EHR's own page size (200; the service itself asks for 1,000 per page)."""
    out: dict[str, Any] = {}
    for spec in prefetch_templates(terminology()):
        query = re.sub(r"_count=\d+", "_count=200", spec.template.replace("{{context.patientId}}", pid))
        out[spec.key] = _get(fhir, query)
    return out


def _call(server: CdsServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url(SERVICE), json=body, timeout=60)


def _fasciculation_answer(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    cards: list[dict[str, Any]] = resp.json()["cards"]
    assert cards, "a patient with an active fasciculation must get cards"
    return cards


def test_sekmet_pages_the_condition_search(fhir: FhirServer) -> None:
    page1 = page_one_prefetch(fhir, BIG)["conditions"]
    assert len(page1["entry"]) == 200
    assert any(link["relation"] == "next" for link in page1.get("link", []))
    codes = {c["code"] for e in page1["entry"] for c in e["resource"]["code"]["coding"]}
    assert FASC["code"] not in codes  # the fasciculation is really not on page 1


def test_page_one_prefetch_is_completed_from_fhir_server(fhir: FhirServer, server: CdsServer) -> None:
    prefetch = page_one_prefetch(fhir, BIG)
    cards = _fasciculation_answer(
        _call(server, hook_body(patient=BIG, prefetch=prefetch, fhir_server=fhir.base, token=FHIR_TOKEN))
    )
    assert not any("could not be obtained" in (c.get("detail") or "") for c in cards)


def test_no_prefetch_fetches_every_page(fhir: FhirServer, server: CdsServer) -> None:
    _fasciculation_answer(_call(server, hook_body(patient=BIG, fhir_server=fhir.base, token=FHIR_TOKEN)))


def test_page_one_without_token_is_412_never_silent(fhir: FhirServer, server: CdsServer) -> None:
    prefetch = page_one_prefetch(fhir, BIG)
    resp = _call(server, hook_body(patient=BIG, prefetch=prefetch, fhir_server=fhir.base))
    assert resp.status_code == 412, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "'conditions'" in outcome["issue"][0]["diagnostics"]


def test_patient_without_fasciculation_cut_is_412_whole_is_silent(
    fhir: FhirServer, server: CdsServer
) -> None:
    cut = page_one_prefetch(fhir, PLAIN)
    assert _call(server, hook_body(patient=PLAIN, prefetch=cut)).status_code == 412
    whole = _call(server, hook_body(patient=PLAIN, fhir_server=fhir.base, token=FHIR_TOKEN))
    assert whole.status_code == 200 and whole.json() == {"cards": []}
