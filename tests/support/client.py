"""Helpers for talking to the service in tests: every 200 answer goes through the validator."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from cds_service.protocol.validate import discovery_problems, response_problems


def hook_body(
    hook: str = "patient-view",
    patient: str = "pt-1",
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    token: str | None = None,
    **context: Any,
) -> dict[str, Any]:
    ctx: dict[str, Any] = {"userId": "Practitioner/dr-1", "patientId": patient, **context}
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": ctx}
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "cds-fasciculation",
            "patient": patient,
        }
    return body


def checked(resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of a response; 200 service answers must be spec-conformant, errors must be
    OperationOutcomes."""
    body: dict[str, Any] = resp.json()
    if resp.status_code == 200:
        if "services" in body:
            assert discovery_problems(body) == []
        elif "cards" in body:
            assert response_problems(body) == [], response_problems(body)
    elif resp.status_code >= 400:
        assert body.get("resourceType") == "OperationOutcome", body
        assert body["issue"][0]["diagnostics"]
        assert "Traceback" not in resp.text
    return body


CARD_EXTENSION = "org.cds-fasciculation.card"  # = cds_service.clinical.cards.CARD_EXTENSION


def rule_of(card: dict[str, Any]) -> str:
    """The rule behind a card, from its machine-readable extension (never from the Markdown)."""
    rule: str = card["extension"][CARD_EXTENSION]["rule"]
    return rule
