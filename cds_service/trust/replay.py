"""``jti`` replay cache: each client JWT is accepted once.

A ``jti`` is remembered until its token expires (plus clock skew); after that the token is refused
for being expired anyway. In-process memory is enough for one process. Several replicas (or
uvicorn workers) must share the cache, or a captured token could be replayed against a sibling:
with ``CDS_REDIS_URL`` set the cache lives in Redis, using ``SET NX EX`` so "check and remember" is
one atomic step across all replicas.

Keys are a hash of ``iss`` and ``jti``: two clients may pick the same ``jti``, and the cache never
holds the raw values. Any failure of the cache refuses the call (fail closed).

Redis can forget: a restart without persistence, a ``FLUSHALL``, a failover to a replica that had
not received the latest keys. A token used before would then be accepted again (issue 16). So the
cache does not rely on persistence: an *epoch* key holds the (Redis) time the current memory
began. When the epoch key is missing, the memory is new and nothing is known about tokens issued
before it; for one maximum token lifetime after the new epoch, only tokens issued (``iat``) at or
after the epoch are accepted, the others are refused as possible replays. After that window every
token issued before the epoch has expired anyway. ``iat`` has whole seconds, so the residue is a
token issued in the same second as the loss and used before it (under one second). The epoch is
also set when a process starts, so a fresh Redis does not refuse tokens that were just minted. Clients sign a fresh token for every call, so the
price is a refusal of the few tokens that were in flight at the moment Redis lost its memory.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol


class IssuedBeforeEpoch(Exception):
    """The replay memory is younger than the token: it may have been used already; refuse it."""


class ReplayCacheUnavailable(Exception):
    """The cache cannot answer (Redis down, memory cache full); the call must not proceed."""


class ReplayCache(Protocol):
    async def first_use(self, iss: str, jti: str, ttl_seconds: float, issued_at: float = 0.0) -> bool:
        """True the first time (iss, jti) is seen within its lifetime, False for a replay (or, for
        the Redis cache, a token issued before a loss of its memory, see the module docstring)."""
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

    async def first_use(self, iss: str, jti: str, ttl_seconds: float, issued_at: float = 0.0) -> bool:
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


# One atomic step: read (or start) the epoch, refuse a token issued before a recent epoch, else
# remember the jti with SET NX EX. Returns 1 (first use), 0 (replay), -1 (issued before the epoch).
# The epoch is Redis' own clock in whole seconds, so every replica sees the same value.
_FIRST_USE = """
local now = tonumber(redis.call('TIME')[1])
local epoch = tonumber(redis.call('GET', KEYS[2]))
if not epoch then
  epoch = now
  redis.call('SET', KEYS[2], epoch)
end
if now < epoch + tonumber(ARGV[3]) and tonumber(ARGV[2]) < epoch then
  return -1
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
"""


class RedisReplayCache:
    """Shared cache for several replicas: one atomic script per token (epoch check + ``SET NX EX``)."""

    def __init__(self, url: str, timeout: float, max_lifetime: float, prefix: str = "cds:jti:") -> None:
        self.prefix = prefix
        self.epoch_key = prefix + "epoch"
        self.max_lifetime = max_lifetime  # longest a token can be valid: the epoch's guard window
        # Imported only when a Redis is configured: ~6 MB of resident memory per worker otherwise.
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._script = self._redis.register_script(_FIRST_USE)

    async def first_use(self, iss: str, jti: str, ttl_seconds: float, issued_at: float = 0.0) -> bool:
        try:
            result = await self._script(
                keys=[self.prefix + replay_key(iss, jti), self.epoch_key],
                args=[max(int(ttl_seconds + 0.999), 1), int(issued_at), int(self.max_lifetime + 0.999)],
            )
        except self._errors as exc:
            raise ReplayCacheUnavailable(f"Redis: {type(exc).__name__}") from None
        if int(result) == -1:
            raise IssuedBeforeEpoch()
        return int(result) == 1

    async def ensure_epoch(self) -> None:
        """Start the epoch now if there is none (fresh Redis); best effort, the script does it too."""
        try:
            now = int((await self._redis.time())[0])
            await self._redis.set(self.epoch_key, now, nx=True)
        except self._errors:
            pass

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except self._errors:
            return False

    async def close(self) -> None:
        await self._redis.aclose()
