"""End to end: the real server process, a real FHIR server (SEKMET), SQLite and Postgres.

Uses the test-only probe service so the core is tested without clinical logic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.storage.db import make_engine
from cds_service.storage.repo import Store
from tests.conftest import PROBE_ENV
from tests.support.client import checked, hook_body
from tests.support.db import query_rows
from tests.support.servers import FHIR_TOKEN, CdsServer, FhirServer, run_cds_server
from tests.support.trust_env import LocalIssuer

pytestmark = pytest.mark.e2e

PATIENT_ID = "pt-core-1"


def small_bundle() -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {
            "resource": {
                "resourceType": "Patient",
                "id": PATIENT_ID,
                "gender": "female",
                "birthDate": "1970-01-01",
            },
            "request": {"method": "PUT", "url": f"Patient/{PATIENT_ID}"},
        },
        {
            "resource": {"resourceType": "Practitioner", "id": "dr-1", "name": [{"family": "Test"}]},
            "request": {"method": "PUT", "url": "Practitioner/dr-1"},
        },
    ]
    for i, (code, value, unit) in enumerate(
        [("2157-6", 450, "U/L"), ("3016-3", 2.1, "m[IU]/L"), ("718-7", 13, "g/dL")]
    ):
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": f"Patient/{PATIENT_ID}"},
                    "effectiveDateTime": "2026-10-01T10:00:00Z",
                    "valueQuantity": {
                        "value": value,
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture(scope="module")
def loaded_fhir(fhir_bearer: FhirServer, fhir_open: FhirServer) -> tuple[FhirServer, FhirServer]:
    for server in (fhir_bearer, fhir_open):
        result = server.load(small_bundle())
        assert all(e["response"]["status"].startswith("20") for e in result["entry"])
    return fhir_bearer, fhir_open


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server(PROBE_ENV) as s:
        yield s


@pytest.fixture(scope="module")
def prod_client() -> LocalIssuer:
    """The production profile only answers trusted clients (client JWT; see test_trust_*)."""
    return LocalIssuer.create()


@pytest.fixture(scope="module")
def prod_server(prod_client: LocalIssuer) -> Iterator[CdsServer]:
    """Production profile: no tokenless FHIR fetch (plain-http FHIR allowed here for SEKMET)."""
    env = dict(PROBE_ENV, CDS_PROFILE="production", CDS_PATIENT_HASH_KEY="k1", CDS_AUTO_MIGRATE="true")
    env.update(prod_client.env(), CDS_FHIR_SERVER_REQUIRE_HTTPS="false")
    with run_cds_server(env) as s:
        yield s


def card_detail(body: dict[str, Any]) -> str:
    detail: str = body["cards"][0]["detail"]
    return detail


def test_discovery(server: CdsServer) -> None:
    r = httpx.get(server.url("/cds-services"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = checked(r)
    pairs = {(s["id"], s["hook"]) for s in body["services"]}
    assert pairs == {("probe", "patient-view"), ("probe", "order-sign"), ("silent", "patient-view")}
    probe = next(s for s in body["services"] if s["id"] == "probe")
    assert probe["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert probe["usageRequirements"] == "Test only"
    silent = next(s for s in body["services"] if s["id"] == "silent")
    assert "prefetch" not in silent and "usageRequirements" not in silent


def test_full_prefetch(server: CdsServer) -> None:
    body = hook_body(
        patient=PATIENT_ID,
        prefetch={
            "patient": {"resourceType": "Patient", "id": PATIENT_ID},
            "observations": None,
            "practitioner": None,
        },
    )
    out = checked(httpx.post(server.url("/cds-services/probe"), json=body))
    assert "patient=prefetched:1" in card_detail(out)
    assert "observations=null:0" in card_detail(out)


def test_no_prefetch_fetches_from_fhir_with_token(
    server: CdsServer, loaded_fhir: tuple[FhirServer, FhirServer]
) -> None:
    bearer, _ = loaded_fhir
    body = hook_body(patient=PATIENT_ID, fhir_server=bearer.base, token=FHIR_TOKEN)
    out = checked(httpx.post(server.url("/cds-services/probe"), json=body))
    detail = card_detail(out)
    assert "patient=fetched:1" in detail
    assert "observations=fetched:3" in detail
    assert "practitioner=fetched:1" in detail  # {{userPractitionerId}} from context.userId
    assert FHIR_TOKEN not in server.logs()


def test_same_service_second_hook(server: CdsServer) -> None:
    body = hook_body(
        "order-sign",
        patient=PATIENT_ID,
        prefetch={"patient": {"resourceType": "Patient", "id": PATIENT_ID}},
        draftOrders={"resourceType": "Bundle", "entry": []},
    )
    out = checked(httpx.post(server.url("/cds-services/probe"), json=body))
    assert out["cards"][0]["summary"] == "probe order-sign"


def test_wrong_token_is_412(server: CdsServer, loaded_fhir: tuple[FhirServer, FhirServer]) -> None:
    bearer, _ = loaded_fhir
    body = hook_body(patient=PATIENT_ID, fhir_server=bearer.base, token="wrong-token-xyz")
    r = httpx.post(server.url("/cds-services/probe"), json=body)
    assert r.status_code == 412
    msg = checked(r)["issue"][0]["diagnostics"]
    assert "'patient'" in msg and "HTTP 401" in msg
    assert "wrong-token-xyz" not in r.text and "wrong-token-xyz" not in server.logs()


def test_missing_patient_on_fhir_server_is_412(
    server: CdsServer, loaded_fhir: tuple[FhirServer, FhirServer]
) -> None:
    bearer, _ = loaded_fhir
    body = hook_body(patient="no-such-patient", fhir_server=bearer.base, token=FHIR_TOKEN)
    r = httpx.post(server.url("/cds-services/probe"), json=body)
    assert r.status_code == 412 and "HTTP 404" in checked(r)["issue"][0]["diagnostics"]


def test_open_fhir_without_token_dev_only(
    server: CdsServer,
    prod_server: CdsServer,
    prod_client: LocalIssuer,
    loaded_fhir: tuple[FhirServer, FhirServer],
) -> None:
    _, open_fhir = loaded_fhir
    body = hook_body(patient=PATIENT_ID, fhir_server=open_fhir.base)
    out = checked(httpx.post(server.url("/cds-services/probe"), json=body))
    assert "patient=fetched:1" in card_detail(out)
    headers = prod_client.headers("/cds-services/probe")
    r = httpx.post(prod_server.url("/cds-services/probe"), json=body, headers=headers)
    assert r.status_code == 412
    assert "tokenless fetch is disabled" in checked(r)["issue"][0]["diagnostics"]


def test_missing_optional_key_is_reported(server: CdsServer) -> None:
    body = hook_body(patient=PATIENT_ID, prefetch={"patient": {"resourceType": "Patient", "id": PATIENT_ID}})
    out = checked(httpx.post(server.url("/cds-services/probe"), json=body))
    assert "Missing: observations, practitioner" in card_detail(out)


def test_lenient_input(server: CdsServer) -> None:
    body = hook_body(
        patient=PATIENT_ID,
        prefetch={"patient": {"resourceType": "Patient", "id": PATIENT_ID}, "unknownKey": {"x": 1}},
        vendorField={"a": 1},
    )
    body["extension"] = {"com.example.flag": True}
    body["someFutureField"] = [1, 2]
    body["hookInstance"] = "not-a-uuid"
    assert httpx.post(server.url("/cds-services/probe"), json=body).status_code == 200


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda b: b.pop("hook"), 400, "hook"),
        (lambda b: b.pop("hookInstance"), 400, "hookInstance"),
        (lambda b: b.pop("context"), 400, "context"),
        (lambda b: b.update(context=None), 400, "context"),
        (lambda b: b["context"].pop("patientId"), 400, "context.patientId"),
        (lambda b: b["context"].pop("userId"), 400, "context.userId"),
        (lambda b: b.update(hook="order-select"), 400, "does not serve hook 'order-select'"),
        (
            lambda b: b.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer"}),
            400,
            "fhirServer",
        ),
        (lambda b: b.update(prefetch=[1]), 400, "prefetch"),
    ],
)
def test_bad_requests(server: CdsServer, mutate: Any, status: int, message: str) -> None:
    body = hook_body(patient=PATIENT_ID, prefetch={"patient": {"resourceType": "Patient", "id": PATIENT_ID}})
    mutate(body)
    r = httpx.post(server.url("/cds-services/probe"), json=body)
    assert r.status_code == status, r.text
    assert message in checked(r)["issue"][0]["diagnostics"]


def test_malformed_bodies(server: CdsServer) -> None:
    url = server.url("/cds-services/probe")
    for content in (b"{not json", b"[1,2]", b"", b"null", b'"text"'):
        r = httpx.post(url, content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, content
        checked(r)


def test_unknown_service_and_method(server: CdsServer) -> None:
    r = httpx.post(server.url("/cds-services/nope"), json=hook_body())
    assert r.status_code == 404 and "nope" in checked(r)["issue"][0]["diagnostics"]
    r = httpx.get(server.url("/cds-services/probe"))
    assert r.status_code == 405
    checked(r)
    r = httpx.get(server.url("/no/such/path"))
    assert r.status_code == 404
    checked(r)


def test_paths_without_redirect(server: CdsServer) -> None:
    body = hook_body(patient=PATIENT_ID, prefetch={"patient": {"resourceType": "Patient", "id": PATIENT_ID}})
    for path in ("/cds-services/", "//cds-services", "/cds-services//probe", "/cds-services/probe/"):
        method = "GET" if path.rstrip("/").endswith("cds-services") else "POST"
        r = httpx.request(method, server.url(path), json=body if method == "POST" else None)
        assert r.status_code == 200, (path, r.status_code)


def test_oversized_body_is_413(server: CdsServer) -> None:
    big = hook_body(patient=PATIENT_ID)
    big["prefetch"] = {"patient": {"resourceType": "Patient", "id": "x", "text": {"div": "a" * 6_000_000}}}
    r = httpx.post(server.url("/cds-services/probe"), content=json.dumps(big).encode())
    assert r.status_code == 413
    checked(r)


def test_cors_preflight_and_error_headers(server: CdsServer) -> None:
    r = httpx.options(
        server.url("/cds-services/probe"),
        headers={
            "Origin": "http://127.0.0.1:8080",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = httpx.post(server.url("/cds-services/nope"), json={}, headers={"Origin": "http://127.0.0.1:8080"})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*"


# ------------------------------------------------------------------ feedback and issued cards


def feedback_item(card: str, **kw: Any) -> dict[str, Any]:
    item = {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s-1"}],
        "outcomeTimestamp": "2026-11-20T10:00:00.52Z",
    }
    item.update(kw)
    return item


def _exercise_feedback(server: CdsServer, db_url: str) -> None:
    body = hook_body(patient=PATIENT_ID, prefetch={"patient": {"resourceType": "Patient", "id": PATIENT_ID}})
    out = checked(httpx.post(server.url("/cds-services/probe"), json=body))
    card_uuid = out["cards"][0]["uuid"]
    fb_url = server.url("/cds-services/probe/feedback")
    items = {
        "feedback": [
            feedback_item(card_uuid),
            feedback_item(
                card_uuid,
                outcome="overridden",
                acceptedSuggestions=None,
                overrideReason={
                    "reason": {"system": "http://example.org/reasons", "code": "not-now"},
                    "userComment": "seen by neurology",
                },
            ),
        ]
    }
    items["feedback"][1].pop("acceptedSuggestions")
    for _ in range(2):  # a repeat is idempotent
        r = httpx.post(fb_url, json=items)
        assert r.status_code == 200 and r.json() == {}
    store_rows = asyncio.run(
        query_rows(db_url, "select outcome, override_code, user_comment from feedback order by id")
    )
    assert [tuple(r) for r in store_rows] == [
        ("accepted", None, None),
        ("overridden", "not-now", "seen by neurology"),
    ]
    issued = asyncio.run(query_rows(db_url, "select rule_id, hook, patient_hash, hook_instance from issued_cards"))
    assert any(r[0] == "PROBE" and r[1] == "patient-view" for r in issued)
    assert all(PATIENT_ID not in r[2] and len(r[2]) == 32 for r in issued)


def test_feedback_sqlite(server: CdsServer) -> None:
    _exercise_feedback(server, server.env["CDS_DATABASE_URL"])


@pytest.mark.postgres
def test_feedback_and_hook_on_postgres(postgres_url: str, loaded_fhir: tuple[FhirServer, FhirServer]) -> None:
    with run_cds_server(dict(PROBE_ENV, CDS_DATABASE_URL=postgres_url)) as pg_server:
        bearer, _ = loaded_fhir
        body = hook_body(patient=PATIENT_ID, fhir_server=bearer.base, token=FHIR_TOKEN)
        out = checked(httpx.post(pg_server.url("/cds-services/probe"), json=body))
        assert "observations=fetched:3" in card_detail(out)
        _exercise_feedback(pg_server, postgres_url)
        assert httpx.get(pg_server.url("/readyz")).json()["database"] == "up"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        (
            {"feedback": [{"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
            "outcome",
        ),
        (
            {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
            "acceptedSuggestions",
        ),
        (
            {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
            "outcomeTimestamp",
        ),
        ({"feedback": [{"outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}, "card"),
    ],
)
def test_malformed_feedback(server: CdsServer, payload: dict[str, Any], message: str) -> None:
    r = httpx.post(server.url("/cds-services/probe/feedback"), json=payload)
    assert r.status_code == 400
    assert message in checked(r)["issue"][0]["diagnostics"]


def test_feedback_for_unknown_service_is_404(server: CdsServer) -> None:
    r = httpx.post(server.url("/cds-services/nope/feedback"), json={"feedback": [feedback_item("c")]})
    assert r.status_code == 404


def test_store_reports_newquery_rows(tmp_path: Any) -> None:
    """Unit-level: the store counts only new rows (idempotency on the dedupe key)."""
    from datetime import UTC, datetime

    from cds_service.protocol.models import FeedbackItem
    from cds_service.storage.db import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    upgrade(url)

    async def go() -> tuple[int, int, int]:
        store = Store(make_engine(url))
        item = FeedbackItem.model_validate(feedback_item("c9"))
        first = await store.save_feedback("svc", [item], datetime.now(UTC))
        again = await store.save_feedback("svc", [item], datetime.now(UTC))
        count = await store.count_feedback("c9")
        await store.engine.dispose()
        return first, again, count

    assert asyncio.run(go()) == (1, 0, 1)
