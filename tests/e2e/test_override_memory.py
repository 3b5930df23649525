"""Override memory through the real server (issue 17 section 3): feedback, then a second call.

A card overridden for a patient is snoozed on the next calls while the inputs that fired it are
unchanged, and the response says so; a critical card is never snoozed; a card whose suggestion was
accepted stays snoozed until the order is resulted or cancelled; the audit trail records what was
snoozed. The memory lives in the database, so a second server process (another worker) honours
feedback given to the first (Postgres).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cds_tools import fixtures
from tests.support.client import CARD_EXTENSION, checked, hook_body, rule_of
from tests.support.db import query_rows
from tests.support.servers import CdsServer, run_cds_server

pytestmark = pytest.mark.e2e

SERVICE = "/cds-services/fasciculation-workup"


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server({"CDS_AUDIT_TO_DATABASE": "true", "CDS_VALIDATE_RESPONSES": "true"}) as s:
        yield s


def templates(server: CdsServer) -> dict[str, str]:
    body = checked(httpx.get(server.url("/cds-services")))
    svc = next(s for s in body["services"] if s["id"] == "fasciculation-workup" and s["hook"] == "patient-view")
    found: dict[str, str] = svc["prefetch"]
    return found


def prefetch(server: CdsServer, name: str) -> tuple[str, dict[str, Any]]:
    """A fixture patient under a fresh id (so test runs never share override memory)."""
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
    data = fixtures.prefetch_for(fx, templates(server))
    fresh = f"{fx.patient_id}-{uuid.uuid4().hex[:8]}"
    data = _rename(data, fx.patient_id, fresh)
    return fresh, data


def _rename(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _rename(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, old, new) for v in value]
    if isinstance(value, str) and old in value:
        return value.replace(old, new)
    return value


def call(server: CdsServer, patient: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    r = httpx.post(server.url(SERVICE), json=hook_body(patient=patient, prefetch=data), timeout=30)
    cards: list[dict[str, Any]] = checked(r)["cards"]
    assert r.status_code == 200
    return cards


def feedback(server: CdsServer, card: dict[str, Any], outcome: str, accepted: list[str] | None = None) -> None:
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": outcome,
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    if outcome == "overridden":
        reason = card["overrideReasons"][0]
        item["overrideReason"] = {"reason": reason, "userComment": "seen"}
    if accepted:
        item["acceptedSuggestions"] = [{"id": a} for a in accepted]
    r = httpx.post(server.url(f"{SERVICE}/feedback"), json={"feedback": [item]})
    assert r.status_code == 200, r.text


def add_resource(data: dict[str, Any], key: str, resource: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out[key]["entry"].append({"fullUrl": f"{resource['resourceType']}/{resource['id']}", "resource": resource})
    out[key]["total"] = len(out[key]["entry"])
    return out


def by_rule(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule_of(c): c for c in cards}


def text_of(cards: list[dict[str, Any]]) -> str:
    return " ".join(" ".join(f"{c['summary']} {c.get('detail', '')}" for c in cards).split())


def audit_snoozed(server: CdsServer, rules: list[str]) -> bool:
    """The audit trail has a record whose snoozed rules are exactly these (written after the
    response, so polled)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = asyncio.run(query_rows(server.env["CDS_DATABASE_URL"], "select snoozed from audit_events"))
        # SQLite hands a JSON column back as text through a raw query.
        if any((json.loads(r[0]) if isinstance(r[0], str) else r[0]) == rules for r in rows):
            return True
        time.sleep(0.2)
    return False


def test_override_snoozes_the_card_but_never_a_critical_one(server: CdsServer) -> None:
    patient, data = prefetch(server, "a2-cp-spasticity-new")
    first = by_rule(call(server, patient, data))
    assert first["R01"]["indicator"] == "critical" and first["R04"]["indicator"] == "info"
    feedback(server, first["R01"], "overridden")
    feedback(server, first["R04"], "overridden")

    second = call(server, patient, data)
    assert [rule_of(c) for c in second] == ["R01"], "the critical card must never be snoozed"
    assert second[0]["extension"][CARD_EXTENSION]["snoozed"] == ["R04"]
    assert "1 card snoozed after override (R04)" in text_of(second)
    assert audit_snoozed(server, ["R04"])

    # New inputs (a TSH result, so the list of gaps changes): the card comes back.
    tsh = {
        "resourceType": "Observation",
        "id": f"tsh-{uuid.uuid4().hex[:6]}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "3016-3"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": datetime.now(UTC).isoformat(),
        "valueQuantity": {"value": 1.9, "unit": "m[IU]/L", "system": "http://unitsofmeasure.org", "code": "m[IU]/L"},
    }
    third = by_rule(call(server, patient, add_resource(data, "labs", tsh)))
    assert set(third) == {"R01", "R04"}
    assert "snoozed" not in third["R01"]["extension"][CARD_EXTENSION]


def test_override_memory_is_per_patient(server: CdsServer) -> None:
    patient, data = prefetch(server, "a2-random-glucose")
    other, other_data = prefetch(server, "a2-random-glucose")
    [card] = call(server, patient, data)
    feedback(server, card, "overridden")
    assert call(server, patient, data) == []
    assert [rule_of(c) for c in call(server, other, other_data)] == ["R04"]


def test_accepted_suggestion_snoozes_until_the_order_is_cancelled(server: CdsServer) -> None:
    patient, data = prefetch(server, "a2-random-glucose")
    [card] = call(server, patient, data)
    assert rule_of(card) == "R04"
    hba1c = next(s for s in card["suggestions"] if len(s["actions"]) == 1)
    feedback(server, card, "accepted", [hba1c["uuid"]])
    assert call(server, patient, data) == [], "accepted: held while the order is open"
    assert audit_snoozed(server, ["R04"])
    revoked = {
        "resourceType": "ServiceRequest",
        "id": f"sr-{uuid.uuid4().hex[:6]}",
        "status": "revoked",
        "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "authoredOn": datetime.now(UTC).isoformat(),
    }
    again = call(server, patient, add_resource(data, "serviceRequests", revoked))
    assert [rule_of(c) for c in again] == ["R04"], "cancelled order: the card returns"


@pytest.mark.postgres
def test_memory_is_shared_between_server_processes(postgres_url: str) -> None:
    """Two processes (as two workers) on one database: feedback to one holds the card in both."""
    env = {"CDS_DATABASE_URL": postgres_url}
    with run_cds_server(env) as first, run_cds_server(env) as second:
        patient, data = prefetch(first, "a2-random-glucose")
        [card] = call(first, patient, data)
        feedback(second, card, "overridden")
        assert call(second, patient, data) == []
        assert call(first, patient, data) == []
        rows = asyncio.run(query_rows(postgres_url, "select outcome from card_snoozes"))
        assert [r[0] for r in rows] == ["overridden"]
