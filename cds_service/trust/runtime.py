"""The per-process trust machinery, built once at start-up from the settings.

Building it reads and checks the whole trust configuration, so a production process with no
trusted issuer, a dev-only issuer, or no public base URL refuses to start (``TrustConfigError``)
instead of running half-protected. Network clients (JWK Set fetcher, Redis) open in ``start()``,
inside the server's event loop.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import Scope

from cds_service.data.tls import client_tls_context
from cds_service.ops.audit import AuditTrail
from cds_service.settings import Settings
from cds_service.storage.repo import Store
from cds_service.trust.client_jwt import AuthFailure, ClientIdentity, TokenVerifier
from cds_service.trust.config import load_issuers
from cds_service.trust.jwks import JwksCache
from cds_service.trust.metrics import AUTH_SUCCESSES, Reason
from cds_service.trust.replay import MemoryReplayCache, RedisReplayCache, ReplayCache

log = logging.getLogger("cds.trust")


class _LazyReplay:
    """Defers creating the Redis client to ``start()`` (it binds to the running event loop)."""

    def __init__(self) -> None:
        self.inner: ReplayCache | None = None

    async def first_use(self, iss: str, jti: str, ttl_seconds: float, issued_at: float = 0.0) -> bool:
        assert self.inner is not None, "TrustRuntime.start() was not called"
        return await self.inner.first_use(iss, jti, ttl_seconds, issued_at)

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()


class TrustRuntime:
    """Issuers, caches, verifier and audit trail of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.issuers = load_issuers(settings)
        self.required = settings.jwt_required
        self.keys = JwksCache(
            ttl=settings.jwks_cache_seconds,
            min_refresh=settings.jwks_min_refresh_seconds,
            timeout=settings.jwks_timeout_seconds,
            refuse_public=settings.profile == "production",
            verify=client_tls_context(settings),
        )
        self.replay = _LazyReplay()
        self.verifier = TokenVerifier(
            self.issuers,
            self.keys,
            self.replay,
            algorithms=tuple(settings.jwt_algorithms),
            skew=settings.jwt_clock_skew_seconds,
            max_age=settings.jwt_max_age_seconds,
        )
        self.audit = AuditTrail(settings.audit_to_database)
        self._warned_ignored = False

    async def start(self, store: Store | None) -> None:
        await self.keys.start()
        s = self.settings
        if s.redis_url:
            lifetime = s.jwt_max_age_seconds + 2 * s.jwt_clock_skew_seconds  # as TokenVerifier's ttl cap
            redis_cache = RedisReplayCache(s.redis_url, s.redis_timeout_seconds, lifetime)
            if not await redis_cache.ping():
                log.warning("Redis replay cache not reachable now; client calls will get 503 until it is")
            await redis_cache.ensure_epoch()
            self.replay.inner = redis_cache
        else:
            self.replay.inner = MemoryReplayCache(self.settings.replay_cache_max_entries)
        self.audit.store = store
        log.info(
            "client trust configured",
            extra={
                "fields": {
                    "jwt_required": self.required,
                    "issuers": sorted(self.issuers),
                    "replay_cache": "redis" if self.settings.redis_url else "memory",
                }
            },
        )

    async def close(self) -> None:
        await self.keys.close()
        await self.replay.close()

    def audience(self, scope: Scope) -> str:
        """The URL the client called, as it must appear in ``aud``.

        Behind a proxy only ``CDS_PUBLIC_BASE_URL`` is trustworthy (the production profile demands
        it); in dev without it, the request's scheme and Host header stand in.
        """
        base = self.settings.public_base_url
        if not base:
            host = Headers(scope=scope).get("host") or "localhost"
            base = f"{scope.get('scheme', 'http')}://{host}"
        path: str = scope["path"]
        return base.rstrip("/") + path

    async def authenticate(self, scope: Scope) -> ClientIdentity | None:
        """The verified client; None when the dev profile lets an unauthenticated call through."""
        values = Headers(scope=scope).getlist("authorization")
        if len(values) > 1:  # which one counts is ambiguous (proxies and frameworks disagree)
            raise AuthFailure(Reason.DUPLICATE_AUTHORIZATION)
        header = values[0] if values else None
        token: str | None = None
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
            elif self.required:
                raise AuthFailure(Reason.NOT_BEARER)
        if token is None:
            if self.required:
                raise AuthFailure(Reason.NO_TOKEN)
            return None
        if not self.issuers and not self.required:
            if not self._warned_ignored:
                log.warning("client JWT ignored: no trusted issuers configured (dev profile)")
                self._warned_ignored = True
            return None
        client = await self.verifier.verify(token, self.audience(scope))
        AUTH_SUCCESSES.inc()
        return client
