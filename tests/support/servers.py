"""Real processes for end-to-end tests: the CDS service itself, SEKMET FHIR servers and the SMART
App Launcher, started by the shared harness (``cds_tools/harness.py``, also used by ``bench/`` and
``load/``).

Tests that need something absent on a developer's machine skip with a clear reason, but when
``CDS_TEST_REQUIRE_ALL=1`` (``.ci/run`` sets it) the same absence is a failure, so CI always runs them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_tools import harness
from cds_tools.harness import CdsServer, FhirServer, Launcher, free_port, sekmet_binary, stop, wait_http

__all__ = [
    "FHIR_TOKEN",
    "REQUIRE_ALL",
    "ROOT",
    "CdsServer",
    "FhirServer",
    "Launcher",
    "free_port",
    "redis_or_unavailable",
    "run_cds_server",
    "run_launcher",
    "run_sekmet",
    "sekmet_binary",
    "stop",
    "unavailable",
    "wait_http",
]

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_ALL = os.environ.get("CDS_TEST_REQUIRE_ALL") == "1"
FHIR_TOKEN = "test-access-token-123"


def unavailable(reason: str) -> None:
    """Skip, or fail when CI demands every real part."""
    if REQUIRE_ALL:
        pytest.fail(f"required test dependency unavailable (CDS_TEST_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)


def redis_or_unavailable(url: str) -> str:
    """``url`` if a Redis server answers PING there; otherwise skip (or fail under CI)."""
    import asyncio

    import redis.asyncio as aioredis

    async def ping() -> bool:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            await client.aclose()

    if not asyncio.run(ping()):
        unavailable(f"Redis not reachable at {url}")
    return url


@contextlib.contextmanager
def run_cds_server(
    env: dict[str, str] | None = None, workdir: Path | None = None, port: int | None = None
) -> Iterator[CdsServer]:
    """The real service on a free port (or ``port``) with the given CDS_* settings; the repository
    is on the server's PYTHONPATH so ``CDS_SERVICE_MODULES`` may name the test topics in tests/support."""
    with harness.run_cds_server({"PYTHONPATH": str(ROOT), **(env or {})}, workdir, port=port) as server:
        yield server


@contextlib.contextmanager
def run_sekmet(token: str | None = None) -> Iterator[FhirServer]:
    """A fresh SEKMET FHIR R4 server in its own directory (bearer-protected when ``token`` is set)."""
    if sekmet_binary() is None:
        unavailable("SEKMET FHIR server not installed (pip install sekmet-fhir==0.1.1)")
    with harness.run_sekmet(token) as server:
        yield server


@contextlib.contextmanager
def run_launcher(fhir: str, token_minutes: float | None = None) -> Iterator[Launcher]:
    """The SMART App Launcher in front of ``fhir`` (skips, or fails under CI, when it or Node is absent)."""
    problem = harness.launcher_problem()
    if problem is not None:
        unavailable(problem)
    with harness.run_launcher(fhir, token_minutes) as launcher:
        yield launcher
