"""Golden test: every fixture patient through the real HTTP endpoint, in both data paths.

Path 1, full prefetch: the test plays the EHR and answers each discovery template itself from the
fixture (the same filter a FHIR server applies), so the service fetches nothing.
Path 2, no prefetch: the fixtures are loaded into a real FHIR server (SEKMET, bearer-protected) and
the service fetches every key with the token.
Both must give exactly the cards in fixtures/expected.yaml; every response passes the protocol
validator, and every suggested resource passes the independent FHIR R4 validator (Medplum + FHIR.js).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_tools import fixtures
from tests.support.client import checked, hook_body, rule_of
from tests.support.fhir_validator import validate_resources
from tests.support.servers import FHIR_TOKEN, CdsServer, FhirServer, run_cds_server

pytestmark = pytest.mark.e2e

SERVICE = "/cds-services/fasciculation-workup"
EXPECTED = fixtures.expectations()
NAMES = [p.stem for p in fixtures.all_fixtures()]
SUGGESTED: list[dict[str, Any]] = []  # every suggested resource seen, validated at the end


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server({"CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


@pytest.fixture(scope="module")
def discovery(server: CdsServer) -> dict[str, str]:
    body = checked(httpx.get(server.url("/cds-services")))
    svc = next(s for s in body["services"] if s["id"] == "fasciculation-workup" and s["hook"] == "patient-view")
    templates: dict[str, str] = svc["prefetch"]
    return templates


@pytest.fixture(scope="module")
def loaded(fhir_bearer: FhirServer) -> dict[str, fixtures.Fixture]:
    out = {}
    for path in fixtures.all_fixtures():
        fx = fixtures.load(path)
        result = fhir_bearer.load(fx.bundle)
        assert all(e["response"]["status"].startswith("20") for e in result["entry"]), fx.name
        out[fx.name] = fx
    return out


def summarise(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The response reduced to what expected.yaml states: rule, indicator, suggested codes."""
    out = []
    for card in body["cards"]:
        codes = []
        for s in card.get("suggestions", []):
            SUGGESTED.extend(a["resource"] for a in s.get("actions", []) if a["type"] == "create")
            if len(s.get("actions", [])) != 1:
                continue  # the "order all" suggestion repeats the single ones
            code = s["actions"][0]["resource"]["code"]
            codes.append(f"{code['coding'][0]['system']}|{code['coding'][0]['code']}" if "coding" in code else f"text:{code['text']}")
        out.append({"indicator": card["indicator"], "rule": rule_of(card), "suggests": codes})
    return out


def check(name: str, body: dict[str, Any]) -> None:
    expected = EXPECTED[name]
    got = summarise(body)
    assert got == expected["cards"], f"{name}: {expected['why']}"
    fired = {c["rule"] for c in got}
    assert not fired & set(expected.get("never", [])), name
    # Wording that matters clinically (safety-netting, what a card must never claim) is checked
    # on the summaries and details of all cards together.
    text = " ".join(" ".join(f"{c['summary']} {c.get('detail', '')}" for c in body["cards"]).split())
    for phrase in expected.get("text_has", []):
        assert phrase in text, f"{name}: missing {phrase!r}"
    for phrase in expected.get("text_lacks", []):
        assert phrase not in text, f"{name}: must not say {phrase!r}"


def test_every_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_full_prefetch(server: CdsServer, discovery: dict[str, str], name: str) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
    body = hook_body(patient=fx.patient_id, prefetch=fixtures.prefetch_for(fx, discovery))
    check(name, checked(httpx.post(server.url(SERVICE), json=body, timeout=30)))


@pytest.mark.parametrize("name", NAMES)
def test_no_prefetch_from_fhir_server(
    server: CdsServer, fhir_bearer: FhirServer, loaded: dict[str, fixtures.Fixture], name: str
) -> None:
    fx = loaded[name]
    body = hook_body(patient=fx.patient_id, fhir_server=fhir_bearer.base, token=FHIR_TOKEN)
    check(name, checked(httpx.post(server.url(SERVICE), json=body, timeout=30)))


def test_suggestions_pass_independent_validator() -> None:
    """Runs after the golden cases (file order): every suggested ServiceRequest is valid R4."""
    assert SUGGESTED, "golden cases must run first and produce suggestions"
    unique = {repr(sorted(r.items())): r for r in SUGGESTED}
    results = validate_resources(list(unique.values()))
    bad = [(r, v.errors) for r, v in zip(unique.values(), results, strict=True) if not v.valid]
    assert not bad, bad[:3]


def test_patient_without_fasciculation_is_silent_and_cheap(server: CdsServer) -> None:
    body = hook_body(patient="nobody", prefetch={"conditions": None, "labs": None, "findings": None})
    assert checked(httpx.post(server.url(SERVICE), json=body)) == {"cards": []}


def test_required_data_missing_is_412(server: CdsServer) -> None:
    r = httpx.post(server.url(SERVICE), json=hook_body(patient="x", prefetch={"conditions": None}))
    assert r.status_code == 412
    assert "'labs'" in checked(r)["issue"][0]["diagnostics"]


def test_evidence_pages(server: CdsServer) -> None:
    index = httpx.get(server.url("/evidence"))
    assert index.status_code == 200 and "R01" in index.text
    page = httpx.get(server.url("/evidence/red-flag-motor"))
    assert page.status_code == 200
    assert "mandate immediate EMG" in page.text and "42803009" in page.text
    assert httpx.get(server.url("/evidence/nope")).status_code == 404
