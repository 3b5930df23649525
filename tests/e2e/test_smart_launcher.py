"""The service as a SMART-authorised CDS service behind the official SMART App Launcher (issue 12).

The test plays the EHR: it launches (launch code, authorize with PKCE, token) against the real
launcher to get real access tokens, then calls patient-view, order-select and order-sign with
``fhirServer`` = the launcher's FHIR proxy, ``fhirAuthorization`` and no prefetch. The proxy
collapses every ``//`` in the URL it forwards, query string included, so before query values were
percent-encoded every token search came back empty with 200 and the cards were silently wrong;
here every golden fixture must give exactly the cards of a full prefetch. Then what must fail
does: a 3-second token after expiry, a token minted with another secret, an ``expires_in`` of 0,
and a scope that does not cover a required key; and the backend-services (client_credentials)
token path works too.

Needs Node (skip with the reason when it is missing; CI, with CDS_TEST_REQUIRE_ALL=1, fails).
Set CDS_TEST_LAUNCHER_REPORT to a file path to get the per-fixture comparison as JSON.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cds_service.clinical.services import SERVICE_IDS
from cds_tools import fixtures
from tests.e2e.test_golden import summarise
from tests.support.cards import comparable
from tests.support.client import checked, hook_body
from tests.support.jwt_client import new_key
from tests.support.servers import CdsServer, FhirServer, run_cds_server, run_sekmet, unavailable
from tests.support.smart_launcher import Launcher, Token, launcher_missing, run_launcher

pytestmark = pytest.mark.e2e

NAMES = [p.stem for p in fixtures.all_fixtures()]
EXPECTED = fixtures.expectations()
ORDER_CASES = yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text())
COMPARISON: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _node() -> None:
    reason = launcher_missing()
    if reason is not None:
        unavailable(reason)


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirServer]:
    """A SEKMET of this module's own, holding every fixture patient."""
    with run_sekmet() as server:
        for path in fixtures.all_fixtures():
            result = server.load(fixtures.load(path).bundle)
            assert all(e["response"]["status"].startswith("20") for e in result["entry"]), path
        yield server


@pytest.fixture(scope="module")
def launcher(fhir: FhirServer) -> Iterator[Launcher]:
    with run_launcher(fhir.base) as launcher:
        yield launcher


@pytest.fixture(scope="module")
def short_launcher(fhir: FhirServer) -> Iterator[Launcher]:
    """3-second tokens, signed with a secret of its own (so its tokens are foreign to ``launcher``)."""
    with run_launcher(fhir.base, token_minutes=0.05, secret="another-launcher-secret") as launcher:
        yield launcher


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    # production-like on the data path: no tokenless fetch, every answer self-checked
    with run_cds_server({"CDS_ALLOW_OPEN_FHIR_FETCH": "false", "CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


@pytest.fixture(scope="module")
def templates(server: CdsServer) -> dict[str, dict[str, str]]:
    services = checked(httpx.get(server.url("/cds-services")))["services"]
    return {s["hook"]: s["prefetch"] for s in services}


def call(server: CdsServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url(f"/cds-services/{SERVICE_IDS[body['hook']]}"), json=body, timeout=60)


def via_launcher(hook: str, fx: fixtures.Fixture, launcher: Launcher, token: Token, **context: Any) -> dict[str, Any]:
    body = hook_body(hook, patient=fx.patient_id, fhir_server=launcher.iss, **context)
    body["fhirAuthorization"] = token.fhir_authorization()
    return body


@pytest.mark.parametrize("name", NAMES)
def test_patient_view_through_launcher_equals_full_prefetch(
    server: CdsServer, launcher: Launcher, templates: dict[str, dict[str, str]], name: str
) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
    token = launcher.ehr_launch(fx.patient_id)
    assert token.token_type.lower() == "bearer" and token.patient == fx.patient_id
    full = checked(call(server, hook_body(patient=fx.patient_id, prefetch=fixtures.prefetch_for(fx, templates["patient-view"]))))
    fetched = checked(call(server, via_launcher("patient-view", fx, launcher, token)))
    COMPARISON[name] = {
        "full_prefetch": [f"{c['rule']}:{c['indicator']}" for c in summarise(full)],
        "launcher": [f"{c['rule']}:{c['indicator']}" for c in summarise(fetched)],
        "identical": comparable(full) == comparable(fetched),
    }
    assert comparable(fetched) == comparable(full), name
    assert summarise(fetched) == EXPECTED[name]["cards"], EXPECTED[name]["why"]


@pytest.mark.parametrize("case", ORDER_CASES, ids=[c["name"] for c in ORDER_CASES])
def test_order_hooks_through_launcher_equal_full_prefetch(
    server: CdsServer, launcher: Launcher, templates: dict[str, dict[str, str]], case: dict[str, Any]
) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{case['patient']}.json")
    context: dict[str, Any] = {
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in case["drafts"]]}
    }
    if case["hook"] == "order-select":
        ids = [f"{d['resourceType']}/{d.get('id')}" for d in case["drafts"] if isinstance(d, dict)]
        context["selections"] = case.get("selections", ids)
    token = launcher.ehr_launch(fx.patient_id)
    full_body = hook_body(case["hook"], patient=fx.patient_id, prefetch=fixtures.prefetch_for(fx, templates[case["hook"]]), **context)
    full = checked(call(server, full_body))
    fetched = checked(call(server, via_launcher(case["hook"], fx, launcher, token, **context)))
    COMPARISON[f"{case['hook']}:{case['name']}"] = {
        "full_prefetch": [c["indicator"] for c in full["cards"]],
        "launcher": [c["indicator"] for c in fetched["cards"]],
        "identical": comparable(full) == comparable(fetched),
    }
    assert comparable(fetched) == comparable(full), case["name"]
    assert full["cards"] or not case["expect"], "the case must give cards"


