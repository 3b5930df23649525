"""Override memory is loaded only for a patient in scope (issue 15): out of scope the answer is no
card whatever the memory holds, so the database query is skipped; in scope it is loaded once and
still holds cards back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from cds_service.call import run_call
from cds_service.clinical.services import SERVICE_ID, prefetch_templates, register
from cds_service.clinical.terminology import terminology
from cds_service.data.gather import Gatherer
from cds_service.protocol.models import HookRequest
from cds_service.registry import Registry
from cds_service.settings import Settings
from cds_service.storage.repo import RememberedAnswer
from cds_tools import fixtures

SETTINGS = Settings(database_url="sqlite+aiosqlite://")
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TEMPLATES = {spec.key: spec.template for spec in prefetch_templates(terminology())}


@pytest.fixture
async def gatherer() -> AsyncIterator[Gatherer]:
    async with httpx.AsyncClient() as client:
        yield Gatherer(SETTINGS, client)


def registry() -> Registry:
    reg = Registry()
    register(reg, SETTINGS)
    return reg


def request(name: str) -> HookRequest:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json", now=NOW)
    body = {
        "hook": "patient-view",
        "hookInstance": "0f1d3c9e-5a4b-4c2d-9e8f-7a6b5c4d3e2f",
        "context": {"userId": "Practitioner/dr-1", "patientId": fx.patient_id},
        "prefetch": fixtures.prefetch_for(fx, TEMPLATES),
    }
    return HookRequest.model_validate(orjson.loads(orjson.dumps(body)))


class Memory:
    """A memory source that counts its loads and remembers ``answers``."""

    def __init__(self, answers: Sequence[RememberedAnswer] = ()) -> None:
        self.loads = 0
        self.answers = list(answers)

    async def __call__(self, service_id: str, patient_hash: str, now: datetime) -> Sequence[RememberedAnswer]:
        self.loads += 1
        return self.answers


async def call(name: str, memory: Memory, gatherer: Gatherer) -> list[dict[str, Any]]:
    outcome = await run_call(
        SERVICE_ID, request(name), settings=SETTINGS, registry=registry(), gatherer=gatherer, client=None,
        base_url="http://cds.test", now=NOW, memory=memory,
    )  # fmt: skip
    cards: list[dict[str, Any]] = outcome.body["cards"]
    return cards


async def test_out_of_scope_never_loads_the_memory(gatherer: Gatherer) -> None:
    memory = Memory()
    assert await call("bg2000-no-trigger", memory, gatherer) == []
    assert memory.loads == 0


async def test_in_scope_loads_it_once_and_it_still_holds_a_card_back(gatherer: Gatherer) -> None:
    memory = Memory()
    cards = await call("bg300-r01", memory, gatherer)
    assert memory.loads == 1 and cards
    rules = [c["extension"]["org.cds-fasciculation.card"]["rule"] for c in cards]
    # Remember an override of the first non-critical card with the fingerprint it was issued on.
    outcome = await run_call(
        SERVICE_ID, request("bg300-r01"), settings=SETTINGS, registry=registry(), gatherer=gatherer,
        client=None, base_url="http://cds.test", now=NOW, memory=Memory(),
    )  # fmt: skip
    row = next(r for r in outcome.issued if r.indicator != "critical")
    snoozed = Memory([RememberedAnswer(row.rule_id, row.fingerprint, "overridden", NOW - timedelta(hours=1),
                                       NOW + timedelta(days=30), ())])
    after = await call("bg300-r01", snoozed, gatherer)
    assert snoozed.loads == 1
    assert row.rule_id in rules
    assert row.rule_id not in [c["extension"]["org.cds-fasciculation.card"]["rule"] for c in after]
