"""SMART App Launch 2.0, client side: discovery, PKCE S256, the authorisation URL, the token
exchange and (for a confidential client) ``private_key_jwt`` client authentication.

Every URL fetched here comes from an allow-listed ``iss`` (discovery) or from that server's own
SMART configuration (token endpoint, JWKS); the token endpoint must be https (loopback excepted)
and the id_token's key set must be served by the token endpoint's host. The code and verifier go
only in the form body of the token request; our client assertion is bound to that endpoint by its
``aud``. Errors carry a message for the clinician, never a token, code or verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.smart_settings import SmartSettings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class SmartError(Exception):
    """A launch that cannot go on; ``title`` and ``message`` are shown to the clinician."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass(frozen=True)
class SmartConfiguration:
    """What the app uses from ``{iss}/.well-known/smart-configuration``."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None
    issuer: str | None
    capabilities: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: float | None
    scope: str
    patient: str | None
    id_token: str | None
    app_context: str | None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge): 86 characters of 64 random bytes (RFC 7636: 43-128)."""
    verifier = b64url(secrets.token_bytes(64))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def _https_or_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
    )


async def discover(client: httpx.AsyncClient, iss: str) -> SmartConfiguration:
    """Read the SMART configuration of an allow-listed ``iss`` (the caller checked the list)."""
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        resp = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError:
        raise SmartError(
            502, "EHR not reachable", "The EHR's SMART configuration could not be read."
        ) from None
    if resp.status_code != 200:
        raise SmartError(
            502, "EHR not reachable", f"The EHR's SMART configuration answered HTTP {resp.status_code}."
        )
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SmartError(502, "EHR configuration unreadable", "The EHR's SMART configuration is not JSON.")
    auth, token = body.get("authorization_endpoint"), body.get("token_endpoint")
    if not isinstance(auth, str) or not isinstance(token, str) or not _https_or_local(token):
        raise SmartError(
            502, "EHR configuration unusable", "The SMART configuration lacks usable OAuth endpoints."
        )
    methods = body.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        raise SmartError(
            502,
            "EHR does not support PKCE",
            "The EHR's SMART configuration does not list PKCE S256, which this app requires.",
        )
    jwks = body.get("jwks_uri")
    issuer = body.get("issuer")
    caps = body.get("capabilities")
    return SmartConfiguration(
        auth,
        token,
        jwks if isinstance(jwks, str) else None,
        issuer if isinstance(issuer, str) else None,
        frozenset(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else frozenset(),
    )


def authorize_url(
    cfg: SmartConfiguration,
    settings: SmartSettings,
    redirect_uri: str,
    iss: str,
    state: str,
    challenge: str,
    launch: str | None,
) -> str:
    """The authorisation request: ``aud`` is the FHIR base the token is for (the ``iss``)."""
    params = {
        "response_type": "code",
        "client_id": settings.client_id,
        "redirect_uri": redirect_uri,
        "scope": settings.scopes if launch else settings.standalone_scopes,
        "state": state,
        "aud": iss,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if launch:
        params["launch"] = launch
    sep = "&" if urlsplit(cfg.authorization_endpoint).query else "?"
    return cfg.authorization_endpoint + sep + urlencode(params)


@lru_cache(maxsize=4)
def _load_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("CDS_SMART_CLIENT_KEY_FILE must hold an RSA or EC private key")
    return key


def client_assertion(settings: SmartSettings, token_endpoint: str) -> str:
    """A ``private_key_jwt`` assertion (SMART asymmetric client authentication): iss = sub =
    client_id, aud = the token endpoint, five minutes, a fresh jti."""
    assert settings.client_key_file is not None
    now = int(time.time())
    claims = {
        "iss": settings.client_id,
        "sub": settings.client_id,
        "aud": token_endpoint,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    headers = {"kid": settings.client_key_id, "typ": "JWT"}
    return jwt.encode(claims, _load_key(settings.client_key_file), settings.client_key_alg, headers)


def public_jwks(settings: SmartSettings) -> dict[str, Any]:
    """Our JWKS (the public half of the client key), for the EHR to verify our assertions."""
    if settings.client_key_file is None:
        return {"keys": []}
    key = _load_key(settings.client_key_file)
    jwk = json.loads(
        jwt.algorithms.get_default_algorithms()[settings.client_key_alg].to_jwk(key.public_key())
    )
    jwk.update({"kid": settings.client_key_id, "alg": settings.client_key_alg, "use": "sig"})
    return {"keys": [jwk]}


async def exchange_code(
    client: httpx.AsyncClient,
    cfg: SmartConfiguration,
    settings: SmartSettings,
    code: str,
    verifier: str,
    redirect_uri: str,
) -> TokenResponse:
    """POST the code and its PKCE verifier to the token endpoint (form-encoded, never in a URL)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if settings.client_key_file is not None:
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = client_assertion(settings, cfg.token_endpoint)
    else:
        form["client_id"] = settings.client_id
    try:
        resp = await client.post(cfg.token_endpoint, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError:
        raise SmartError(502, "Sign-in failed", "The EHR's token endpoint could not be reached.") from None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        reason = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
        raise SmartError(
            401,
            "Sign-in failed",
            f"The EHR refused to issue an access token (HTTP {resp.status_code}"
            + (f", {reason[:60]}" if reason else "")
            + "). Launch the app again from the EHR.",
        )
    expires = body.get("expires_in")
    patient = body.get("patient")
    id_token = body.get("id_token")
    app_context = body.get("appContext")
    if isinstance(app_context, dict):
        app_context = json.dumps(app_context)
    return TokenResponse(
        body["access_token"],
        float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else None,
        str(body.get("scope") or ""),
        patient if isinstance(patient, str) and patient else None,
        id_token if isinstance(id_token, str) else None,
        app_context if isinstance(app_context, str) else None,
    )


async def fhir_user(
    client: httpx.AsyncClient, cfg: SmartConfiguration, settings: SmartSettings, id_token: str | None
) -> str | None:
    """``fhirUser`` from the id_token, verified against the server's own JWKS (None when it cannot
    be verified: the clinician is then simply not named; nothing depends on it for access)."""
    if (
        not id_token
        or not cfg.jwks_uri
        or urlsplit(cfg.jwks_uri).netloc != urlsplit(cfg.token_endpoint).netloc
    ):
        return None
    try:
        header = jwt.get_unverified_header(id_token)
        resp = await client.get(cfg.jwks_uri, headers={"Accept": "application/json"})
        keys = jwt.PyJWKSet.from_dict(resp.json()).keys
        key = next(k for k in keys if k.key_id == header.get("kid")) if header.get("kid") else keys[0]
        claims = jwt.decode(
            id_token, key.key, algorithms=["RS256", "RS384", "ES256", "ES384"], audience=settings.client_id
        )
    except Exception:  # any failure means: not verified
        return None
    user = claims.get("fhirUser") or claims.get("profile")
    if not isinstance(user, str):
        return None
    # A relative or absolute reference: keep Type/id (what CDS Hooks' userId expects).
    parts = user.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None
