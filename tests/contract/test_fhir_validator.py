"""The FHIR R4 oracle (tests/support/fhir_validator.py) must accept good resources and reject known-bad
ones; otherwise every "passes the validator" assertion elsewhere would prove nothing.

All cases go to Node in one batch (module fixture) to keep this fast.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.fhir_validator import ValidationResult, validate_resources

pytestmark = pytest.mark.node

GOOD_SERVICE_REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "id": "sr-ck",
    "status": "draft",
    "intent": "proposal",
    "category": [
        {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "108252007",
                    "display": "Laboratory procedure",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {
                "system": "http://loinc.org",
                "code": "2157-6",
                "display": "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma",
            }
        ],
        "text": "Creatine kinase",
    },
    "subject": {"reference": "Patient/pt-1"},
    "authoredOn": "2026-01-01T10:00:00Z",
    "reasonCode": [{"text": "Fasciculations"}],
}

GOOD_OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs-tsh",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    "code": {
        "coding": [
            {
                "system": "http://loinc.org",
                "code": "3016-3",
                "display": "Thyrotropin [Units/volume] in Serum or Plasma",
            }
        ]
    },
    "subject": {"reference": "Patient/pt-1"},
    "effectiveDateTime": "2025-12-01T08:30:00Z",
    "valueQuantity": {
        "value": 2.1,
        "unit": "m[IU]/L",
        "system": "http://unitsofmeasure.org",
        "code": "m[IU]/L",
    },
}


def _without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    del out[key]
    return out


def _with(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    out.update(changes)
    return out


GOOD_CASES: dict[str, dict[str, Any]] = {
    "service-request": GOOD_SERVICE_REQUEST,
    "observation": GOOD_OBSERVATION,
}

BAD_CASES: dict[str, tuple[dict[str, Any], str]] = {
    # name: (resource, a fragment that must appear in at least one error)
    "observation-without-status": (_without(GOOD_OBSERVATION, "status"), "status"),
    "service-request-status-finished": (_with(GOOD_SERVICE_REQUEST, status="finished"), "status"),
    "unknown-element": (_with(GOOD_OBSERVATION, class_fhir={"code": "AMB"}), "class_fhir"),
    "value-quantity-value-string": (
        _with(GOOD_OBSERVATION, valueQuantity={**GOOD_OBSERVATION["valueQuantity"], "value": "2.1"}),
        "value",
    ),
    "service-request-without-subject": (_without(GOOD_SERVICE_REQUEST, "subject"), "subject"),
}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, ValidationResult]:
    """Every case validated in a single Node process."""
    names = list(GOOD_CASES) + list(BAD_CASES)
    resources = list(GOOD_CASES.values()) + [res for res, _ in BAD_CASES.values()]
    return dict(zip(names, validate_resources(resources), strict=True))


@pytest.mark.parametrize("name", list(GOOD_CASES))
def test_good_resource_passes(verdicts: dict[str, ValidationResult], name: str) -> None:
    result = verdicts[name]
    assert result.valid, result.errors
    assert result.errors == []


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_known_bad_resource_fails(verdicts: dict[str, ValidationResult], name: str) -> None:
    result = verdicts[name]
    assert not result.valid
    fragment = BAD_CASES[name][1]
    assert any(fragment in e for e in result.errors), result.errors


def test_required_binding_is_checked(verdicts: dict[str, ValidationResult]) -> None:
    """Medplum skips required bindings; the oracle must still catch them (via FHIR.js)."""
    errors = verdicts["service-request-status-finished"].errors
    assert any("fhir.js" in e and "finished" in e for e in errors), errors


def test_empty_batch_needs_no_node() -> None:
    assert validate_resources([]) == []
