"""Trusting a hospital's own CA (issue 12): a real TLS front with a private CA in front of SEKMET
(the FHIR server) and in front of a client's JWK Set. Without ``CDS_TLS_CA_BUNDLE`` the fetch is
a 412 that names the untrusted certificate and the setting, and the JWT cannot be verified; with
it, the same calls give the cards. A bundle that cannot be used refuses the start, in one line."""

from __future__ import annotations

import json
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cds_service.clinical.services import SERVICE_ID
from cds_tools import fixtures
from tests.e2e.test_golden import summarise
from tests.support.client import checked, hook_body
from tests.support.jwt_client import SigningKey, bearer, claims_for, jwks, mint, new_key
from tests.support.loopback import serve_json
from tests.support.servers import CdsServer, FhirServer, run_cds_server, run_sekmet
from tests.support.tls_front import PrivateCa, make_private_ca, tls_front
from tests.support.trust_env import start_fails

pytestmark = pytest.mark.e2e

ISSUER = "https://ehr.test-hospital.internal"
PATH = f"/cds-services/{SERVICE_ID}"


@dataclass
class World:
    ca: PrivateCa
    fhir: FhirServer
    fhir_https: str  # https://127.0.0.1:PORT/fhir, behind the private-CA front
    jwks_https: str
    key: SigningKey
    fx: fixtures.Fixture


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    folder = Path(tempfile.mkdtemp(prefix="private-ca-"))
    ca = make_private_ca(folder)
    key = new_key("ES384")
    fx = fixtures.load(fixtures.ROOT / "patients" / "r01-weakness.json")
    with run_sekmet() as fhir, serve_json() as keys:
        fhir.load(fx.bundle)
        keys.set("/jwks.json", jwks(key))
        fhir_port = urlsplit(fhir.base).port
        keys_port = urlsplit(keys.base).port
        assert fhir_port and keys_port
        with tls_front(ca, fhir_port) as fhir_tls, tls_front(ca, keys_port) as keys_tls:
            yield World(
                ca, fhir, f"https://127.0.0.1:{fhir_tls}/fhir", f"https://127.0.0.1:{keys_tls}/jwks.json", key, fx
            )


def env(world: World, bundle: bool) -> dict[str, str]:
    out = {
        "CDS_REQUIRE_CLIENT_JWT": "true",
        "CDS_TRUSTED_ISSUERS": json.dumps([{"iss": ISSUER, "jwks_url": world.jwks_https}]),
    }
    if bundle:
        out["CDS_TLS_CA_BUNDLE"] = str(world.ca.ca_pem)
    return out


def call(server: CdsServer, world: World, body: dict[str, object]) -> httpx.Response:
    token = mint(world.key, claims_for(ISSUER, server.url(PATH)))
    return httpx.post(server.url(PATH), json=body, headers=bearer(token), timeout=30)


def fetch_body(world: World) -> dict[str, object]:
    return hook_body(patient=world.fx.patient_id, fhir_server=world.fhir_https, token="any-token-sekmet-is-open")


def test_the_front_is_real_tls_with_the_private_ca(world: World) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(world.fhir_https + "/metadata")  # not trusted by default
    r = httpx.get(world.fhir_https + "/metadata", verify=ssl.create_default_context(cafile=str(world.ca.ca_pem)), timeout=30)
    assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"


def test_without_the_bundle_the_private_ca_is_not_trusted(world: World) -> None:
    with run_cds_server(env(world, bundle=False)) as server:
        r = call(server, world, fetch_body(world))
        # the client's JWK Set behind the private CA cannot be fetched: it cannot be verified now
        assert r.status_code == 503, r.text
        assert "JWK Set could not be loaded" in server.logs() and "CERTIFICATE_VERIFY_FAILED" in server.logs()
    # the FHIR side alone (no client JWT demanded)
    with run_cds_server({}) as server:
        r = httpx.post(server.url(PATH), json=fetch_body(world), timeout=30)
        assert r.status_code == 412
        text = checked(r)["issue"][0]["diagnostics"]
        assert "TLS certificate is not trusted" in text and "CDS_TLS_CA_BUNDLE" in text


def test_with_the_bundle_fhir_and_jwks_over_private_tls_work(world: World) -> None:
    with run_cds_server(env(world, bundle=True)) as server:
        r = call(server, world, fetch_body(world))
        assert r.status_code == 200, r.text
        assert summarise(checked(r)) == fixtures.expectations()["r01-weakness"]["cards"]
        assert "any-token-sekmet-is-open" not in server.logs()


def test_system_trust_alone_does_not_trust_the_private_ca(world: World) -> None:
    with run_cds_server({"CDS_TLS_SYSTEM_TRUST": "true"}) as server:
        r = httpx.post(server.url(PATH), json=fetch_body(world), timeout=30)
        assert r.status_code == 412 and "not trusted" in checked(r)["issue"][0]["diagnostics"]
    with run_cds_server({"CDS_TLS_SYSTEM_TRUST": "true", "CDS_TLS_CA_BUNDLE": str(world.ca.ca_pem)}) as server:
        assert httpx.post(server.url(PATH), json=fetch_body(world), timeout=30).status_code == 200


def test_unusable_bundle_refuses_the_start_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    code, out = start_fails({"CDS_TLS_CA_BUNDLE": str(missing)})
    assert code != 0 and f"CDS_TLS_CA_BUNDLE: no such file: {missing}" in out
    assert "Traceback" not in out
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    code, out = start_fails({"CDS_TLS_CA_BUNDLE": str(junk)})
    assert code != 0 and "is not a PEM file of CA certificates" in out and "Traceback" not in out
