"""Client JWT verification through the real server (production profile): the attack matrix, the
good tokens, and key rotation on a JWK Set served over loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.client import checked
from tests.support.jwt_client import bearer, claims_for, hmac_signed, mint, unsigned
from tests.support.servers import CdsServer
from tests.support.trust_env import public_url, refusals
from tests.support.trust_world import ISS_A, ISS_B, ISS_EPIC, TENANT, World, trust_world

pytestmark = pytest.mark.e2e

SVC = "/cds-services/probe"
DISC = "/cds-services"
FEEDBACK = "/cds-services/probe/feedback"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with trust_world() as w:
        yield w


def assert_refused(resp: httpx.Response, server: CdsServer, reason: str) -> None:
    """401, a generic OperationOutcome with no detail, and the precise reason only in the log."""
    assert resp.status_code == 401, resp.text
    body = checked(resp)
    assert body["issue"][0]["diagnostics"] == "Unauthorized"
    assert body["issue"][0]["code"] == "login"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert reason not in resp.text
    assert refusals(server)[-1] == reason


def _now() -> int:
    return int(time.time())


def a_claims(**over: object) -> dict[str, object]:
    """Valid issuer-A claims for the probe service; ``None`` drops a claim."""
    base: dict[str, object] = claims_for(ISS_A, public_url(SVC), tenant=TENANT)
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def send(w: World, token: str, path: str = SVC) -> httpx.Response:
    return w.call(path, bearer(token))


def spliced(w: World) -> str:
    """The header and payload of one valid token under the signature of another."""
    return w.token_a(SVC).rsplit(".", 1)[0] + "." + w.token_a(SVC).rsplit(".", 1)[1]


# Each case: (id, expected reason, call) where call(world) sends one request with one bad token.
Case = tuple[str, str, Callable[[World], httpx.Response]]
MATRIX: list[Case] = [
    ("expired", "expired", lambda w: w.call_a(SVC, iat=_now() - 3600, exp=_now() - 1800)),
    ("iat_in_future", "iat_in_future", lambda w: w.call_a(SVC, iat=_now() + 600, exp=_now() + 900)),
    ("wrong_aud", "wrong_aud", lambda w: w.call_a(SVC, aud="https://other.example.org/cds-services/probe")),
    ("aud_for_other_endpoint", "wrong_aud", lambda w: w.call_a(SVC, aud=public_url("/cds-services/silent"))),
    ("aud_discovery_used_on_service", "wrong_aud", lambda w: w.call_a(SVC, aud=public_url(DISC))),
    (
        "aud_array_without_us",
        "wrong_aud",
        lambda w: w.call_a(SVC, aud=["https://a.example.org/x", public_url(FEEDBACK)]),
    ),
    ("missing_jti", "missing_jti", lambda w: w.call_a(SVC, jti=None)),
    ("unknown_kid", "unknown_kid", lambda w: send(w, mint(w.a_es, a_claims(), jku=w.a_jku, kid="nope"))),
    (
        "jku_not_allowed",
        "jku_not_allowed",
        lambda w: send(w, mint(w.a_es, a_claims(), jku=w.keys_server.url("/evil/jwks.json"))),
    ),
    ("jku_of_another_issuer", "jku_not_allowed", lambda w: send(w, mint(w.a_es, a_claims(), jku=w.epic_jku))),
    ("untrusted_issuer", "untrusted_issuer", lambda w: w.call_a(SVC, iss="https://evil.example.org")),
    ("alg_none", "alg_none", lambda w: send(w, unsigned(a_claims(), w.a_es.kid))),
    (
        "hs256_with_public_key_as_secret",
        "alg_hmac",
        lambda w: send(w, hmac_signed(a_claims(), w.a_rs.kid, w.a_rs.public_pem())),
    ),
    (
        "rs256_not_allowed",
        "alg_not_allowed",
        lambda w: send(w, mint(w.a_rs, a_claims(), jku=w.a_jku, alg="RS256")),
    ),
    ("bad_signature", "bad_signature", lambda w: send(w, spliced(w))),
    (
        "signed_by_stranger_under_known_kid",
        "bad_signature",
        lambda w: send(w, mint(w.stranger, a_claims(), jku=w.a_jku, kid=w.a_es.kid)),
    ),
    (
        "es384_signature_under_rsa_kid",
        "key_alg_mismatch",
        lambda w: send(w, mint(w.a_es, a_claims(), jku=w.a_jku, kid=w.a_rs.kid)),
    ),
    ("tenant_not_allowed", "tenant_not_allowed", lambda w: w.call_a(SVC, tenant="tenant-z")),
    ("tenant_missing", "tenant_not_allowed", lambda w: w.call_a(SVC, tenant=None)),
    ("missing_typ", "typ_not_jwt", lambda w: send(w, mint(w.a_es, a_claims(), jku=w.a_jku, typ=None))),
    ("missing_kid", "missing_kid", lambda w: send(w, mint(w.a_es, a_claims(), jku=w.a_jku, kid=""))),
    ("no_authorization_on_discovery", "no_token", lambda w: w.call(DISC)),
    ("no_authorization_on_service", "no_token", lambda w: w.call(SVC)),
    ("no_authorization_on_feedback", "no_token", lambda w: w.call(FEEDBACK)),
    ("basic_scheme", "not_bearer", lambda w: w.call(DISC, {"Authorization": "Basic dXNlcjpwYXNz"})),
    ("garbage_token", "malformed_token", lambda w: send(w, "not-a.jwt", DISC)),
    ("too_old", "too_old", lambda w: w.call_a(SVC, iat=_now() - 7200, exp=_now() + 300)),
    ("nbf_in_future", "not_yet_valid", lambda w: w.call_a(SVC, nbf=_now() + 600)),
    (
        "epic_without_nbf",
        "missing_nbf",
        lambda w: send(w, mint(w.epic, claims_for(ISS_EPIC, public_url(SVC)), jku=w.epic_jku)),
    ),
    (
        "epic_es384_not_allowed",
        "alg_not_allowed",
        lambda w: send(
            w, mint(w.stranger, claims_for(ISS_EPIC, public_url(SVC), nbf=_now() - 300), jku=w.epic_jku)
        ),
    ),
]


@pytest.mark.parametrize(("reason", "send"), [(c[1], c[2]) for c in MATRIX], ids=[c[0] for c in MATRIX])
def test_bad_token_is_refused(world: World, reason: str, send: Callable[[World], httpx.Response]) -> None:
    assert_refused(send(world), world.cds, reason)


def test_replayed_jti_is_refused(world: World) -> None:
    token = world.token_a(SVC)
    assert world.call(SVC, bearer(token)).status_code == 200
    assert_refused(world.call(SVC, bearer(token)), world.cds, "replayed_jti")


def test_good_tokens_are_accepted(world: World) -> None:
    assert checked(world.call_a(DISC))["services"]
    assert checked(world.call_a(SVC))["cards"]
    assert world.call_a(FEEDBACK).status_code == 200
    assert checked(world.call(SVC, bearer(world.token_a(SVC, key=world.a_rs))))["cards"]  # RS384


def test_aud_forms_are_normalised(world: World) -> None:
    """String or array, trailing slash, doubled slash, explicit default port and host case."""
    for aud in (
        [public_url(DISC), "https://someone-else.example.org/"],
        public_url(SVC) + "/",
        "https://CDS.example.test:443/prefix//cds-services/probe",
    ):
        path = DISC if isinstance(aud, list) else SVC
        assert world.call_a(path, aud=aud).status_code == 200, aud


def test_epic_preset_accepts_rs384_with_nbf(world: World) -> None:
    claims = claims_for(ISS_EPIC, public_url(SVC), nbf=_now() - 300)
    assert checked(world.call(SVC, bearer(mint(world.epic, claims, jku=world.epic_jku))))["cards"]


def test_401_carries_cors_headers(world: World) -> None:
    resp = httpx.get(world.cds.url(DISC), headers={"Origin": "https://ehr.example.test"})
    assert resp.status_code == 401
    assert resp.headers["access-control-allow-origin"] == "https://ehr.example.test"


def test_key_rotation_on_loopback_jwks(world: World) -> None:
    """New kid picked up by one refresh; the withdrawn kid refused; unknown kids cannot force more
    fetches within the refresh interval (CDS_JWKS_MIN_REFRESH_SECONDS=3600 here)."""
    path = "/b/jwks.json"

    def token(key_name: str, kid: str | None = None) -> str:
        key = world.b1 if key_name == "b1" else world.b2
        return mint(key, claims_for(ISS_B, public_url(SVC)), kid=kid)  # no jku: fixed jwks_url

    assert world.call(SVC, bearer(token("b1"))).status_code == 200
    assert world.keys_server.hits_on(path) == 1
    assert world.call(SVC, bearer(token("b1"))).status_code == 200
    assert world.keys_server.hits_on(path) == 1  # cached

    world.keys_server.set(path, {"keys": [world.b2.public_jwk()]})  # the client rotates
    assert world.call(SVC, bearer(token("b2"))).status_code == 200
    assert world.keys_server.hits_on(path) == 2  # one refresh for the new kid

    assert_refused(world.call(SVC, bearer(token("b1"))), world.cds, "unknown_kid")  # old key dropped
    assert_refused(world.call(SVC, bearer(token("b2", kid="made-up"))), world.cds, "unknown_kid")
    assert world.keys_server.hits_on(path) == 2  # no refresh storm


def test_jku_outside_allow_list_is_never_fetched(world: World) -> None:
    before = world.keys_server.hits_on("/evil/jwks.json")
    token = mint(world.a_es, a_claims(), jku=world.keys_server.url("/evil/jwks.json"))
    assert world.call(SVC, bearer(token)).status_code == 401
    assert world.keys_server.hits_on("/evil/jwks.json") == before == 0
