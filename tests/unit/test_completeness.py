"""Data completeness (issue 17, section 1): a prefetched search that was cut off is completed from
fhirServer, and when it cannot be the service never answers as if the record were whole.

The prefetch engine is driven with respx (a fake FHIR server); the handler is the real fasciculation
service. The end-to-end variant against SEKMET is tests/test_completeness_e2e.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from cds_service.clinical.services import WorkupService, prefetch_templates
from cds_service.data.complete import cut_without_link, matched_count, merge_pages
from cds_service.data.gather import GatheredData, Gatherer, KeyState, build_fhir_client
from cds_service.data.prefetch import PrefetchSpec
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import HookRequest, PatientViewContext, dump
from cds_service.registry import HookCall
from cds_service.settings import Settings

FHIR = "https://ehr.example.org/fhir"
TOKEN = "secret-token-abc"
FASC = {"system": "http://snomed.info/sct", "code": "82470000", "display": "Muscle fasciculation (finding)"}
SPECS = (
    PrefetchSpec(
        "conditions", "Condition?patient={{context.patientId}}&_count=200", required=True, all_pages=True
    ),
    PrefetchSpec("reports", "DiagnosticReport?patient={{context.patientId}}", all_pages=True),
)


def condition(i: int, coding: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"c{i}",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [coding or {"system": "http://snomed.info/sct", "code": "38341003"}]},
        "subject": {"reference": "Patient/p1"},
        "recordedDate": "2026-10-01",
    }


def searchset(
    resources: list[dict[str, Any]], total: int | None = None, next_url: str | None = None
) -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    if total is not None:
        b["total"] = total
    if next_url:
        b["link"] = [{"relation": "next", "url": next_url}]
    return b


def request(prefetch: dict[str, Any], token: bool = True, server: bool = True) -> HookRequest:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "h1",
        "context": {"patientId": "p1", "userId": "Practitioner/d1"},
        "prefetch": prefetch,
    }
    if server:
        body["fhirServer"] = FHIR
    if token:
        body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer"}
    return HookRequest.model_validate(body)


def settings(**kw: Any) -> Settings:
    return Settings(profile="production", database_url="sqlite+aiosqlite://", patient_hash_key="k", **kw)


async def gather(req: HookRequest, specs: tuple[PrefetchSpec, ...] = SPECS, **kw: Any) -> GatheredData:
    s = settings(**kw)
    async with build_fhir_client(s) as client:
        return await Gatherer(s, client).gather(specs, req)


# ------------------------------------------------------------------ complete.py


def test_cut_without_link_judges_only_searchsets_with_a_total() -> None:
    three = [condition(i) for i in range(3)]
    assert cut_without_link(searchset(three, total=3)) is None
    assert cut_without_link(searchset(three)) is None  # no total: cannot be judged
    assert cut_without_link(searchset(three, total=250)) == "prefetch holds 3 of 250 matches and no next link"
    assert cut_without_link({"resourceType": "Bundle", "type": "collection", "total": 9}) is None
    assert cut_without_link(searchset(three, total=True)) is None  # type: ignore[arg-type]


def test_included_entries_do_not_count_as_matches() -> None:
    b = searchset([condition(1)], total=2)
    b["entry"].append({"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "include"}})
    assert matched_count(b) == 1
    assert cut_without_link(b) is not None


def test_merge_pages_drops_repeats() -> None:
    first = [condition(1), condition(2)]
    assert [r["id"] for r in merge_pages(first, [condition(2), condition(3)])] == ["c1", "c2", "c3"]
    assert merge_pages([], first) == first


# ------------------------------------------------------------------ the prefetch engine


async def test_prefetched_next_link_is_completed_with_the_token() -> None:
    page1 = searchset([condition(i) for i in range(200)], total=201, next_url=f"{FHIR}/Condition?page=2")
    with respx.mock() as mock:
        p2 = mock.get(f"{FHIR}/Condition", params={"page": "2"}).respond(
            json=searchset([condition(200, FASC)])
        )
        data = await gather(request({"conditions": page1, "reports": searchset([])}))
    assert p2.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert data.keys["conditions"].state is KeyState.FETCHED
    assert len(data.resources("conditions")) == 201 and not data.incomplete_required


async def test_cut_prefetch_without_link_is_fetched_again_in_full() -> None:
    given = searchset([condition(i) for i in range(3)], total=5)
    full = searchset([condition(i) for i in range(5)], total=5)
    with respx.mock() as mock:
        route = mock.get(f"{FHIR}/Condition", params={"patient": "p1", "_count": "200"}).respond(json=full)
        data = await gather(request({"conditions": given, "reports": searchset([])}))
    assert route.called
    assert [r["id"] for r in data.resources("conditions")] == [f"c{i}" for i in range(5)]
    assert data.keys["conditions"].state is KeyState.FETCHED


async def test_cut_prefetch_that_cannot_be_completed_is_partial_and_required() -> None:
    given = searchset([condition(i) for i in range(3)], total=5)
    data = await gather(request({"conditions": given, "reports": searchset([])}, token=False))
    key = data.keys["conditions"]
    assert key.state is KeyState.PARTIAL and len(key.resources) == 3
    assert "3 of 5" in (key.problem or "")
    assert [r.key for r in data.incomplete_required] == ["conditions"]


async def test_next_page_timeout_leaves_the_given_page_partial() -> None:
    page1 = searchset([condition(1)], next_url=f"{FHIR}/Condition?page=2")
    with respx.mock() as mock:
        mock.get(f"{FHIR}/Condition", params={"page": "2"}).mock(side_effect=httpx.ReadTimeout("slow"))
        data = await gather(request({"conditions": page1, "reports": searchset([])}))
    assert data.keys["conditions"].state is KeyState.PARTIAL
    assert data.incomplete_required and data.incomplete_required[0].key == "conditions"


async def test_optional_partial_key_is_not_required_incomplete() -> None:
    reports = searchset([], next_url=f"{FHIR}/DiagnosticReport?page=2")
    data = await gather(request({"conditions": searchset([condition(1)]), "reports": reports}, token=False))
    assert data.keys["reports"].state is KeyState.PARTIAL
    assert data.incomplete_required == []


# ------------------------------------------------------------------ the handler's answer


async def _answer(conditions: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    """Run the real fasciculation handler on a prefetch whose Condition search is whole or cut
    (page 1 with a next link the service may not follow: no token)."""
    s = settings()
    svc = WorkupService()
    specs = prefetch_templates(svc.t)
    prefetch: dict[str, Any] = {"patient": {"resourceType": "Patient", "id": "p1"}}
    for spec in specs:
        if spec.key != "patient":
            prefetch[spec.key] = searchset([])
    prefetch["conditions"] = searchset(
        conditions, next_url=None if complete else f"{FHIR}/Condition?patient=p1&page=2"
    )
    req = request(prefetch, token=False)
    async with build_fhir_client(s) as client:
        data = await Gatherer(s, client).gather(specs, req)
    ctx = PatientViewContext(patientId="p1", userId="Practitioner/dr-1")
    result = await svc.handle(HookCall(req, ctx, data, datetime.now(UTC)))
    return dump(result.response)


async def test_no_fasciculation_on_a_cut_record_is_412_not_silence() -> None:
    with pytest.raises(PreconditionFailed) as info:
        await _answer([condition(i) for i in range(5)], complete=False)
    assert info.value.status == 412
    assert "'conditions'" in str(info.value) and TOKEN not in str(info.value)


async def test_no_fasciculation_on_a_whole_record_is_silent() -> None:
    assert await _answer([condition(i) for i in range(5)], complete=True) == {"cards": []}


async def test_fasciculation_on_a_cut_record_gives_cards_naming_the_missing_data() -> None:
    body = await _answer([condition(1), condition(2, FASC)], complete=False)
    assert body["cards"]
    assert all("conditions (more pages" in (c.get("detail") or "") for c in body["cards"])
