"""One topic pipeline: what clinicians review offline is what EHRs get.

Every golden fixture goes through the offline ``cds-fasciculation evaluate`` path
(``review.evaluate_bundle``) and through the real service process over HTTP with a full prefetch.
The cards must be identical apart from what is drawn per call (card and suggestion uuids, the
``authoredOn`` instant of suggested orders). Both paths call ``Topic.assess``; this test fails if
either grows a step of its own (another budget, another data selection, another renderer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.clinical.pipeline import Topic
from cds_service.clinical.review import evaluate_bundle
from cds_service.protocol.models import dump
from cds_tools import fixtures
from tests.support.client import checked, hook_body, rule_of
from tests.support.servers import CdsServer, run_cds_server

pytestmark = pytest.mark.e2e

SERVICE = "/cds-services/fasciculation-workup"
NAMES = [p.stem for p in fixtures.all_fixtures()]
TOPIC = Topic()  # built once, as the service builds it at start-up (settings from the same defaults)


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server({"CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


@pytest.fixture(scope="module")
def templates(server: CdsServer) -> dict[str, str]:
    body = checked(httpx.get(server.url("/cds-services")))
    svc = next(s for s in body["services"] if s["id"] == "fasciculation-workup" and s["hook"] == "patient-view")
    found: dict[str, str] = svc["prefetch"]
    return found


def comparable(value: Any) -> Any:
    """The card JSON without what differs between two calls by design: uuids and authoredOn."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in ("uuid", "authoredOn")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_gives_the_cards_the_service_gives(
    server: CdsServer, templates: dict[str, str], name: str
) -> None:
    path = fixtures.ROOT / "patients" / f"{name}.json"
    fx = fixtures.load(path)
    body = hook_body(patient=fx.patient_id, prefetch=fixtures.prefetch_for(fx, templates))
    served = checked(httpx.post(server.url(SERVICE), json=body, timeout=30))["cards"]
    offline = evaluate_bundle(
        path, as_fixture=True, base_url=server.base, topic=TOPIC, user_ref=body["context"]["userId"]
    )
    assert [rule_of(c) for c in served] == [rule for rule, _ in offline], name
    assert comparable(served) == comparable([dump(card) for _, card in offline]), name


def test_the_comparison_can_fail() -> None:
    """The normalisation keeps what matters: a changed summary or rule is still a difference."""
    card = {"uuid": "a", "summary": "x", "extension": {"org.cds-fasciculation.card": {"rule": "R01"}}}
    other = {**card, "uuid": "b"}
    assert comparable(card) == comparable(other)
    assert comparable(card) != comparable({**card, "summary": "y"})
    assert comparable(card) != comparable({**card, "extension": {"org.cds-fasciculation.card": {"rule": "R02"}}})
