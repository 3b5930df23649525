"""The official SMART App Launcher (backend) as a real OAuth 2.0 / SMART-on-FHIR EHR for tests,
and a client that goes through it the way an EHR-embedded app or a backend service does.

The launcher lives outside the project (``../shared/tools/smart-launcher``, or
``CDS_TEST_SMART_LAUNCHER``); its ``run`` script installs its npm packages once into a cache and
serves, per launch code, an authorize and a token endpoint and a FHIR proxy in front of a real FHIR
server (here SEKMET). Nothing here fakes a token: every access token is minted by the launcher
and checked by its proxy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from cds_tools import harness
from tests.support.jwt_client import SigningKey, jwks
from tests.support.servers import ROOT, unavailable

LAUNCHER_DIR = Path(os.environ.get("CDS_TEST_SMART_LAUNCHER", ROOT.parent / "shared" / "tools" / "smart-launcher"))
REDIRECT_URI = "http://127.0.0.1/ehr-app/callback"  # never opened: the code is read from the 302
EHR_CLIENT_ID = "cds-fasciculation-ehr-test"


def launcher_missing() -> str | None:
    """Why the launcher cannot run here, or None. Only a missing Node (or launcher copy) is a
    reason to skip; a failing npm install with Node present is a failure, not a skip."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node 20+ and npm are needed for the SMART App Launcher (tests/test_smart_launcher.py)"
    if not (LAUNCHER_DIR / "run").is_file():
        return f"SMART App Launcher not found at {LAUNCHER_DIR} (set CDS_TEST_SMART_LAUNCHER)"
    return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def launch_code(*options: Any) -> str:
    """The launcher's launch code: base64url of its 17-element JSON array (see its README)."""
    assert len(options) == 17
    return b64url(json.dumps(list(options), separators=(",", ":")).encode())


@dataclass(frozen=True)
class Token:
    """A token response, as an EHR holds it; ``fhir_authorization`` is what it sends a CDS service."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    patient: str | None
    raw: dict[str, Any]

    def fhir_authorization(self, **override: Any) -> dict[str, Any]:
        body = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
            "subject": "cds-fasciculation",
        }
        if self.patient:
            body["patient"] = self.patient
        body.update(override)
        return body


@dataclass
class Launcher(harness.Launcher):
    """The harness's launcher with what the tests do as an EHR: launches, tokens, registration."""

    @property
    def iss(self) -> str:
        """The FHIR base (``iss``) EHR launches name, and the ``fhirServer`` sent to CDS services."""
        return self.fhir_base

    def smart_configuration(self) -> dict[str, Any]:
        r = httpx.get(f"{self.iss}/.well-known/smart-configuration", timeout=30)
        r.raise_for_status()
        conf: dict[str, Any] = r.json()
        return conf

    def ehr_launch(self, patient: str, scope: str = "launch openid fhirUser patient/*.read") -> Token:
        """Provider EHR launch without UI: launch code, authorize with PKCE (S256, demanded by the
        code), then the code and its verifier at the token endpoint."""
        code = launch_code(0, patient, "dr-1", "NONE", 1, 1, 0, "", "", "", "", "", "", "", 0, 2, "")
        conf = self.smart_configuration()
        verifier = b64url(secrets.token_bytes(48))
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        state = uuid.uuid4().hex
        with httpx.Client(timeout=30, follow_redirects=False) as http:
            r = http.get(
                conf["authorization_endpoint"],
                params={
                    "response_type": "code",
                    "client_id": EHR_CLIENT_ID,
                    "redirect_uri": REDIRECT_URI,
                    "scope": scope,
                    "state": state,
                    "aud": self.iss,
                    "launch": code,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                },
            )
            assert r.status_code in (302, 303), (r.status_code, r.text[:300])
            query = parse_qs(urlsplit(r.headers["location"]).query)
            assert query["state"] == [state], "authorize must return our state"
            grant = query["code"][0]
            # PKCE is checked: the wrong verifier is refused before the right one is used.
            bad = http.post(
                conf["token_endpoint"],
                data={"grant_type": "authorization_code", "code": grant, "redirect_uri": REDIRECT_URI,
                      "code_verifier": b64url(secrets.token_bytes(48)), "client_id": EHR_CLIENT_ID},
            )
            assert bad.status_code in (400, 401), "the launcher must refuse a wrong PKCE verifier"
            r = http.post(
                conf["token_endpoint"],
                data={"grant_type": "authorization_code", "code": grant, "redirect_uri": REDIRECT_URI,
                      "code_verifier": verifier, "client_id": EHR_CLIENT_ID},
            )
            r.raise_for_status()
        return _token(r.json())

    def backend_token(self, key: SigningKey, client_id: str = "cds-backend-test", scope: str = "system/*.read") -> Token:
        """Backend services (client_credentials with a signed assertion; the client's JWK Set is
        registered in the launch code, so the launcher verifies the signature)."""
        jwks_json = json.dumps(jwks(key))
        code = launch_code(4, "", "", "", 0, 0, 0, "", "", client_id, "", "", "", jwks_json, 3, 1, "")
        token_url = f"{self.base}/v/r4/sim/{code}/auth/token"
        now = int(time.time())
        assertion = jwt.encode(
            {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240, "iat": now, "jti": uuid.uuid4().hex},
            key.private,  # type: ignore[arg-type]
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": "JWT"},
        )
        r = httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text[:300]
        return _token(r.json())


def _token(body: dict[str, Any]) -> Token:
    return Token(
        access_token=body["access_token"],
        token_type=body["token_type"],
        expires_in=int(body["expires_in"]),
        scope=body["scope"],
        patient=body.get("patient"),
        raw=body,
    )


@contextlib.contextmanager
def run_launcher(fhir: str, token_minutes: float | None = None, secret: str | None = None) -> Iterator[Launcher]:
    """``cds_tools.harness.run_launcher`` on this copy of the launcher (``CDS_TEST_SMART_LAUNCHER``),
    as the test ``Launcher`` with its EHR-side helpers; the first run installs npm packages
    (minutes, once)."""
    reason = launcher_missing()
    if reason is not None:
        unavailable(reason)
    with harness.run_launcher(fhir, token_minutes, timeout=300, secret=secret, script=LAUNCHER_DIR / "run") as it:
        yield Launcher(it.base, it.proc, it.log_path)
