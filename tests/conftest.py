"""Shared fixtures: real SEKMET FHIR servers (open and bearer-protected), Postgres databases,
and the probe-service environment used by the core tests."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.servers import FHIR_TOKEN, FhirServer, run_sekmet, unavailable

PG_ADMIN_URL = os.environ.get("CDS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CDS_TEST_REDIS", "redis://127.0.0.1:6379/0")

PROBE_ENV = {"CDS_SERVICE_MODULES": '["tests.support.probe_service"]'}


@pytest.fixture(scope="session")
def fhir_open() -> Iterator[FhirServer]:
    """An open SEKMET FHIR R4 server (as the public Sandbox would use)."""
    with run_sekmet() as server:
        yield server


@pytest.fixture(scope="session")
def fhir_bearer() -> Iterator[FhirServer]:
    """A SEKMET server that demands ``Authorization: Bearer test-access-token-123``."""
    with run_sekmet(token=FHIR_TOKEN) as server:
        yield server


async def _pg(sql: str, db_url: str = PG_ADMIN_URL) -> None:
    import asyncpg

    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database (dropped afterwards) as an async SQLAlchemy URL."""
    name = f"cds_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # connection refused, auth, missing driver
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    host_part = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{host_part}/{name}"
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
