"""CORS, request limits, the fhirServer guard, the dev profile and start-up refusals, all through
real server processes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.client import checked
from tests.support.jwt_client import bearer, claims_for, mint, new_key
from tests.support.servers import CdsServer, run_cds_server
from tests.support.trust_env import LocalIssuer, jwks_file, production_env, refusals, start_fails
from tests.support.trust_world import ALLOWED_ORIGIN, PATIENT, World, service_body, trust_world

pytestmark = pytest.mark.e2e

SVC = "/cds-services/probe"
FHIR_TOKEN = "fhir-access-token-for-guard-test"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with trust_world() as w:
        yield w


@pytest.fixture(scope="module")
def dev_server() -> Iterator[CdsServer]:
    """The README quick start: dev profile, no keys, no configuration."""
    with run_cds_server({"CDS_SERVICE_MODULES": '["tests.support.probe_service"]'}) as s:
        yield s


# ----------------------------------------------------------------------------------------- CORS


def preflight(server: CdsServer, path: str, origin: str, method: str = "POST") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return httpx.options(server.url(path), headers=headers)


def test_preflight_from_allowed_origin_needs_no_token(world: World) -> None:
    for path, method in ((SVC, "POST"), ("/cds-services", "GET"), (SVC + "/feedback", "POST")):
        r = preflight(world.cds, path, ALLOWED_ORIGIN, method)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        allowed = r.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "access-control-allow-credentials" not in r.headers


def test_preflight_from_refused_origin(world: World) -> None:
    r = preflight(world.cds, SVC, "https://evil.example.org")
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(world.cds.url("/cds-services"), headers={"Origin": "https://evil.example.org"})
    assert r.status_code == 401 and "access-control-allow-origin" not in r.headers


def test_error_responses_carry_cors_headers(world: World) -> None:
    headers = dict(bearer(world.token_a("/cds-services/nope")), Origin=ALLOWED_ORIGIN)
    r = httpx.post(world.cds.url("/cds-services/nope"), json=service_body(), headers=headers)
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def test_dev_profile_allows_any_origin_without_credentials(dev_server: CdsServer) -> None:
    r = preflight(dev_server, SVC, "https://sandbox.cds-hooks.org")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers


# --------------------------------------------------------------------------------------- limits


def test_oversized_body_is_413(world: World) -> None:
    body = service_body(padding="x" * 250_000)
    r = httpx.post(world.cds.url(SVC), json=body, headers=bearer(world.token_a(SVC)))
    assert r.status_code == 413
    assert "larger than 200000 bytes" in checked(r)["issue"][0]["diagnostics"]


def test_deeply_nested_json_is_400(world: World) -> None:
    nested: object = {"leaf": 1}
    for _ in range(100):
        nested = {"n": nested}
    r = httpx.post(world.cds.url(SVC), json=service_body(deep=nested), headers=bearer(world.token_a(SVC)))
    assert r.status_code == 400
    assert "nested deeper than 64 levels" in checked(r)["issue"][0]["diagnostics"]


def test_json_with_too_many_values_is_413(world: World) -> None:
    r = httpx.post(
        world.cds.url(SVC), json=service_body(many=list(range(6000))), headers=bearer(world.token_a(SVC))
    )
    assert r.status_code == 413
    assert "more than 5000 JSON values" in checked(r)["issue"][0]["diagnostics"]


# ------------------------------------------------------------------------------ fhirServer guard


def fetching_body(fhir_base: str) -> dict[str, object]:
    """No prefetch, so the service must fetch the Patient from fhirServer with the access token."""
    return service_body(prefetch={}, fhir_server=fhir_base + "/fhir", token=FHIR_TOKEN)


def test_fhir_server_outside_issuer_origins_is_412_without_a_request(world: World) -> None:
    r = httpx.post(
        world.cds.url(SVC), json=fetching_body(world.fhir_other.base), headers=bearer(world.token_a(SVC))
    )
    assert r.status_code == 412
    assert "not among the FHIR servers allowed" in checked(r)["issue"][0]["diagnostics"]
    assert world.fhir_other.all_hits() == []


def test_fhir_server_of_issuer_gets_the_token(world: World) -> None:
    r = httpx.post(
        world.cds.url(SVC), json=fetching_body(world.fhir_ok.base), headers=bearer(world.token_a(SVC))
    )
    assert "patient=fetched:1" in checked(r)["cards"][0]["detail"]
    hit = next(h for h in world.fhir_ok.all_hits() if h.path == f"/fhir/Patient/{PATIENT}")
    assert hit.authorization == f"Bearer {FHIR_TOKEN}"
    assert world.fhir_other.all_hits() == []


def test_production_refuses_plain_http_fhir_server(world: World) -> None:
    client = LocalIssuer.create()
    env = production_env([client.config()])
    with run_cds_server(env) as strict:
        r = httpx.post(
            strict.url(SVC), json=fetching_body(world.fhir_other.base), headers=client.headers(SVC)
        )
        assert r.status_code == 412
        assert "must be an https URL" in checked(r)["issue"][0]["diagnostics"]
    assert world.fhir_other.all_hits() == []


# ---------------------------------------------------------------------- dev profile and start-up


def test_dev_quick_start_needs_no_token(dev_server: CdsServer) -> None:
    assert checked(httpx.get(dev_server.url("/cds-services")))["services"]
    # With no trusted issuer configured, a token is not verified (documented in docs/security.md).
    r = httpx.get(dev_server.url("/cds-services"), headers=bearer("anything"))
    assert r.status_code == 200
    assert httpx.post(dev_server.url(SVC), json=service_body()).status_code == 200


def test_dev_with_sandbox_preset_and_a_local_issuer() -> None:
    """Issuers configured in dev: no token is still fine, a token sent is verified. The Sandbox's
    jku resolves to the pinned copy (no network here), so a forged Sandbox token fails on its
    signature, not on fetching keys."""
    local = LocalIssuer.create()
    issuers = [{"preset": "sandbox"}, local.config()]
    env = {
        "CDS_SERVICE_MODULES": '["tests.support.probe_service"]',
        "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
    }
    with run_cds_server(env) as dev:
        assert httpx.get(dev.url("/cds-services")).status_code == 200
        # No public base URL in dev: the audience is the URL as called (scheme + Host + path).
        good = mint(local.key, claims_for(local.iss, dev.url("/cds-services")))
        assert httpx.get(dev.url("/cds-services"), headers=bearer(good)).status_code == 200
        assert httpx.get(dev.url("/cds-services"), headers=bearer(good)).status_code == 401
        assert refusals(dev)[-1] == "replayed_jti"
        forged = mint(
            new_key("ES384"),
            claims_for("https://sandbox.cds-hooks.org", dev.url("/cds-services")),
            kid="44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
            jku="https://sandbox.cds-hooks.org/.well-known/jwks.json",
        )
        assert httpx.get(dev.url("/cds-services"), headers=bearer(forged)).status_code == 401
        assert refusals(dev)[-1] == "bad_signature"


def _probe_env(**env: str) -> dict[str, str]:
    return dict({"CDS_SERVICE_MODULES": '["tests.support.probe_service"]'}, **env)


SOME_ISSUER = [{"iss": "https://x.example.org", "jwks_url": "https://x.example.org/jwks"}]
NO_PUBLIC_BASE = {k: v for k, v in production_env(SOME_ISSUER).items() if k != "CDS_PUBLIC_BASE_URL"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (production_env([]), "no trusted issuer is configured"),
        (production_env([{"preset": "sandbox"}]), "is dev only"),
        (NO_PUBLIC_BASE, "needs CDS_PUBLIC_BASE_URL"),
        (
            production_env(SOME_ISSUER, CDS_REQUIRE_CLIENT_JWT="false"),
            "CDS_REQUIRE_CLIENT_JWT=false is not allowed",
        ),
        (_probe_env(CDS_JWT_ALGORITHMS='["ES384", "HS256"]'), "never none or HS*"),
        (
            _probe_env(
                CDS_TRUSTED_ISSUERS='[{"iss": "https://x.example.org", "jku": ["http://x.example.org/k"]}]'
            ),
            "key URL must be https",
        ),
        (_probe_env(CDS_TRUSTED_ISSUERS='[{"iss": "https://x.example.org"}]'), "needs at least one of jku"),
        (
            _probe_env(CDS_TRUSTED_ISSUERS='[{"preset": "epic", "jku": ["https://e.example.org/k"]}]'),
            "#0: iss: Field required",
        ),
    ],
    ids=[
        "no-issuer",
        "sandbox-in-production",
        "no-public-base-url",
        "jwt-off",
        "hmac",
        "http-jku",
        "no-keys",
        "epic-no-iss",
    ],
)
def test_unsafe_configuration_refuses_to_start(env: dict[str, str], message: str) -> None:
    code, output = start_fails(env)
    assert code != 0
    assert message in output


def test_jwks_file_issuer_in_production(world: World) -> None:
    """A production issuer with keys from a file, two keys, tenant-free: both kids verify."""
    k1, k2 = new_key("ES384"), new_key("RS384")
    path = jwks_file(k1, k2)
    env = production_env([{"iss": "https://file.example.test", "jwks_file": str(path)}])
    with run_cds_server(env) as s:
        for key in (k1, k2):
            token = mint(
                key, claims_for("https://file.example.test", "https://cds.example.test/prefix/cds-services")
            )
            assert httpx.get(s.url("/cds-services"), headers=bearer(token)).status_code == 200


def test_operational_endpoints_need_no_token(world: World) -> None:
    """Probes and scrapers carry no client JWT: health, readiness, metrics and docs stay open."""
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        r = httpx.get(world.cds.url(path))
        assert r.status_code == 200, path
    metrics = httpx.get(world.cds.url("/metrics")).text
    assert "cds_auth_failures_total" in metrics


def test_plain_options_is_not_authenticated(world: World) -> None:
    """An OPTIONS without preflight headers reaches the app unauthenticated (no 401), like CORS."""
    before = len(refusals(world.cds))
    r = httpx.options(world.cds.url(SVC))
    assert r.status_code == 405
    assert len(refusals(world.cds)) == before
