"""fhirAuthorization judged before any FHIR request (issue 12): token_type, expires_in and scope
each give a 412 that names the reason, and nothing is sent (respx records every request; the
end-to-end proof with real tokens from the SMART App Launcher is tests/test_smart_launcher.py)."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from cds_service.data.fhir_auth import resource_type, scope_refusal, token_refusal
from cds_service.data.gather import Gatherer, KeyState, build_fhir_client
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import FhirAuthorization, HookRequest
from cds_service.registry import PrefetchSpec
from cds_service.settings import Settings

FHIR = "https://ehr.example.org/fhir"
TOKEN = "secret-token-xyz"
SPECS = (
    PrefetchSpec("patient", "Patient/{{context.patientId}}"),
    PrefetchSpec("conditions", "Condition?patient={{context.patientId}}", required=True),
    PrefetchSpec("appointments", "Appointment?patient={{context.patientId}}"),
)


def auth(**kw: Any) -> FhirAuthorization:
    return FhirAuthorization.model_validate({"access_token": TOKEN, "token_type": "Bearer", **kw})


def request(**kw: Any) -> HookRequest:
    return HookRequest.model_validate(
        {
            "hook": "patient-view",
            "hookInstance": "h1",
            "fhirServer": FHIR,
            "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", **kw},
            "context": {"patientId": "p1", "userId": "Practitioner/d1"},
        }
    )


async def gather(req: HookRequest) -> Any:
    s = Settings(profile="production", database_url="sqlite+aiosqlite://", patient_hash_key="k")
    async with build_fhir_client(s) as client:
        return await Gatherer(s, client).gather(SPECS, req)


def bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": []}


def test_token_type_and_expiry() -> None:
    assert token_refusal(auth()) is None
    assert token_refusal(auth(token_type="bearer", expires_in=30)) is None
    assert "token_type is not Bearer" in (token_refusal(auth(token_type="MAC")) or "")
    assert "expires_in is 0: the token has already expired" in (token_refusal(auth(expires_in=0)) or "")
    assert "expires_in is -5" in (token_refusal(auth(expires_in=-5)) or "")


@pytest.mark.parametrize(
    ("scope", "query", "allowed"),
    [
        ("launch openid fhirUser patient/*.read", "Observation?patient=p1", True),
        ("patient/*.* user/*.* launch openid profile online_access", "Condition?patient=p1", True),
        ("patient/Observation.read", "Observation?patient=p1", True),
        ("patient/Observation.read", "Condition?patient=p1", False),
        ("patient/Observation.rs", "Observation?patient=p1", True),
        ("patient/Observation.r", "Observation?patient=p1", False),  # v2: a search needs s
        ("patient/Patient.r", "Patient/p1", True),
        ("patient/Patient.s", "Patient/p1", False),
        ("system/*.read", "Appointment?patient=p1", True),
        ("user/Condition.cruds", "Condition?patient=p1", True),
        ("patient/Condition.write", "Condition?patient=p1", False),
        ("patient/Observation.rs?category=laboratory", "Observation?patient=p1", True),
        ("launch openid", "Condition?patient=p1", True),  # nothing to judge by: the server decides
        ("", "Condition?patient=p1", True),
    ],
)
def test_scope_coverage(scope: str, query: str, allowed: bool) -> None:
    reason = scope_refusal(auth(scope=scope), query)
    assert (reason is None) is allowed, reason


def test_scope_refusal_names_the_scope_it_needs() -> None:
    reason = scope_refusal(auth(scope="patient/Observation.read", patient="p1"), "Condition?patient=p1")
    assert reason == (
        "fhirAuthorization.scope does not allow searching Condition: it needs patient/Condition.read "
        "(SMART v1) or patient/Condition.s (v2); no request was made"
    )
    assert resource_type("Patient/p1") == "Patient" and resource_type("{{context.userId}}") is None


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"token_type": "MAC"}, "token_type is not Bearer"),
        ({"expires_in": 0}, "the token has already expired"),
        ({"expires_in": -30}, "the token has already expired"),
        ({"scope": "patient/Observation.read"}, "it needs patient/Condition.read"),
    ],
)
async def test_unusable_token_is_412_before_any_request(extra: dict[str, Any], reason: str) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=FHIR).respond(json=bundle())
        with pytest.raises(PreconditionFailed) as exc:
            await gather(request(**extra))
    assert exc.value.status == 412
    assert "'conditions'" in exc.value.message and reason in exc.value.message
    assert TOKEN not in exc.value.message
    if "scope" in extra:  # keys the scope does not cover were never asked for
        assert all("/Condition" not in str(c.request.url) for c in route.calls)
    else:
        assert not route.calls


async def test_scope_covering_required_keys_only_marks_optional_ones_missing() -> None:
    with respx.mock() as mock:
        mock.get(url__startswith=f"{FHIR}/Condition").respond(json=bundle())
        data = await gather(request(scope="launch patient/Condition.read patient/Patient.read", expires_in=300))
    assert data.keys["conditions"].state is KeyState.FETCHED
    assert data.keys["appointments"].state is KeyState.MISSING
    assert "it needs patient/Appointment.read" in (data.keys["appointments"].problem or "")