def test_backend_services_token(server: CdsServer, launcher: Launcher, templates: dict[str, dict[str, str]]) -> None:
    """client_credentials with a signed assertion (ES384, key registered in the launch code)."""
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    token = launcher.backend_token(new_key("ES384"))
    assert token.scope == "system/*.read" and token.patient is None
    full = checked(call(server, hook_body(patient=fx.patient_id, prefetch=fixtures.prefetch_for(fx, templates["patient-view"]))))
    fetched = checked(call(server, via_launcher("patient-view", fx, launcher, token)))
    assert comparable(fetched) == comparable(full) and full["cards"]


def test_short_token_works_then_412_after_expiry(server: CdsServer, short_launcher: Launcher) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    token = short_launcher.ehr_launch(fx.patient_id)
    assert token.expires_in <= 3
    first = checked(call(server, via_launcher("patient-view", fx, short_launcher, token)))
    assert summarise(first) == EXPECTED["r01-weakness"]["cards"]
    time.sleep(token.expires_in + 1.5)
    late = call(server, via_launcher("patient-view", fx, short_launcher, token))
    assert late.status_code == 412
    text = checked(late)["issue"][0]["diagnostics"]
    assert "refused access (HTTP 401)" in text and "token was not accepted" in text and "'conditions'" in text
    assert token.access_token not in text and token.access_token not in server.logs()


def test_token_of_another_secret_is_412(server: CdsServer, launcher: Launcher, short_launcher: Launcher) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    foreign = short_launcher.ehr_launch(fx.patient_id)  # valid where it was minted, not at ``launcher``
    r = call(server, via_launcher("patient-view", fx, launcher, foreign))
    assert r.status_code == 412
    assert "refused access (HTTP 401)" in checked(r)["issue"][0]["diagnostics"]


def test_expired_or_wrong_type_or_narrow_scope_is_412_naming_the_reason(server: CdsServer, launcher: Launcher) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    token = launcher.ehr_launch(fx.patient_id)
    cases = {
        "expires_in is 0: the token has already expired": {"expires_in": 0},
        "token_type is not Bearer": {"token_type": "MAC"},
    }
    for reason, override in cases.items():
        body = via_launcher("patient-view", fx, launcher, token)
        body["fhirAuthorization"].update(override)
        r = call(server, body)
        assert r.status_code == 412 and reason in checked(r)["issue"][0]["diagnostics"], reason
    narrow = launcher.ehr_launch(fx.patient_id, scope="launch openid fhirUser patient/Observation.read")
    r = call(server, via_launcher("patient-view", fx, launcher, narrow))
    assert r.status_code == 412
    text = checked(r)["issue"][0]["diagnostics"]
    assert "'conditions'" in text and "it needs patient/Condition.read" in text


def test_comparison_report() -> None:
    """Runs last (file order): every golden fixture was compared; optional JSON report."""
    assert set(NAMES) <= set(COMPARISON), sorted(set(NAMES) - set(COMPARISON))
    assert all(row["identical"] for row in COMPARISON.values())
    target = os.environ.get("CDS_TEST_LAUNCHER_REPORT")
    if target:
        Path(target).write_text(json.dumps(COMPARISON, indent=1))
