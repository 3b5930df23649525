"""The one door from the app to the service's card pipeline, and the data both read.

``cards_for`` is the only place the app obtains cards: it builds the same ``HookRequest`` an EHR
would send for ``patient-view`` (with the data already in ``prefetch``) and runs it through
``cds_service.call.run_call``, exactly what ``POST /cds-services/fasciculation-workup`` runs: the
gatherer takes the data as given, the registered handler calls ``Topic.assess``, the core checks
the answer against the protocol and serialises it with ``protocol.models.dump``. The app does not
record issued cards (they were not shown in an EHR's card list).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from cds_service.call import run_call
from cds_service.clinical.services import SERVICE_IDS
from cds_service.data.gather import Gatherer
from cds_service.data.prefetch import PrefetchSpec
from cds_service.protocol.models import Hook, HookRequest
from cds_service.registry import Registry
from cds_service.settings import Settings

HOOK = Hook.PATIENT_VIEW
SERVICE_ID = SERVICE_IDS[HOOK]
UNKNOWN_USER = "Practitioner/unknown"


def patient_view_specs(registry: Registry) -> tuple[PrefetchSpec, ...]:
    service = registry.get(SERVICE_ID, HOOK)
    if service is None:
        raise LookupError(f"service {SERVICE_ID} ({HOOK}) is not registered")
    return service.prefetch


async def cards_for(
    registry: Registry,
    settings: Settings,
    gatherer: Gatherer,
    prefetch: dict[str, Any],
    patient_id: str,
    user_id: str | None,
    now: datetime,
    base_url: str,
) -> list[dict[str, Any]]:
    """The cards the hook gives for this patient and data (raises ``PreconditionFailed`` when a
    required key is absent, as the hook would answer 412)."""
    if registry.get(SERVICE_ID, HOOK) is None:
        raise LookupError(f"service {SERVICE_ID} ({HOOK}) is not registered")
    request = HookRequest.model_validate(
        {
            "hook": HOOK.value,
            "hookInstance": str(uuid.uuid4()),
            "context": {"patientId": patient_id, "userId": user_id or UNKNOWN_USER},
            "prefetch": prefetch,
        }
    )
    outcome = await run_call(
        SERVICE_ID,
        request,
        settings=settings,
        registry=registry,
        gatherer=gatherer,
        client=None,
        base_url=base_url,
        now=now,
    )
    cards = outcome.body.get("cards")
    return [c for c in cards if isinstance(c, dict)] if isinstance(cards, list) else []


async def cards_offline(
    registry: Registry,
    settings: Settings,
    prefetch: dict[str, Any],
    patient_id: str,
    now: datetime,
    base_url: str,
) -> list[dict[str, Any]]:
    """``cards_for`` without a running service (the ``evaluate --html`` command): the gatherer
    never fetches, every key being in ``prefetch``."""
    async with httpx.AsyncClient(trust_env=False) as client:
        return await cards_for(
            registry, settings, Gatherer(settings, client), prefetch, patient_id, None, now, base_url
        )


def resources_by_type(prefetch: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every resource in prefetch-shaped data, by type, once per id (keys overlap)."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            found = [e.get("resource") for e in value.get("entry") or () if isinstance(e, dict)]
        else:
            found = [value]
        for res in found:
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                continue
            key = (res["resourceType"], str(res.get("id")))
            if res.get("id") is not None and key in seen:
                continue
            seen.add(key)
            out.setdefault(res["resourceType"], []).append(res)
    return out


def prefetch_from_bundle(
    specs: tuple[PrefetchSpec, ...], bundle: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A Bundle file as prefetch for the given templates, and the patient id.

    Each resource goes to the first key whose template queries its type (the handler merges all
    keys, so which of several Observation keys holds a result does not matter); types no template
    queries go to the first search key. Keys left empty get an empty searchset: the file is the
    whole record, so nothing is 'missing'."""
    resources: list[dict[str, Any]] = [
        e["resource"]
        for e in bundle.get("entry") or ()
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    patient_id = str(patients[0].get("id")) if patients else "unknown"
    prefetch: dict[str, Any] = {}
    search_keys = []
    by_type: dict[str, str] = {}
    for spec in specs:
        kind = spec.template.split("?", 1)[0].split("/", 1)[0]
        if "?" in spec.template:
            prefetch[spec.key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
            search_keys.append(spec.key)
            by_type.setdefault(kind, spec.key)
        elif kind == "Patient":
            prefetch[spec.key] = patients[0] if patients else None
    for res in resources:
        kind = str(res.get("resourceType"))
        if kind == "Patient" or not search_keys:
            continue
        prefetch[by_type.get(kind, search_keys[0])]["entry"].append({"resource": res})
    return prefetch, patient_id
