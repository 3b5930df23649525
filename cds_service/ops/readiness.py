"""Readiness: may this process take traffic now?

A replica is ready when everything a CDS call needs answers: the database (issued cards and
feedback are written on every call), the schema at the migration head this code was built for (an
older schema would make those writes fail), and Redis when one is configured (the JWT replay cache
fails closed without it). Each check has its own short timeout, so an unreachable dependency makes
``/readyz`` answer 503 quickly instead of hanging the orchestrator's probe. Liveness (``/healthz``)
deliberately checks none of this: a database outage must take replicas out of the load balancer,
not make Kubernetes restart them all.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cds_service.storage import db

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("cds.health")


@lru_cache(maxsize=1)
def migration_heads() -> frozenset[str]:
    """The Alembic head revision(s) shipped with this code (read once from the package)."""
    return db.migration_heads()


class Readiness:
    """The dependency checks of one process; the Redis client is created inside the event loop."""

    def __init__(self, engine: AsyncEngine, redis_url: str | None, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self.redis: aioredis.Redis | None = None
        if redis_url:
            import redis.asyncio as aioredis  # only when configured: ~6 MB per worker otherwise

            self.redis = aioredis.Redis.from_url(
                redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
            )

    async def _schema_revisions(self) -> set[str]:
        async with self.engine.connect() as conn:
            has_table = await conn.run_sync(
                lambda c: c.dialect.has_table(c, "alembic_version")  # works on SQLite and Postgres
            )
            if not has_table:
                return set()
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return {str(r[0]) for r in rows}

    async def check(self) -> tuple[bool, dict[str, str]]:
        """(ready, per-dependency state); states are short words, never error text or URLs."""
        report: dict[str, str] = {}
        try:
            revisions = await asyncio.wait_for(self._schema_revisions(), self.timeout)
        except Exception as exc:  # unreachable, auth, timeout: all mean "not ready"
            log.warning("readiness: database unreachable", extra={"fields": {"error": type(exc).__name__}})
            report["database"] = "down"
            report["migrations"] = "unknown"
        else:
            report["database"] = "up"
            report["migrations"] = "current" if revisions == set(migration_heads()) else "not applied"
            if report["migrations"] != "current":
                log.warning("readiness: database schema is not at the migration head")
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.ping(), self.timeout)
                report["redis"] = "up"
            except Exception as exc:
                log.warning("readiness: Redis unreachable", extra={"fields": {"error": type(exc).__name__}})
                report["redis"] = "down"
        ready = report["database"] == "up" and report["migrations"] == "current" and report.get("redis") != "down"
        return ready, report

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
