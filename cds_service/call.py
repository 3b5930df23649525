"""One CDS Hooks call as a plain function: no HTTP, no framework, callable from a unit test.

The path of a call, in order: the (id, hook) pair is dispatched, the typed hook context is parsed,
``fhirServer`` is checked against the verified client (before any FHIR request), the prefetch is
gathered (given data first, missing keys fetched under one deadline), the topic's handler runs with
the typed context, our own answer is checked against the spec (self-check), and the issued cards
are returned as rows for the registry. The HTTP layer (``cds_service/http``) reads the body and
writes the response; this module decides everything in between. What the call learns for metrics,
audit and logs it writes into the request's :class:`~cds_service.ops.record.CallRecord`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from cds_service.data.gather import Gatherer
from cds_service.data.subject import screen_subject
from cds_service.ops.observability import hash_patient
from cds_service.ops.record import CallRecord
from cds_service.protocol.errors import BadRequest, CdsError
from cds_service.protocol.models import HookRequest, dump
from cds_service.protocol.validate import response_problems
from cds_service.registry import HookCall, Registry, Snooze
from cds_service.settings import Settings
from cds_service.storage.repo import IssuedCard, RememberedAnswer
from cds_service.trust.client_jwt import ClientIdentity
from cds_service.trust.fhir_guard import check_fhir_server

log = logging.getLogger("cds.service")


def validation_message(exc: ValidationError, prefix: str) -> str:
    """Field paths and reasons only: pydantic's own text can echo input values (PHI)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{prefix}{loc}: {err['msg']}")
    return "; ".join(parts)


# Override memory (issue 17): the patient's remembered answers for this service, from storage.
MemorySource = Callable[[str, str, datetime], Awaitable[Sequence[RememberedAnswer]]]


async def remembered(
    memory: MemorySource | None, service_id: str, patient_hash: str, now: datetime
) -> tuple[Snooze, ...]:
    """The snoozes for this call; a database problem shows every card rather than failing the call
    (holding cards back is a convenience, never a reason to answer an error)."""
    if memory is None:
        return ()
    try:
        rows = await memory(service_id, patient_hash, now)
    except Exception as exc:
        log.warning("override memory unavailable; no card snoozed", extra={"fields": {"problem": type(exc).__name__}})
        return ()
    return tuple(Snooze(r.rule_id, r.fingerprint, r.outcome, r.issued_at, r.until, r.concepts) for r in rows)


@dataclass
class CallOutcome:
    """The answer of one call: the response body, and one registry row per issued card."""

    body: dict[str, Any]
    issued: list[IssuedCard] = field(default_factory=list)


async def run_call(
    service_id: str,
    req: HookRequest,
    *,
    settings: Settings,
    registry: Registry,
    gatherer: Gatherer,
    client: ClientIdentity | None,
    base_url: str,
    record: CallRecord | None = None,
    now: datetime | None = None,
    memory: MemorySource | None = None,
) -> CallOutcome:
    """Run one call of ``service_id`` (known to the registry) with the parsed request ``req``.

    Raises :class:`CdsError` (400 wrong hook or context, 412 fhirServer refused or required data
    missing, 500 non-conformant answer); the HTTP layer turns it into an OperationOutcome.
    """
    record = record if record is not None else CallRecord("POST", "service", service_id)
    service = registry.get(service_id, req.hook)
    if service is None:
        served = ", ".join(registry.hooks_of(service_id))
        raise BadRequest(f"Service '{service_id}' does not serve hook '{req.hook}' (it serves: {served})")
    if service.id != service_id:  # a deprecated alias (Registry.add_alias)
        log.warning(
            "deprecated service id",
            extra={"fields": {"service": service_id, "hook": req.hook, "use": service.id}},
        )
    record.served = (service_id, req.hook)  # registered: safe as metric labels
    try:
        context: BaseModel = service.context_model().model_validate(req.context)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc, "context.")) from None
    if req.fhirAuthorization is not None and not req.fhirServer:
        raise BadRequest("fhirServer is required when fhirAuthorization is given")
    patient_hash = hash_patient(settings.hash_key, str(req.context.get("patientId") or ""))
    record.hook, record.hook_instance, record.patient = req.hook, req.hookInstance[:200], patient_hash
    check_fhir_server(req, client, settings.https_fhir_only)
    data = await gatherer.gather(service.prefetch, req, service.sieve)
    record.foreign_dropped = screen_subject(data, str(req.context.get("patientId") or ""))
    now = now or datetime.now(UTC)
    load_memory = functools.partial(remembered, memory, service_id, patient_hash, now)  # loaded if needed
    result = await service.handler(HookCall(req, context, data, now, base_url.rstrip("/"), memory=load_memory))
    record.issued = list(result.issued)
    record.snoozed = list(result.snoozed)
    body = dump(result.response)
    if settings.self_check:
        problems = response_problems(body)
        if problems:
            log.error("response failed self-check", extra={"fields": {"problems": problems[:20]}})
            raise CdsError(500, "The service produced a non-conformant response; it was withheld.")
    rows = [
        IssuedCard(
            card_uuid=c.card_uuid,
            service_id=service_id,
            rule_id=c.rule_id,
            indicator=c.indicator,
            hook=req.hook,
            hook_instance=req.hookInstance[:200],
            patient_hash=patient_hash,
            issued_at=now,
            fingerprint=c.fingerprint,
            concepts=c.concepts,
        )
        for c in result.issued
    ]
    return CallOutcome(body, rows)
