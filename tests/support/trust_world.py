"""One production-profile service with three trusted issuers, their key servers on loopback, and two
stand-in FHIR servers (one allowed for issuer A, one not): what the trust e2e tests talk to."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.client import hook_body
from tests.support.jwt_client import SigningKey, bearer, claims_for, jwks, mint, new_key
from tests.support.loopback import JsonServer, serve_json
from tests.support.servers import CdsServer, run_cds_server
from tests.support.trust_env import production_env, public_url

ISS_A = "https://ehr-a.example.test"  # keys via allowed jku, tenant and FHIR origin restricted
ISS_B = "https://ehr-b.example.test"  # keys via a fixed JWKS URL (no jku): the rotation tests
ISS_EPIC = "https://epic.example.test/interconnect/api/FHIR/R4"  # Epic preset: RS384 and nbf
TENANT = "tenant-a"
ALLOWED_ORIGIN = "https://ehr.example.test"
PATIENT = "pt-trust-1"


@dataclass
class World:
    cds: CdsServer
    keys_server: JsonServer
    fhir_ok: JsonServer
    fhir_other: JsonServer
    a_es: SigningKey
    a_rs: SigningKey
    b1: SigningKey
    b2: SigningKey
    epic: SigningKey
    stranger: SigningKey

    @property
    def a_jku(self) -> str:
        return self.keys_server.url("/a/jwks.json")

    @property
    def epic_jku(self) -> str:
        return self.keys_server.url("/epic/jwks.json")

    def token_a(self, path: str, key: SigningKey | None = None, **claims: Any) -> str:
        """A valid issuer-A token for ``path`` (claims may override or, with None, drop fields)."""
        base = claims_for(ISS_A, public_url(path), tenant=TENANT)
        base.update(claims)
        return mint(key or self.a_es, {k: v for k, v in base.items() if v is not None}, jku=self.a_jku)

    def call(self, path: str, headers: dict[str, str] | None = None, body: Any = None) -> httpx.Response:
        """GET discovery, POST a service or its feedback with a valid body."""
        url = self.cds.url(path)
        if path == "/cds-services":
            return httpx.get(url, headers=headers, timeout=30)
        if body is None:
            body = feedback_body() if path.endswith("/feedback") else service_body()
        return httpx.post(url, json=body, headers=headers, timeout=30)

    def call_a(self, path: str, **claims: Any) -> httpx.Response:
        return self.call(path, bearer(self.token_a(path, **claims)))


def service_body(**kw: Any) -> dict[str, Any]:
    kw.setdefault("prefetch", {"patient": {"resourceType": "Patient", "id": PATIENT}})
    return hook_body(patient=PATIENT, **kw)


def feedback_body() -> dict[str, Any]:
    item = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    return {"feedback": [item]}


def fhir_routes(server: JsonServer) -> None:
    server.set(f"/fhir/Patient/{PATIENT}", {"resourceType": "Patient", "id": PATIENT})
    server.set("/fhir/Observation", {"resourceType": "Bundle", "type": "searchset", "entry": []})


@contextlib.contextmanager
def trust_world(**extra_env: str) -> Iterator[World]:
    a_es, a_rs = new_key("ES384"), new_key("RS384")
    b1, b2 = new_key("ES384", "b-1"), new_key("ES384", "b-2")
    epic, stranger = new_key("RS384"), new_key("ES384")
    with serve_json() as keys_server, serve_json() as fhir_ok, serve_json() as fhir_other:
        keys_server.set("/a/jwks.json", jwks(a_es, a_rs))
        keys_server.set("/b/jwks.json", jwks(b1))
        keys_server.set("/epic/jwks.json", jwks(epic))
        fhir_routes(fhir_ok)
        fhir_routes(fhir_other)
        issuers: list[dict[str, Any]] = [
            {
                "iss": ISS_A,
                "jku": [keys_server.url("/a/jwks.json")],
                "tenants": [TENANT],
                "fhir_server_origins": [fhir_ok.base],
            },
            {"iss": ISS_B, "jwks_url": keys_server.url("/b/jwks.json")},
            {"preset": "epic", "iss": ISS_EPIC, "jku": [keys_server.url("/epic/jwks.json")]},
        ]
        env = production_env(
            issuers,
            CDS_FHIR_SERVER_REQUIRE_HTTPS="false",  # the stand-in FHIR servers are plain http
            CDS_JWKS_MIN_REFRESH_SECONDS="3600",
            CDS_CORS_ALLOW_ORIGINS=f'["{ALLOWED_ORIGIN}"]',
            CDS_MAX_BODY_BYTES="200000",
            CDS_MAX_JSON_ELEMENTS="5000",
        )
        env.update(extra_env)
        with run_cds_server(env) as cds:
            yield World(cds, keys_server, fhir_ok, fhir_other, a_es, a_rs, b1, b2, epic, stranger)
