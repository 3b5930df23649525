"""The ``jti`` replay cache shared through the local Redis: a token used on one replica is refused by
another, which a per-process cache could not do."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.support.jwt_client import bearer
from tests.support.servers import redis_or_unavailable, run_cds_server
from tests.support.trust_env import LocalIssuer, production_env, refusals

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def test_replay_across_two_processes_sharing_redis() -> None:
    redis_or_unavailable(REDIS_URL)
    client = LocalIssuer.create(iss=f"https://ehr-{uuid.uuid4().hex[:8]}.example.test")
    env = production_env([client.config()], CDS_REDIS_URL=REDIS_URL)
    path = "/cds-services"
    with run_cds_server(env) as one, run_cds_server(env) as two:
        token = client.token(path)
        assert httpx.get(one.url(path), headers=bearer(token)).status_code == 200
        replay = httpx.get(two.url(path), headers=bearer(token))
        assert replay.status_code == 401
        assert refusals(two) == ["replayed_jti"]
        assert httpx.get(one.url(path), headers=bearer(token)).status_code == 401  # and on the first
        # fresh tokens still work on both replicas
        assert httpx.get(two.url(path), headers=client.headers(path)).status_code == 200
        assert httpx.get(one.url(path), headers=client.headers(path)).status_code == 200


def test_without_redis_each_process_remembers_alone() -> None:
    """The contrast that motivates Redis: with the in-memory cache a second replica cannot know."""
    client = LocalIssuer.create()
    env = production_env([client.config()])
    path = "/cds-services"
    with run_cds_server(env) as one, run_cds_server(env) as two:
        token = client.token(path)
        assert httpx.get(one.url(path), headers=bearer(token)).status_code == 200
        assert httpx.get(one.url(path), headers=bearer(token)).status_code == 401
        assert httpx.get(two.url(path), headers=bearer(token)).status_code == 200


def test_redis_down_fails_closed() -> None:
    """An unreachable replay cache must not let tokens through: 503, never a silent skip."""
    client = LocalIssuer.create()
    env = production_env(
        [client.config()], CDS_REDIS_URL="redis://127.0.0.1:1/0", CDS_REDIS_TIMEOUT_SECONDS="0.5"
    )
    with run_cds_server(env) as s:
        r = httpx.get(s.url("/cds-services"), headers=client.headers("/cds-services"))
        assert r.status_code == 503
        assert r.json()["issue"][0]["diagnostics"] == "Service temporarily unavailable"
        assert refusals(s) == ["replay_cache_unavailable"]
