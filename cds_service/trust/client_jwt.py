"""Client JWT verification (CDS Hooks 2.0 "Trusting CDS Clients", and the best-practice order).

The order matters for safety, not only for tidiness:

1. the header is read without trusting it: ``alg`` must be an allowed asymmetric algorithm (``none``
   and HMAC are refused before any key is looked at, which defeats algorithm confusion), ``typ``
   must be ``JWT`` and ``kid`` present;
2. ``iss`` must be a trusted issuer and ``jku``, if given, on that issuer's allow-list: only then
   may a key set be fetched, so a token cannot make us fetch arbitrary URLs;
3. the signature is checked with that key (and the key's own ``alg``, if it declares one);
4. the now-trusted claims: ``aud`` is the URL of the endpoint called, ``exp``/``iat``/``nbf`` with a
   small skew and a maximum age, ``jti`` present, ``tenant`` allowed;
5. last, the ``jti`` is remembered: only a token that passed everything else spends its ``jti``,
   so garbage cannot fill the replay cache with values a real client might use.

Every refusal carries a ``Reason``; nothing of the token itself is ever put into a message.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson

from cds_service.trust.config import IssuerConfig
from cds_service.trust.jwks import JwksCache, KeySetUnavailable, VerificationKey
from cds_service.trust.metrics import Reason
from cds_service.trust.replay import IssuedBeforeEpoch, ReplayCache, ReplayCacheUnavailable

MAX_TOKEN_BYTES = 16_384
_SLASHES = re.compile(r"/{2,}")


class AuthFailure(Exception):
    """Verification failed; ``status`` is 401, or 503 when our own key or replay store is down."""

    def __init__(self, reason: Reason, status: int = 401) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.status = status
        self.claimed_iss: str | None = None  # unverified, sanitised: for the log only


@dataclass(frozen=True)
class ClientIdentity:
    """Who called, as proven by a verified token: what the audit and the fhirServer guard use."""

    iss: str
    jti: str
    tenant: str | None
    issuer: IssuerConfig


def normalize_url(url: str) -> str:
    """Compare URLs as the spec's ``aud`` rule intends: scheme and host case-insensitive, default
    port dropped, repeated and trailing slashes ignored (clients build URLs by concatenation)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return url
    netloc = host if port is None or (scheme, port) in (("https", 443), ("http", 80)) else f"{host}:{port}"
    path = _SLASHES.sub("/", parts.path).rstrip("/")
    return f"{scheme}://{netloc}{path}"


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _short(value: object, limit: int = 200) -> str:
    """A claim value made safe for a log field: a printable, bounded string."""
    text = value if isinstance(value, str) else repr(type(value).__name__)
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _loggable_iss(value: str) -> str | None:
    """An unverified ``iss`` is logged only when it looks like what an issuer is (an http(s) URL):
    it is attacker-chosen text, and a free-text value could carry anything, even a patient name."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname and " " not in value:
        return _short(value)
    return None


class TokenVerifier:
    """Verifies one bearer token for one endpoint URL; stateless apart from its two caches."""

    def __init__(
        self,
        issuers: Mapping[str, IssuerConfig],
        keys: JwksCache,
        replay: ReplayCache,
        *,
        algorithms: tuple[str, ...],
        skew: float,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuers = dict(issuers)
        self.keys = keys
        self.replay = replay
        self.algorithms = algorithms
        self.skew = skew
        self.max_age = max_age
        self.clock = clock
        self._jws = jwt.PyJWS()

    async def verify(self, token: str, audience: str) -> ClientIdentity:
        """The verified caller, or AuthFailure (with the claimed ``iss`` when one could be read)."""
        claimed: list[str] = []
        try:
            return await self._verify(token, audience, claimed)
        except AuthFailure as failure:
            failure.claimed_iss = _loggable_iss(claimed[0]) if claimed else None
            raise

    async def _verify(self, token: str, audience: str, claimed: list[str]) -> ClientIdentity:
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthFailure(Reason.TOO_LARGE)
        if token.count(".") != 2:
            raise AuthFailure(Reason.MALFORMED)
        try:
            header = jwt.get_unverified_header(token)
            unverified = orjson.loads(jwt.utils.base64url_decode(token.split(".")[1]))
        except (jwt.PyJWTError, ValueError, orjson.JSONDecodeError):
            raise AuthFailure(Reason.MALFORMED) from None
        if not isinstance(unverified, dict) or not isinstance(header, dict):
            raise AuthFailure(Reason.MALFORMED)
        if isinstance(unverified.get("iss"), str):
            claimed.append(unverified["iss"])

        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise AuthFailure(Reason.ALG_NONE)
        if alg.upper().startswith("HS"):
            raise AuthFailure(Reason.ALG_HMAC)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthFailure(Reason.BAD_TYP)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure(Reason.NO_KID)

        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise AuthFailure(Reason.NO_ISS)
        issuer = self.issuers.get(iss)
        if issuer is None:
            raise AuthFailure(Reason.UNTRUSTED_ISSUER)
        if alg not in (issuer.algorithms or self.algorithms):
            raise AuthFailure(Reason.ALG_NOT_ALLOWED)

        key = await self._key(issuer, header.get("jku"), kid)
        if key.alg is not None and key.alg != alg:
            raise AuthFailure(Reason.KEY_ALG_MISMATCH)
        try:
            verified = self._jws.decode_complete(token, key.key.key, algorithms=[alg])
            claims = orjson.loads(verified["payload"])
        except jwt.InvalidSignatureError:
            raise AuthFailure(Reason.BAD_SIGNATURE) from None
        except (jwt.PyJWTError, ValueError, orjson.JSONDecodeError, TypeError):
            # e.g. an RSA key asked to verify an EC signature: the token does not fit the key.
            raise AuthFailure(Reason.BAD_SIGNATURE) from None
        if not isinstance(claims, dict):
            raise AuthFailure(Reason.MALFORMED)

        self._check_claims(claims, issuer, audience)
        jti = claims["jti"]
        exp = _number(claims, "exp")
        assert exp is not None
        ttl = min(exp + self.skew - self.clock(), self.max_age + 2 * self.skew)
        try:
            iat = _number(claims, "iat")
            assert iat is not None
            fresh = await self.replay.first_use(iss, jti, max(ttl, 1.0), iat)
        except ReplayCacheUnavailable:
            raise AuthFailure(Reason.REPLAY_CACHE_UNAVAILABLE, 503) from None
        except IssuedBeforeEpoch:
            raise AuthFailure(Reason.BEFORE_REPLAY_EPOCH) from None
        if not fresh:
            raise AuthFailure(Reason.REPLAY)
        tenant = claims.get("tenant")
        safe_tenant = _short(tenant) if isinstance(tenant, str) else None
        return ClientIdentity(iss=iss, jti=_short(jti), tenant=safe_tenant, issuer=issuer)

    async def _key(self, issuer: IssuerConfig, jku: object, kid: str) -> VerificationKey:
        """Find the signing key without ever fetching a URL the configuration did not allow."""
        if jku is not None:
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise AuthFailure(Reason.JKU_NOT_ALLOWED)
            source = f"file:{issuer.jwks_file}" if issuer.jwks_file is not None else jku
        elif issuer.jwks_file is not None:
            source = f"file:{issuer.jwks_file}"
        elif issuer.jwks_url is not None:
            source = issuer.jwks_url
        else:
            raise AuthFailure(Reason.JKU_REQUIRED)
        try:
            key = await self.keys.get(source, kid)
        except KeySetUnavailable:
            raise AuthFailure(Reason.KEYS_UNAVAILABLE, 503) from None
        if key is None:
            raise AuthFailure(Reason.UNKNOWN_KID)
        return key

    def _check_claims(self, claims: dict[str, Any], issuer: IssuerConfig, audience: str) -> None:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        wanted = normalize_url(audience)
        if not any(isinstance(a, str) and normalize_url(a) == wanted for a in auds):
            raise AuthFailure(Reason.WRONG_AUD)

        now = self.clock()
        exp = _number(claims, "exp")
        if exp is None:
            raise AuthFailure(Reason.NO_EXP)
        if now > exp + self.skew:
            raise AuthFailure(Reason.EXPIRED)
        iat = _number(claims, "iat")
        if iat is None:
            raise AuthFailure(Reason.NO_IAT)
        if iat > now + self.skew:
            raise AuthFailure(Reason.IAT_FUTURE)
        if now - iat > self.max_age + self.skew:
            raise AuthFailure(Reason.TOO_OLD)
        nbf = _number(claims, "nbf")
        if "nbf" in claims and nbf is None:
            raise AuthFailure(Reason.MALFORMED)
        if nbf is None and issuer.require_nbf:
            raise AuthFailure(Reason.NO_NBF)
        if nbf is not None and nbf > now + self.skew:
            raise AuthFailure(Reason.NOT_YET_VALID)

        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti.strip() or len(jti) > 256:
            raise AuthFailure(Reason.NO_JTI)
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise AuthFailure(Reason.BAD_TENANT)
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise AuthFailure(Reason.BAD_TENANT)
