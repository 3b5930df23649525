"""Issue 16, point 4: the Redis replay cache stays safe when Redis forgets (restart without
persistence). A private redis-server is restarted mid-run; the real service must refuse the token
used before the restart, and accept fresh ones."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.jwt_client import bearer
from tests.support.private_servers import private_redis
from tests.support.servers import run_cds_server
from tests.support.trust_env import LocalIssuer, production_env, refusals

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
PATH = "/cds-services"


def _get(url: str, token: str, settle: float = 15.0) -> httpx.Response:
    """GET, retrying while the service reports its cache unavailable (Redis coming back up)."""
    deadline = time.monotonic() + settle
    while True:
        r = httpx.get(url, headers=bearer(token), timeout=30)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_token_used_before_a_redis_restart_is_not_accepted_again() -> None:
    client = LocalIssuer.create()
    with private_redis() as redis:
        env = production_env([client.config()], CDS_REDIS_URL=redis.url, CDS_REDIS_TIMEOUT_SECONDS="1")
        with run_cds_server(env) as server:
            used = client.token(PATH)
            assert _get(server.url(PATH), used).status_code == 200
            assert _get(server.url(PATH), used).status_code == 401  # replay, Redis remembers
            time.sleep(1.1)  # iat has whole seconds: the restart happens in a later second
            redis.restart()  # no persistence: every jti is forgotten
            replay = _get(server.url(PATH), used)
            assert replay.status_code == 401, "a token used before the restart was accepted again"
            assert refusals(server)[-1] == "issued_before_replay_epoch"
            fresh = client.token(PATH)  # issued after the new epoch: fine, and remembered again
            assert _get(server.url(PATH), fresh).status_code == 200
            assert _get(server.url(PATH), fresh).status_code == 401
            assert refusals(server)[-1] == "replayed_jti"
            # FLUSHALL is the same loss of memory without a restart.
            other = client.token(PATH)
            assert _get(server.url(PATH), other).status_code == 200
            time.sleep(1.1)
            import redis as redis_lib

            redis_lib.Redis.from_url(redis.url).flushall()
            assert _get(server.url(PATH), other).status_code == 401
            assert _get(server.url(PATH), client.token(PATH)).status_code == 200
