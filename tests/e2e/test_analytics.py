"""Feedback analytics on known data, through the HTTP endpoint and the CLI report, on SQLite and
Postgres; and the endpoint's exposure rules (off in production unless enabled, then token-bound)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.protocol.models import FeedbackItem
from cds_service.storage.db import make_engine, upgrade
from cds_service.storage.repo import IssuedCard, Store
from tests.conftest import PROBE_ENV
from tests.support.client import hook_body
from tests.support.servers import ROOT, run_cds_server
from tests.support.trust_env import LocalIssuer, production_env, start_fails

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = (NOW - timedelta(days=10)).isoformat()
UNTIL = (NOW + timedelta(days=1)).isoformat()
SYS = "http://example.org/override-reasons"


def card(uuid_: str, service: str, rule: str, days_ago: float) -> IssuedCard:
    return IssuedCard(uuid_, service, rule, "warning", "patient-view", "h-1", "hash", NOW - timedelta(days=days_ago))


def accepted(card_uuid: str, minutes: int) -> FeedbackItem:
    ts = (NOW - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()
    return FeedbackItem.model_validate(
        {"card": card_uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": ts}
    )


def overridden(card_uuid: str, minutes: int, code: str | None = None, display: str | None = None) -> FeedbackItem:
    ts = (NOW - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()
    item: dict[str, Any] = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": ts}
    if code:
        item["overrideReason"] = {"reason": {"system": SYS, "code": code, "display": display}, "userComment": "x"}
    return FeedbackItem.model_validate(item)


async def load_known_data(url: str) -> None:
    """svc-a/R01: 4 cards in the window (+1 before it), svc-a/R02: 2, svc-b/R01: 1; feedback with
    repeats, a revised outcome, reasons, a reasonless override and feedback for an unknown card."""
    engine = make_engine(url)
    store = Store(engine)
    await store.record_issued(
        [
            card("c0", "svc-a", "R01", 20),  # before the window: its feedback must not count
            card("c1", "svc-a", "R01", 2),
            card("c2", "svc-a", "R01", 2),
            card("c3", "svc-a", "R01", 3),
            card("c4", "svc-a", "R01", 4),
            card("c5", "svc-a", "R02", 2),
            card("c6", "svc-a", "R02", 2),
            card("c7", "svc-b", "R01", 1),
        ]
    )
    now = datetime.now(UTC)
    await store.save_feedback("svc-a", [accepted("c0", 0), accepted("c1", 1), accepted("c1", 1)], now)
    await store.save_feedback("svc-a", [accepted("c1", 5)], now)  # a second, different acceptance
    await store.save_feedback("svc-a", [overridden("c2", 1, "not-relevant", "Not relevant")], now)
    await store.save_feedback("svc-a", [overridden("c3", 1, "already-done", "Already done")], now)
    await store.save_feedback("svc-a", [overridden("c4", 1, "not-relevant", "Not relevant"), accepted("c4", 9)], now)
    await store.save_feedback("svc-a", [overridden("c5", 1, "not-relevant", "Not relevant")], now)
    await store.save_feedback("svc-b", [overridden("c7", 1)], now)
    await store.save_feedback("svc-b", [accepted("unknown-card", 1)], now)
    await engine.dispose()


EXPECTED: dict[str, Any] = {
    "totals": {"issued": 7, "accepted": 2, "overridden": 4, "withoutFeedback": 1, "acceptanceRate": 0.2857,
               "overrideRate": 0.5714},
    "services": [
        {
            "service": "svc-a", "issued": 6, "accepted": 2, "overridden": 3, "withoutFeedback": 1,
            "acceptanceRate": 0.3333, "overrideRate": 0.5,
            "rules": [
                {
                    "rule": "R01", "issued": 4, "accepted": 2, "overridden": 2, "withoutFeedback": 0,
                    "acceptanceRate": 0.5, "overrideRate": 0.5,
                    "topOverrideReasons": [
                        {"display": "Already done", "cards": 1, "system": SYS, "code": "already-done"},
                        {"display": "Not relevant", "cards": 1, "system": SYS, "code": "not-relevant"},
                    ],
                },
                {
                    "rule": "R02", "issued": 2, "accepted": 0, "overridden": 1, "withoutFeedback": 1,
                    "acceptanceRate": 0.0, "overrideRate": 0.5,
                    "topOverrideReasons": [
                        {"display": "Not relevant", "cards": 1, "system": SYS, "code": "not-relevant"}
                    ],
                },
            ],
        },
        {
            "service": "svc-b", "issued": 1, "accepted": 0, "overridden": 1, "withoutFeedback": 0,
            "acceptanceRate": 0.0, "overrideRate": 1.0,
            "rules": [
                {
                    "rule": "R01", "issued": 1, "accepted": 0, "overridden": 1, "withoutFeedback": 0,
                    "acceptanceRate": 0.0, "overrideRate": 1.0,
                    "topOverrideReasons": [{"display": "(no reason given)", "cards": 1}],
                }
            ],
        },
    ],
    "unmatchedFeedbackCards": 1,
}


def without_window(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("since", "until")}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def known_db(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/analytics.db"
            upgrade(url)
            asyncio.run(load_known_data(url))
            yield url
    else:
        url = request.getfixturevalue("postgres_url")
        upgrade(url)
        asyncio.run(load_known_data(url))
        yield url


def test_api_and_cli_report_known_numbers(known_db: str) -> None:
    with run_cds_server(dict(PROBE_ENV, CDS_DATABASE_URL=known_db)) as s:
        r = httpx.get(s.url("/analytics/feedback"), params={"since": SINCE, "until": UNTIL})
        assert r.status_code == 200, r.text
        assert without_window(r.json()) == EXPECTED
        one = httpx.get(s.url("/analytics/feedback"), params={"since": SINCE, "until": UNTIL, "top": 1})
        assert len(one.json()["services"][0]["rules"][0]["topOverrideReasons"]) == 1
        assert httpx.get(s.url("/analytics/feedback"), params={"since": UNTIL, "until": SINCE}).status_code == 400
        assert httpx.get(s.url("/analytics/feedback"), params={"since": "last week"}).status_code == 400

    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATABASE_URL=known_db, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "cds_service", "report", "--since", SINCE, "--until", UNTIL]
    out = subprocess.run([*base, "--json"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert without_window(json.loads(out.stdout)) == EXPECTED
    text = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "svc-a" in text and "Already done [already-done]: 1" in text and "33.3" in text


def test_real_calls_and_feedback_show_up(tmp_path: Path) -> None:
    """Cards issued and feedback sent over HTTP are what the report counts."""
    with run_cds_server(PROBE_ENV) as s:
        prefetch = {"patient": {"resourceType": "Patient", "id": "pt-a"}}
        cards = []
        for _ in range(3):
            r = httpx.post(s.url("/cds-services/probe"), json=hook_body(patient="pt-a", prefetch=prefetch))
            cards.append(r.json()["cards"][0]["uuid"])
        ts = datetime.now(UTC).isoformat()
        fb = {"feedback": [{"card": cards[0], "outcome": "accepted", "acceptedSuggestions": [{"id": "x"}],
                            "outcomeTimestamp": ts}]}
        for _ in range(2):  # a repeat must not count twice
            assert httpx.post(s.url("/cds-services/probe/feedback"), json=fb).status_code == 200
        report = httpx.get(s.url("/analytics/feedback")).json()
        probe = report["services"][0]
        assert probe["service"] == "probe"
        assert probe["rules"] == [{"rule": "PROBE", "issued": 3, "accepted": 1, "overridden": 0,
                                   "withoutFeedback": 2, "acceptanceRate": 0.3333, "overrideRate": 0.0}]


def test_production_keeps_analytics_closed_unless_enabled_with_token() -> None:
    client = LocalIssuer.create()
    with run_cds_server(production_env([client.config()])) as s:
        assert httpx.get(s.url("/analytics/feedback")).status_code == 404

    code, output = start_fails(production_env([client.config()], CDS_ANALYTICS_ENABLED="true"))
    assert code != 0 and "CDS_ANALYTICS_TOKEN" in output

    token = uuid.uuid4().hex
    env = production_env([client.config()], CDS_ANALYTICS_ENABLED="true", CDS_ANALYTICS_TOKEN=token)
    with run_cds_server(env) as s:
        url = s.url("/analytics/feedback")
        refused = httpx.get(url)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        # a CDS client's JWT is not an analytics credential
        assert httpx.get(url, headers=client.headers("/analytics/feedback")).status_code == 401
        ok = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["totals"]["issued"] == 0
        assert token not in s.logs()
