"""A test CDS client's signing side: fresh key pairs, their JWK Set, and tokens good and bad.

Every key is generated at run time; no private key material is stored in the repository.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKeyTypes

    def public_jwk(self) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_key(alg: str = "ES384", kid: str | None = None) -> SigningKey:
    private: PrivateKeyTypes
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
        private = ec.generate_private_key(curve)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def claims_for(iss: str, aud: str | list[str], lifetime: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    jti = str(uuid.uuid4())
    out: dict[str, Any] = {"iss": iss, "aud": aud, "iat": now, "exp": now + lifetime, "jti": jti}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def mint(
    key: SigningKey,
    claims: dict[str, Any],
    *,
    jku: str | None = None,
    alg: str | None = None,
    kid: str | None = None,
    typ: str | None = "JWT",
) -> str:
    """A signed token; ``alg``/``kid`` override the key's own (for negative cases)."""
    headers: dict[str, Any] = {"kid": key.kid if kid is None else kid, "typ": typ}
    if jku:
        headers["jku"] = jku
    return jwt.encode(claims, key.private, algorithm=alg or key.alg, headers=headers)  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """``alg: none``: header and payload, empty signature."""
    return _segments({"alg": "none", "typ": "JWT", "kid": kid}, claims) + "."


def hmac_signed(claims: dict[str, Any], kid: str, secret: bytes, alg: str = "HS256") -> str:
    """The algorithm-confusion attack: HMAC keyed with the client's *public* key."""
    signing_input = _segments({"alg": alg, "typ": "JWT", "kid": kid}, claims)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[alg]
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    return signing_input + "." + _b64(sig)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
