"""JWK Set cache: the public keys of trusted clients, by source (URL or pinned file) and ``kid``.

A key set is fetched when first needed and reused for ``jwks_cache_seconds``. A token whose ``kid``
is not in the set may mean the client rotated its keys, so it triggers a refresh, but at most one
per ``jwks_min_refresh_seconds`` per source: otherwise anyone could make us hammer an EHR's key
endpoint by sending made-up ``kid`` values. A refresh replaces the whole set, so a key the client
has withdrawn stops being accepted. When a refresh fails the previous set stays in use (the client
did not revoke anything; its endpoint is just down).

Only URLs that passed the trust configuration are ever fetched (allowed ``jku`` values or a fixed
``jwks_url``), with a timeout, without redirects, and with a size cap.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from cds_service.trust.public_keys import is_public_test_key

log = logging.getLogger("cds.trust")

# Members that only a private or symmetric key has; a published set must not carry them, and we
# never want to hold them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeySetUnavailable(Exception):
    """The key set could not be had and none is cached: the client cannot be verified right now."""


@dataclass(frozen=True)
class VerificationKey:
    """A public key and the algorithm its JWK declares (None when it declares none)."""

    key: jwt.PyJWK
    alg: str | None


@dataclass
class _Entry:
    keys: dict[str, VerificationKey] = field(default_factory=dict)
    fetched_at: float | None = None  # monotonic time of the last successful load
    last_attempt: float | None = None  # monotonic time of the last load attempt of any kind
    last_refresh: float | None = None  # monotonic time of the last unknown-kid refresh
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def parse_jwks(data: Any, refuse_public: bool = False) -> dict[str, VerificationKey]:
    """Public signing keys of a JWK Set by ``kid``; anything unusable is skipped, not fatal.
    With ``refuse_public`` (production) a key whose private half is published is skipped too."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK Set (no 'keys' list)")
    out: dict[str, VerificationKey] = {}
    for raw in data["keys"]:
        if not isinstance(raw, dict):
            continue
        kid = raw.get("kid")
        if not isinstance(kid, str) or not kid or raw.get("kty") == "oct":
            continue
        if raw.get("use") not in (None, "sig"):
            continue
        public = {k: v for k, v in raw.items() if k not in _PRIVATE_MEMBERS}
        if refuse_public and is_public_test_key(public):
            log.error("refusing a published test key served in a JWK Set", extra={"fields": {"kid": kid[:100]}})
            continue
        try:
            alg = raw.get("alg")
            out[kid] = VerificationKey(jwt.PyJWK(public), alg if isinstance(alg, str) else None)
        except jwt.PyJWTError:
            log.warning("skipping an unusable key in a JWK Set", extra={"fields": {"kid": kid[:100]}})
    return out


class JwksCache:
    """Per-process cache of JWK Sets; sources are ``https://...`` URLs or ``file:`` paths."""

    def __init__(
        self,
        *,
        ttl: float,
        min_refresh: float,
        timeout: float,
        max_bytes: int = 256_000,
        clock: Callable[[], float] = time.monotonic,
        refuse_public: bool = False,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.refuse_public = refuse_public
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        self.verify = verify  # the CA trust of cds_service.data.tls (a hospital's own CA)
        self._entries: dict[str, _Entry] = {}
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            trust_env=False,
            verify=self.verify,
            headers={"Accept": "application/json, application/jwk-set+json"},
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def get(self, source: str, kid: str) -> VerificationKey | None:
        """The key ``kid`` of ``source``, or None when the (possibly refreshed) set lacks it.

        Raises KeySetUnavailable when nothing could ever be loaded from the source.
        """
        entry = self._entries.setdefault(source, _Entry())
        async with entry.lock:
            now = self.clock()
            loaded_now = False
            stale = entry.fetched_at is None or now - entry.fetched_at >= self.ttl
            # A failing source is retried at most once per refresh interval, not once per request.
            may_retry = entry.last_attempt is None or now - entry.last_attempt >= min(self.min_refresh, 5)
            if stale and may_retry:
                loaded_now = await self._load(source, entry)
            if entry.fetched_at is None:
                raise KeySetUnavailable(source)
            key = entry.keys.get(kid)
            if key is not None or loaded_now:
                return key
            if entry.last_refresh is not None and now - entry.last_refresh < self.min_refresh:
                return None
            entry.last_refresh = now
            await self._load(source, entry)
            return entry.keys.get(kid)

    async def _load(self, source: str, entry: _Entry) -> bool:
        """Replace the entry's keys from the source; False (old keys kept) when that fails."""
        entry.last_attempt = self.clock()
        try:
            keys = parse_jwks(await self._read(source), self.refuse_public)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.warning(
                "JWK Set could not be loaded; keeping the previous one",
                extra={"fields": {"source": source, "problem": type(exc).__name__, "detail": str(exc)[:200]}},
            )
            return False
        entry.keys = keys
        entry.fetched_at = self.clock()
        log.info("JWK Set loaded", extra={"fields": {"source": source, "kids": sorted(keys)[:20]}})
        return True

    async def _read(self, source: str) -> Any:
        if source.startswith("file:"):
            data = await asyncio.to_thread(Path(source[5:]).read_bytes)
            if len(data) > self.max_bytes:
                raise ValueError("JWK Set larger than the size cap")
            return orjson.loads(data)
        if self._http is None:
            raise ValueError("JWK Set cache used before start()")
        async with self._http.stream("GET", source) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ValueError("JWK Set larger than the size cap")
        return orjson.loads(body)
