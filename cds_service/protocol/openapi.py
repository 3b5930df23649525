"""What ``/openapi.json`` says about the CDS Hooks endpoints, kept beside the wire models.

The hook and feedback endpoints read their bodies themselves (``app.read_json_object``) so that every
failure gets the status the checklist asks for; FastAPI therefore cannot see a body parameter and
would publish no request schema at all. This module supplies it (``openapi_extra``) from the very
models the endpoints parse with, plus the OperationOutcome every error carries (``responses``), so
that generated clients and fuzzers (schemathesis in tests/contract/test_fuzz_http.py) see the real contract.
Nothing here changes how a request is parsed.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cds_service.protocol.models import (
    CONTEXT_MODELS,
    FeedbackRequest,
    GenericContext,
    Hook,
    HookRequest,
)


class OperationOutcomeIssue(BaseModel):
    model_config = ConfigDict(extra="allow")

    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(min_length=1, description="FHIR IssueType, e.g. invalid, not-found, incomplete")
    diagnostics: str = Field(min_length=1, description="What was wrong, for a person; never a stack trace")


class OperationOutcome(BaseModel):
    """The body of every non-2xx answer: a FHIR R4 OperationOutcome with at least one issue."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["OperationOutcome"]
    issue: list[OperationOutcomeIssue] = Field(min_length=1)


_ERRORS: dict[int | str, str] = {
    400: "Malformed request: not a JSON object, a missing or mistyped field, or a hook this id does not serve",
    401: "Client JWT missing or not accepted (whenever client authentication is required)",
    404: "No CDS service with this id",
    412: "Data a service requires could not be obtained (prefetch, or fetching from fhirServer)",
    413: "Request body larger than the configured limit",
    "default": "Any other error; always an OperationOutcome",
}


def error_responses(*statuses: int | str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting the OperationOutcome for each status (and ``default``)."""
    return {s: {"model": OperationOutcome, "description": _ERRORS[s]} for s in (*statuses, "default")}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with nested models written in place: an ``openapi_extra`` schema
    cannot add entries to ``components``, and a ``$defs`` reference would resolve against the
    document root. None of the request models is recursive, so inlining terminates."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
                return resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def hook_request_schema() -> dict[str, Any]:
    """``HookRequest`` with its context spelled out per hook: the typed context models of
    patient-view, order-select and order-sign, or any object for another hook (dispatch is on
    ``(id, hook)``; a hook the id does not serve is a 400)."""
    schema = inline_schema(HookRequest)
    contexts = [inline_schema(m) for m in CONTEXT_MODELS.values()] + [inline_schema(GenericContext)]
    schema["properties"]["context"] = {
        "title": "Context",
        "description": "Hook-specific context; validated against the hook's context model",
        "anyOf": contexts,
    }
    schema["properties"]["prefetch"]["description"] = (
        "Prefetch key -> FHIR resource or Bundle, or null when the client has no data. A key that is "
        "absent, or whose value is not usable, is fetched from fhirServer when allowed."
    )
    return schema


_PATIENT_VIEW_EXAMPLE = {
    "hook": Hook.PATIENT_VIEW.value,
    "hookInstance": "5b5d5c3a-6f0e-4b53-9c3d-2f1f3a1b7e01",
    "context": {"userId": "Practitioner/dr-1", "patientId": "pt-1"},
    "prefetch": {
        "patient": {"resourceType": "Patient", "id": "pt-1", "birthDate": "1968-04-02", "gender": "male"},
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": "c1",
                        "clinicalStatus": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                    "code": "active",
                                }
                            ]
                        },
                        "code": {
                            "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.3"}]
                        },
                        "subject": {"reference": "Patient/pt-1"},
                    }
                }
            ],
        },
        "labs": None,
        "findings": None,
    },
}
_ORDER_SIGN_EXAMPLE = {
    **_PATIENT_VIEW_EXAMPLE,
    "hook": Hook.ORDER_SIGN.value,
    "hookInstance": "0c7d5f3e-2a4b-4c1d-9e8f-7a6b5c4d3e21",
    "context": {
        "userId": "Practitioner/dr-1",
        "patientId": "pt-1",
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "mr-1",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/pt-1"},
                        "medicationCodeableConcept": {
                            "coding": [
                                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}
                            ]
                        },
                    }
                }
            ],
        },
    },
}


def hook_openapi_extra() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /cds-services/{id}``: the request body the endpoint parses."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": hook_request_schema(),
                    "examples": {
                        Hook.PATIENT_VIEW.value: {"summary": "Chart opened", "value": _PATIENT_VIEW_EXAMPLE},
                        Hook.ORDER_SIGN.value: {
                            "summary": "Orders about to be signed",
                            "value": _ORDER_SIGN_EXAMPLE,
                        },
                    },
                }
            },
        }
    }


def feedback_request_schema() -> dict[str, Any]:
    """``FeedbackRequest`` plus the two rules the endpoint checks after parsing: ``outcomeTimestamp``
    is an RFC 3339 date-time, and an ``accepted`` item names the suggestions it accepted."""
    schema = inline_schema(FeedbackRequest)
    item = schema["properties"]["feedback"]["items"]
    item["properties"]["outcomeTimestamp"]["format"] = "date-time"
    item["if"] = {"properties": {"outcome": {"const": "accepted"}}, "required": ["outcome"]}
    item["then"] = {
        "required": ["acceptedSuggestions"],
        "properties": {"acceptedSuggestions": {"type": "array", "minItems": 1}},
    }
    return schema


def feedback_openapi_extra() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /cds-services/{id}/feedback``: request body and the empty 200."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": feedback_request_schema()}},
        },
        "responses": {
            "200": {
                "description": "Feedback stored durably (idempotent)",
                "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
            }
        },
    }
