"""The simulated EHR's identity: its signing key, the JWTs it sends, and its JWK Set on loopback.

CDS Hooks 2.0 ("Trusting CDS Clients") has the client sign a fresh JWT for every call: header
``alg`` (ES384 or RS384 recommended), ``typ: JWT``, ``kid`` and optionally ``jku`` (where its JWK Set
is); claims ``iss``, ``aud`` (the exact URL called), ``iat``, ``exp``, ``jti`` and optionally
``tenant``. A service that verifies tokens needs the public key, so we serve the JWK Set over
HTTP on loopback from a background thread for as long as the simulator runs.

The private key is generated once and kept in a directory the user names (PKCS#8 PEM, mode 0600),
so a service configured to trust this simulator keeps trusting it across runs. The ``kid`` is the
RFC 7638 thumbprint of the public key: stable, and different for every key. Tokens are never
printed or logged by this module.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_tools.ehr.defaults import ALGORITHMS, DEFAULT_ISS

JWKS_PATH = "/.well-known/jwks.json"
TOKEN_LIFETIME = 300  # seconds, as the Sandbox and Inferno issue them


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class ClientKey:
    """One private signing key of the simulated EHR."""

    alg: str
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with ``kid``, ``alg`` and ``use`` (never private members)."""
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        for private_member in ("d", "p", "q", "dp", "dq", "qi"):
            jwk.pop(private_member, None)
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
        return _b64(hashlib.sha256(canonical.encode()).digest())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def generate(alg: str) -> ClientKey:
    """A fresh key: P-384 for ES384, RSA 3072 for RS384."""
    if alg not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ClientKey(alg, private)


def load_or_create(directory: Path, alg: str) -> ClientKey:
    """The key for ``alg`` kept in ``directory`` (``{alg}-private.pem``), created on first use."""
    if alg not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    path = directory / f"{alg.lower()}-private.pem"
    if path.exists():
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        wanted = ec.EllipticCurvePrivateKey if alg == "ES384" else rsa.RSAPrivateKey
        if not isinstance(private, wanted):
            raise ValueError(f"{path} does not hold a key for {alg}")
        return ClientKey(alg, private)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate(alg)
    pem = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


@dataclass(frozen=True)
class Signer:
    """Mints one token per call, as a CDS client must (a fresh ``jti`` every time)."""

    key: ClientKey
    iss: str = DEFAULT_ISS
    jku: str | None = None
    tenant: str | None = None
    lifetime: int = TOKEN_LIFETIME

    def claims(self, aud: str) -> dict[str, Any]:
        now = int(time.time())
        out: dict[str, Any] = {
            "iss": self.iss,
            "aud": aud,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": str(uuid.uuid4()),
        }
        if self.tenant:
            out["tenant"] = self.tenant
        return out

    def token(self, aud: str, **override: Any) -> str:
        """A signed token for the endpoint URL ``aud``; ``override`` changes or (``None``) drops
        claims, which the conformance checker uses to build tokens a service must refuse."""
        claims = self.claims(aud)
        claims.update(override)
        headers: dict[str, Any] = {"typ": "JWT", "kid": self.key.kid}
        if self.jku:
            headers["jku"] = self.jku
        payload = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(payload, self.key.private, algorithm=self.key.alg, headers=headers)

    def unsigned(self, aud: str) -> str:
        """``alg: none`` with otherwise valid claims: every service must refuse it."""
        header = {"alg": "none", "typ": "JWT", "kid": self.key.kid}
        body = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(self.claims(aud)).encode())
        return body + "."


class JwksServer:
    """Serves one JWK Set at ``http://127.0.0.1:{port}/.well-known/jwks.json`` from a daemon thread.

    Loopback only: the service under test runs on the same machine, and a key server reachable
    from elsewhere is not what a test tool should open. Port 0 picks a free port.
    """

    def __init__(self, jwks: dict[str, Any], port: int = 0) -> None:
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path.split("?", 1)[0] == JWKS_PATH
                data = body if ok else b'{"error": "not found"}'
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "max-age=60")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="jwks", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    def start(self) -> JwksServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def jku_for_port(port: int) -> str:
    return f"http://127.0.0.1:{port}{JWKS_PATH}"


def _already_served(url: str, kid: str) -> bool:
    """True when ``url`` already serves a JWK Set holding ``kid`` (e.g. ``ehr jwks`` running)."""
    try:
        body = httpx.get(url, timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return False
    keys = body.get("keys") if isinstance(body, dict) else None
    return isinstance(keys, list) and any(isinstance(k, dict) and k.get("kid") == kid for k in keys)


@contextlib.contextmanager
def serving_jwks(key: ClientKey, port: int) -> Iterator[str]:
    """Serve ``key``'s JWK Set on ``port`` while the block runs; yields the ``jku`` URL. When the
    port is taken by a server that already publishes this key, that one is used instead."""
    try:
        server = JwksServer(key.jwks(), port).start()
    except OSError:
        url = jku_for_port(port)
        if port and _already_served(url, key.kid):
            yield url
            return
        raise
    try:
        yield server.url
    finally:
        server.stop()


def issuer_config(key: ClientKey, iss: str, jku: str | None, jwks_file: Path | None = None) -> dict[str, Any]:
    """The entry for the service's ``CDS_TRUSTED_ISSUERS`` that trusts this simulator."""
    entry: dict[str, Any] = {"iss": iss, "algorithms": [key.alg]}
    if jku:
        entry["jku"] = [jku]
    if jwks_file is not None:
        entry["jwks_file"] = str(jwks_file)
    return entry
