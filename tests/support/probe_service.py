"""A test-only CDS service that reports what data it got; loaded with
CDS_SERVICE_MODULES=tests.support.probe_service. It exercises the core without clinical logic."""

from __future__ import annotations

import uuid

from cds_service.data.prefetch import PrefetchSpec
from cds_service.protocol.models import Card, CdsResponse, Hook, Source
from cds_service.registry import (
    CardRecord,
    HandlerResult,
    HookCall,
    Registry,
    ServiceDefinition,
)
from cds_service.settings import Settings

PREFETCH = (
    PrefetchSpec("patient", "Patient/{{context.patientId}}", required=True),
    PrefetchSpec(
        "observations",
        "Observation?patient={{context.patientId}}&_sort=-date&_count=50",
        required=False,
        all_pages=True,
    ),
    PrefetchSpec("practitioner", "Practitioner/{{userPractitionerId}}", required=False),
)


async def probe(call: HookCall) -> HandlerResult:
    data = call.data
    parts = [f"{k}={r.state.value}:{len(r.resources)}" for k, r in sorted(data.keys.items())]
    card_id = str(uuid.uuid4())
    card = Card(
        uuid=card_id,
        summary=f"probe {call.request.hook}",
        detail="\n".join(f"- {p}" for p in parts)
        + ("\n\nMissing: " + ", ".join(data.missing) if data.missing else ""),
        indicator="info",
        source=Source(label="probe"),
    )
    return HandlerResult(CdsResponse(cards=[card]), [CardRecord(card_id, "PROBE", "info")])


async def silent(call: HookCall) -> HandlerResult:
    return HandlerResult(CdsResponse(cards=[]))


def register(registry: Registry, settings: Settings) -> None:
    for hook in (Hook.PATIENT_VIEW, Hook.ORDER_SIGN):
        registry.add(
            ServiceDefinition(
                id="probe",
                hook=hook,
                title="Probe",
                description="Reports which prefetch keys it received and how",
                handler=probe,
                prefetch=PREFETCH,
                usage_requirements="Test only",
            )
        )
    registry.add(
        ServiceDefinition(
            id="silent", hook=Hook.PATIENT_VIEW, title="Silent", description="No cards", handler=silent
        )
    )
