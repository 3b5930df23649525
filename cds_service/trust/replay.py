"""``jti`` replay cache: each client JWT is accepted once.

A ``jti`` is remembered until its token expires (plus clock skew); after that the token is refused
for being expired anyway. In-process memory is enough for one process. Several replicas (or
uvicorn workers) must share the cache, or a captured token could be replayed against a sibling:
with ``CDS_REDIS_URL`` set the cache lives in Redis, using ``SET NX EX`` so "check and remember" is
one atomic step across all replicas.

Keys are a hash of ``iss`` and ``jti``: two clients may pick the same ``jti``, and the cache never
holds the raw values. Any failure of the cache refuses the call (fail closed).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError


class ReplayCacheUnavailable(Exception):
    """The cache cannot answer (Redis down, memory cache full); the call must not proceed."""


class ReplayCache(Protocol):
    async def first_use(self, iss: str, jti: str, ttl_seconds: float) -> bool:
        """True the first time (iss, jti) is seen within its lifetime, False for a replay."""
        ...

    async def close(self) -> None: ...


def replay_key(iss: str, jti: str) -> str:
    return hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()[:40]


class MemoryReplayCache:
    """Single-process cache with expiry; bounded so a flood of tokens cannot exhaust memory."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._seen: dict[str, float] = {}
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
        self._next_sweep = now + 30

    async def first_use(self, iss: str, jti: str, ttl_seconds: float) -> bool:
        now = self.clock()
        key = replay_key(iss, jti)
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        if now >= self._next_sweep or len(self._seen) >= self.max_entries:
            self._sweep(now)
        if len(self._seen) >= self.max_entries:
            # Forgetting a live jti would re-open replays; refusing is the safe side.
            raise ReplayCacheUnavailable("in-memory replay cache is full")
        self._seen[key] = now + max(ttl_seconds, 1.0)
        return True

    async def close(self) -> None:
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)


class RedisReplayCache:
    """Shared cache for several replicas: one atomic ``SET key 1 NX EX ttl`` per token."""

    def __init__(self, url: str, timeout: float, prefix: str = "cds:jti:") -> None:
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )

    async def first_use(self, iss: str, jti: str, ttl_seconds: float) -> bool:
        try:
            stored = await self._redis.set(
                self.prefix + replay_key(iss, jti), b"1", nx=True, ex=max(int(ttl_seconds + 0.999), 1)
            )
        except (RedisError, OSError) as exc:
            raise ReplayCacheUnavailable(f"Redis: {type(exc).__name__}") from None
        return bool(stored)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
