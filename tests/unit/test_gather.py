"""Prefetch engine: every key state and every FHIR-server failure mode (respx fakes the server;
the end-to-end tests do the same against a real one)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from cds_service.data.gather import Gatherer, KeyState, build_fhir_client
from cds_service.data.prefetch import PrefetchSpec
from cds_service.data.templates import check_template, render, token_values
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import HookRequest
from cds_service.settings import Settings

FHIR = "https://ehr.example.org/fhir"
TOKEN = "secret-token-abc"
PATIENT = {"resourceType": "Patient", "id": "p1"}
SPECS = (
    PrefetchSpec("patient", "Patient/{{context.patientId}}", required=True),
    PrefetchSpec(
        "obs", "Observation?patient={{context.patientId}}&code=http://loinc.org|2157-6", all_pages=True
    ),
)


def bundle(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def obs(i: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final"}


def request(prefetch: dict[str, Any] | None = None, token: bool = True, server: bool = True) -> HookRequest:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "h1",
        "context": {"patientId": "p1", "userId": "Practitioner/d1"},
    }
    if server:
        body["fhirServer"] = FHIR
    if token:
        body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer"}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return HookRequest.model_validate(body)


def settings(**kw: Any) -> Settings:
    return Settings(profile="production", database_url="sqlite+aiosqlite://", patient_hash_key="k", **kw)


async def gather(req: HookRequest, specs: tuple[PrefetchSpec, ...] = SPECS, **kw: Any) -> Any:
    s = settings(**kw)
    async with build_fhir_client(s) as client:
        return await Gatherer(s, client).gather(specs, req)


# ------------------------------------------------------------------ templates


def test_tokens_render_and_encode() -> None:
    values = token_values({"patientId": "a b", "userId": "PractitionerRole/r1", "flag": True, "obj": {}})
    assert values == {
        "context.patientId": "a b",
        "context.userId": "PractitionerRole/r1",
        "userPractitionerRoleId": "r1",
    }
    assert render("Patient/{{context.patientId}}", values) == "Patient/a%20b"
    assert render("x?user={{context.userId}}", values) == "x?user=PractitionerRole/r1"
    assert render("Encounter/{{context.encounterId}}", values) is None
    assert render("Practitioner/{{userPractitionerId}}", values) is None
    assert render("PractitionerRole/{{ userPractitionerRoleId }}", values) == "PractitionerRole/r1"


@pytest.mark.parametrize(
    "template",
    [
        "Observation?date=ge{{today() - 90 days}}",
        "MedicationRequest/{{context.draftOrders.entry.resource.id}}",
        "Patient/{{patientId}}",
        "Patient/{{context.patientId}",
    ],
)
def test_non_2_0_tokens_refused(template: str) -> None:
    with pytest.raises(ValueError, match="token"):
        check_template(template)


# ------------------------------------------------------------------ key states


async def test_present_resource_and_bundle_used_as_given() -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="ehr.example.org")
        data = await gather(request({"patient": PATIENT, "obs": bundle(obs(1), obs(2))}))
    assert not route.called
    assert data.keys["patient"].state is KeyState.PREFETCHED
    assert [o["id"] for o in data.resources("obs")] == ["o1", "o2"]
    assert data.missing == [] and data.fetched == []


async def test_null_means_no_data_and_is_not_refetched() -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="ehr.example.org")
        data = await gather(request({"patient": PATIENT, "obs": None}))
    assert not route.called
    assert data.keys["obs"].state is KeyState.NULL and data.resources("obs") == []


async def test_absent_keys_fetched_in_parallel_with_token() -> None:
    with respx.mock() as mock:
        p = mock.get(f"{FHIR}/Patient/p1").respond(json=PATIENT)
        o = mock.get(f"{FHIR}/Observation").respond(json=bundle(obs(1)))
        data = await gather(request({}))
    assert p.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert o.calls.last.request.url.params["code"] == "http://loinc.org|2157-6"
    assert data.fetched == ["patient", "obs"]
    assert data.of_type("Observation")[0]["id"] == "o1"


@pytest.mark.parametrize(
    "given",
    [
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        bundle({"resourceType": "OperationOutcome", "issue": [{"severity": "fatal", "code": "exception"}]}),
        "not a resource",
    ],
)
async def test_error_values_are_refetched(given: Any) -> None:
    with respx.mock() as mock:
        mock.get(f"{FHIR}/Observation").respond(json=bundle(obs(7)))
        data = await gather(request({"patient": PATIENT, "obs": given}))
    assert data.keys["obs"].state is KeyState.FETCHED
    assert data.resources("obs")[0]["id"] == "o7"


async def test_informational_outcome_in_bundle_is_ignored() -> None:
    info = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational"}],
    }
    data = await gather(request({"patient": PATIENT, "obs": bundle(obs(1), info)}, token=False))
    assert data.keys["obs"].state is KeyState.PREFETCHED
    assert [r["id"] for r in data.resources("obs")] == ["o1"]


async def test_error_value_without_token_degrades_optional_key() -> None:
    oo = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    data = await gather(request({"patient": PATIENT, "obs": oo}, token=False))
    assert data.keys["obs"].state is KeyState.MISSING
    assert "OperationOutcome" in (data.keys["obs"].problem or "")
    assert data.missing == ["obs"]


async def test_required_key_without_server_is_412() -> None:
    with pytest.raises(PreconditionFailed) as exc:
        await gather(request({}, token=False, server=False))
    assert exc.value.status == 412
    assert "'patient'" in exc.value.message and "no fhirServer" in exc.value.message


async def test_tokenless_fetch_only_when_allowed() -> None:
    with pytest.raises(PreconditionFailed, match="tokenless fetch is disabled"):
        await gather(request({}, token=False))
    with respx.mock() as mock:
        p = mock.get(f"{FHIR}/Patient/p1").respond(json=PATIENT)
        mock.get(f"{FHIR}/Observation").respond(json=bundle())
        data = await gather(request({}, token=False), allow_open_fhir_fetch=True)
    assert "Authorization" not in p.calls.last.request.headers
    assert data.keys["patient"].state is KeyState.FETCHED


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(500), "HTTP 500"),
        (httpx.Response(401), "refused access (HTTP 401)"),
        (httpx.Response(403), "refused access (HTTP 403)"),
        (httpx.Response(404), "HTTP 404"),
        (httpx.Response(200, content=b"{not json"), "invalid JSON"),
        (httpx.Response(200, json=[1, 2]), "not a FHIR resource"),
        (
            httpx.Response(200, json={"resourceType": "OperationOutcome", "issue": []}),
            "OperationOutcome",
        ),
        (httpx.ConnectError("boom"), "could not connect"),
        (httpx.ReadTimeout("slow"), "timed out"),
    ],
)
async def test_fhir_failures_make_required_key_412(response: Any, reason: str) -> None:
    with respx.mock() as mock:
        route = mock.get(f"{FHIR}/Patient/p1")
        if isinstance(response, Exception):
            route.side_effect = response
        else:
            route.return_value = response
        mock.get(f"{FHIR}/Observation").respond(json=bundle())
        with pytest.raises(PreconditionFailed) as exc:
            await gather(request({}))
    assert reason in exc.value.message
    assert TOKEN not in exc.value.message and FHIR not in exc.value.message


async def test_optional_failure_degrades_and_handler_is_told() -> None:
    with respx.mock() as mock:
        mock.get(f"{FHIR}/Observation").respond(500)
        data = await gather(request({"patient": PATIENT}))
    assert data.keys["obs"].state is KeyState.MISSING
    assert data.missing == ["obs"] and data.keys["obs"].problem == "FHIR server answered HTTP 500"


async def test_deadline_applies_to_all_fetches() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=bundle())

    with respx.mock(assert_all_called=False) as mock:  # the cancelled call is never recorded
        mock.get(f"{FHIR}/Patient/p1").respond(json=PATIENT)
        mock.get(f"{FHIR}/Observation").mock(side_effect=slow)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        data = await gather(request({}), prefetch_deadline_seconds=0.3)
        elapsed = loop.time() - t0
    assert elapsed < 2  # cancelled at the deadline, not after the 5 s sleep (not a speed test)
    assert data.keys["patient"].state is KeyState.FETCHED
    assert "did not answer within 0.3 s" in (data.keys["obs"].problem or "")


async def test_paging_follows_next_links_with_token() -> None:
    with respx.mock() as mock:
        mock.get(f"{FHIR}/Observation", params={"page": "2"}).respond(
            json=bundle(obs(2), next_url=f"{FHIR}/Observation?page=3")
        )
        p3 = mock.get(f"{FHIR}/Observation", params={"page": "3"}).respond(json=bundle(obs(3)))
        data = await gather(
            request({"patient": PATIENT, "obs": bundle(obs(1), next_url=f"{FHIR}/Observation?page=2")})
        )
    assert [o["id"] for o in data.resources("obs")] == ["o1", "o2", "o3"]
    assert p3.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert data.keys["obs"].state is KeyState.FETCHED


async def test_page_cap_marks_key_partial() -> None:
    def page(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json=bundle(obs(n), next_url=f"{FHIR}/Observation?page={n + 1}"))

    with respx.mock() as mock:
        mock.get(f"{FHIR}/Patient/p1").respond(json=PATIENT)
        mock.get(f"{FHIR}/Observation").mock(side_effect=page)
        data = await gather(request({}), fhir_page_cap=3)
    assert len(data.resources("obs")) == 3
    assert data.keys["obs"].state is KeyState.PARTIAL and "3 pages" in (data.keys["obs"].problem or "")


async def test_next_link_to_another_host_is_not_followed() -> None:
    with respx.mock(assert_all_called=False) as mock:
        evil = mock.get("https://evil.example.net/steal").respond(json=bundle(obs(9)))
        data = await gather(
            request({"patient": PATIENT, "obs": bundle(obs(1), next_url="https://evil.example.net/steal")})
        )
    assert not evil.called
    assert data.keys["obs"].state is KeyState.PARTIAL
    assert [o["id"] for o in data.resources("obs")] == ["o1"]


async def test_prefetched_next_link_without_token_is_partial() -> None:
    data = await gather(
        request(
            {"patient": PATIENT, "obs": bundle(obs(1), next_url=f"{FHIR}/Observation?page=2")}, token=False
        )
    )
    assert data.keys["obs"].state is KeyState.PARTIAL and len(data.resources("obs")) == 1


async def test_unresolvable_template_is_skipped_not_sent() -> None:
    specs = (PrefetchSpec("enc", "Encounter/{{context.encounterId}}"),)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="ehr.example.org")
        data = await gather(request({}), specs)
    assert not route.called
    assert data.keys["enc"].state is KeyState.MISSING and "token not in context" in (
        data.keys["enc"].problem or ""
    )


async def test_redirects_are_not_followed() -> None:
    with respx.mock() as mock:
        mock.get(f"{FHIR}/Patient/p1").respond(302, headers={"Location": "https://evil.example.net/x"})
        mock.get(f"{FHIR}/Observation").respond(json=bundle())
        with pytest.raises(PreconditionFailed, match="HTTP 302"):
            await gather(request({}))


def test_token_never_in_repr() -> None:
    req = request({})
    assert TOKEN not in repr(req) and TOKEN not in str(req.fhirAuthorization)
