"""The CDS call as a plain function (``cds_service.call.run_call``), with no server and no HTTP:
dispatch, typed context, fhirServer guard, gather, handler, self-check, issued-card rows, and what
the call writes into the request's ``CallRecord`` for metrics and audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cds_service.call import run_call
from cds_service.data.gather import Gatherer
from cds_service.ops.record import CallRecord, classify
from cds_service.protocol.errors import CdsError
from cds_service.protocol.models import Card, CdsResponse, Hook, HookRequest, PatientViewContext, Source
from cds_service.registry import HandlerResult, HookCall, Registry, ServiceDefinition
from cds_service.settings import Settings
from tests.support import probe_service

SETTINGS = Settings(database_url="sqlite+aiosqlite://")
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def request(hook: str = "patient-view", **extra: Any) -> HookRequest:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/dr-1", "patientId": "pt-1"},
        "prefetch": {"patient": {"resourceType": "Patient", "id": "pt-1"}, "observations": None},
    }
    if hook == "order-sign":
        body["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": []}
    body.update(extra)
    return HookRequest.model_validate(body)


@pytest.fixture
async def gatherer() -> AsyncIterator[Gatherer]:
    async with httpx.AsyncClient() as client:
        yield Gatherer(SETTINGS, client)


def probe_registry() -> Registry:
    registry = Registry()
    probe_service.register(registry, SETTINGS)
    return registry


async def test_a_call_without_a_server(gatherer: Gatherer) -> None:
    record = CallRecord("POST", "service", "probe")
    outcome = await run_call(
        "probe", request(), settings=SETTINGS, registry=probe_registry(), gatherer=gatherer,
        client=None, base_url="http://cds.test/", record=record, now=NOW,
    )  # fmt: skip
    [card] = outcome.body["cards"]
    assert card["summary"] == "probe patient-view"
    assert "patient=prefetched:1" in card["detail"] and "observations=null:0" in card["detail"]
    [row] = outcome.issued
    assert (row.card_uuid, row.rule_id, row.service_id, row.hook, row.issued_at) == (
        card["uuid"], "PROBE", "probe", "patient-view", NOW,
    )  # fmt: skip
    assert row.patient_hash == record.patient and row.patient_hash not in ("pt-1", "-")
    assert record.served == ("probe", "patient-view")
    assert [c.rule_id for c in record.issued] == ["PROBE"]
    fields = record.audit_fields()
    assert fields["hook"] == "patient-view" and fields["cards"] == 1 and fields["rules"] == ["PROBE"]


async def test_the_handler_gets_the_typed_context(gatherer: Gatherer) -> None:
    seen: list[HookCall] = []

    async def handler(call: HookCall) -> HandlerResult:
        seen.append(call)
        return HandlerResult(CdsResponse(cards=[]))

    registry = Registry()
    registry.add(ServiceDefinition("typed", Hook.PATIENT_VIEW, "Typed", "records its call", handler))
    outcome = await run_call(
        "typed", request(), settings=SETTINGS, registry=registry, gatherer=gatherer,
        client=None, base_url="http://cds.test/", now=NOW,
    )  # fmt: skip
    assert outcome.body == {"cards": []} and outcome.issued == []
    [call] = seen
    assert isinstance(call.context, PatientViewContext)
    assert call.context.patientId == "pt-1"
    assert call.base_url == "http://cds.test" and call.now == NOW


@pytest.mark.parametrize(
    ("req", "status", "text"),
    [
        (request("order-select"), 400, "does not serve hook 'order-select'"),
        (request(context={"userId": "Practitioner/dr-1"}), 400, "context.patientId"),
        (request(fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 60,
                                    "scope": "patient/*.read", "subject": "cds"}), 400, "fhirServer is required"),
    ],
)  # fmt: skip
async def test_refusals_are_cds_errors(gatherer: Gatherer, req: HookRequest, status: int, text: str) -> None:
    record = CallRecord("POST", "service", "probe")
    with pytest.raises(CdsError) as err:
        await run_call(
            "probe", req, settings=SETTINGS, registry=probe_registry(), gatherer=gatherer,
            client=None, base_url="", record=record,
        )  # fmt: skip
    assert err.value.status == status and text in str(err.value.outcome())
    assert record.issued == []


async def test_a_non_conformant_answer_is_withheld(gatherer: Gatherer) -> None:
    async def broken(call: HookCall) -> HandlerResult:
        # A card the spec refuses: summary over 140 characters, no uuid.
        return HandlerResult(CdsResponse(cards=[Card(summary="x" * 150, indicator="info", source=Source(label="t"))]))

    registry = Registry()
    registry.add(ServiceDefinition("broken", Hook.PATIENT_VIEW, "Broken", "bad cards", broken))
    with pytest.raises(CdsError) as err:
        await run_call(
            "broken", request(), settings=SETTINGS, registry=registry, gatherer=gatherer,
            client=None, base_url="",
        )  # fmt: skip
    assert err.value.status == 500


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/cds-services", ("discovery", None)),
        ("/cds-services/probe", ("service", "probe")),
        ("/cds-services/probe/feedback", ("feedback", "probe")),
        ("/evidence/r01", ("evidence", None)),
        ("/metrics", ("metrics", None)),
        ("/anything/else", ("other", None)),
    ],
)
def test_one_path_classification(path: str, kind: tuple[str, str | None]) -> None:
    assert classify(path) == kind
    record = CallRecord("POST", *kind)
    assert record.is_cds_call == (kind[0] in ("discovery", "service", "feedback"))
    assert not CallRecord("OPTIONS", *kind).is_cds_call
