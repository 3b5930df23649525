"""A new hook end to end: the real service process with the topic serving ``encounter-start``
(``tests/support/encounter_start_service.py``: one hook-table line plus a test-only rule).

Discovery lists it with the topic's prefetch; a call runs the chart rules and the new rule (each
card's rule read from its extension); a context without the hook's required ``encounterId`` is a
400 naming it (the context model comes with the ``Hook``).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cds_tools import fixtures
from tests.support.client import checked, hook_body, rule_of
from tests.support.servers import CdsServer, run_cds_server

pytestmark = pytest.mark.e2e

SERVICE = "/cds-services/fasciculation-workup"


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    env = {"CDS_VALIDATE_RESPONSES": "true", "CDS_SERVICE_MODULES": '["tests.support.encounter_start_service"]'}
    with run_cds_server(env) as s:
        yield s


def test_discovery_lists_the_new_hook_with_the_same_prefetch(server: CdsServer) -> None:
    services = checked(httpx.get(server.url("/cds-services")))["services"]
    ours = {s["hook"]: s for s in services if s["id"].startswith("fasciculation-")}
    assert set(ours) == {"patient-view", "order-select", "order-sign", "encounter-start"}
    assert ours["encounter-start"]["id"] == "fasciculation-encounter-start"  # one id per hook
    assert ours["encounter-start"]["prefetch"] == ours["patient-view"]["prefetch"]


def test_encounter_start_runs_the_chart_rules_and_its_own(server: CdsServer) -> None:
    fx = fixtures.load(fixtures.ROOT / "patients" / "r20-reassurance.json")
    templates = next(
        s["prefetch"]
        for s in checked(httpx.get(server.url("/cds-services")))["services"]
        if s["hook"] == "encounter-start"
    )
    prefetch = fixtures.prefetch_for(fx, templates)

    def rules(hook: str, **context: str) -> list[str]:
        body = hook_body(hook=hook, patient=fx.patient_id, prefetch=prefetch, **context)
        url = server.url(f"/cds-services/fasciculation-{hook}" if hook != "patient-view" else SERVICE)
        return [rule_of(c) for c in checked(httpx.post(url, json=body, timeout=30))["cards"]]

    at_start = rules("encounter-start", encounterId="enc-1")
    assert "ENC1" in at_start
    assert at_start == rules("patient-view")


def test_the_hook_context_model_is_enforced(server: CdsServer) -> None:
    body = hook_body(hook="encounter-start", patient="pt-1", prefetch={})
    resp = httpx.post(server.url("/cds-services/fasciculation-encounter-start"), json=body, timeout=30)
    assert resp.status_code == 400
    assert "context.encounterId" in checked(resp)["issue"][0]["diagnostics"]
