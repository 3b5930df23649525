"""Signing keys whose private half is public: never trusted in the production profile.

The public CDS Hooks Sandbox publishes its private signing key on purpose (anyone can then act as
the Sandbox), so a production service that trusts its public key trusts everyone. The ``dev_only``
flag of the ``sandbox`` preset was not enough: an operator could set it to false, copy the pinned
JWK Set under another ``iss``, or point a ``jwks_url``/``jku`` at the Sandbox. So the check is on
the key itself (its RFC 7638 thumbprint) and on where keys come from, whatever the configuration
says, and it runs both at start-up (pinned files, URLs) and whenever a JWK Set is fetched (a key
served later from an allowed URL).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
# JWK Sets whose private keys are published (the Sandbox's, pinned in presets/).
PUBLIC_TEST_JWKS = (PRESETS_DIR / "sandbox-cds-hooks-org-jwks.json",)
# Hosts that serve such keys and issuer values that stand for them.
PUBLIC_TEST_HOSTS = frozenset({"sandbox.cds-hooks.org"})

# RFC 7638: the members that define a public key, per key type.
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def thumbprint(jwk: dict[str, Any]) -> str | None:
    """RFC 7638 SHA-256 thumbprint (base64url) of a public JWK; None for an unusable one."""
    members = _REQUIRED.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        return None
    canonical = orjson.dumps({m: jwk[m] for m in members}, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _load_known() -> frozenset[str]:
    prints: set[str] = set()
    for path in PUBLIC_TEST_JWKS:
        for key in orjson.loads(path.read_bytes()).get("keys", []):
            tp = thumbprint(key) if isinstance(key, dict) else None
            if tp is not None:
                prints.add(tp)
    return frozenset(prints)


KNOWN_PUBLIC_THUMBPRINTS = _load_known()


def is_public_test_key(jwk: dict[str, Any]) -> bool:
    """True when this JWK is one whose private half anyone can have."""
    return thumbprint(jwk) in KNOWN_PUBLIC_THUMBPRINTS


def is_public_test_url(url: str) -> bool:
    """True for an issuer or key URL of a host that serves published test keys."""
    host = (urlsplit(url.strip()).hostname or "").lower()
    return host in PUBLIC_TEST_HOSTS


def public_keys_in_file(path: Path) -> list[str]:
    """``kid`` values (or '?') of published test keys in a JWK Set file; [] when unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    keys = data.get("keys") if isinstance(data, dict) else None
    return [
        str(k.get("kid") or "?")
        for k in (keys if isinstance(keys, list) else [])
        if isinstance(k, dict) and is_public_test_key(k)
    ]
