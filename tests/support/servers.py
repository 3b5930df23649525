"""Real processes for end-to-end tests: the CDS service itself and SEKMET FHIR servers.

Tests that need something absent on a developer's machine skip with a clear reason, but when
``CDS_TEST_REQUIRE_ALL=1`` (``.ci/run`` sets it) the same absence is a failure, so CI always runs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class CdsServer:
    """A running ``cds-fasciculation serve`` process."""

    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "") -> str:
        return self.base + path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def run_cds_server(
    env: dict[str, str] | None = None, workdir: Path | None = None, port: int | None = None
) -> Iterator[CdsServer]:
    """Start the real service on a free port (or ``port``, when a test must know its URL in
    advance, e.g. for CDS_PUBLIC_BASE_URL) with the given CDS_* settings."""
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="cds-e2e-"))
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("CDS_") or k == "CDS_TEST_REQUIRE_ALL"
    }
    full_env.update(
        {
            "CDS_PORT": str(port),
            "CDS_HOST": "127.0.0.1",
            "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/cds.db",
            "PYTHONPATH": str(ROOT),
        }
    )
    full_env.update(env or {})
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cds_service", "serve"],
            cwd=str(workdir or tmp),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(base + "/healthz", proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{log_path.read_text(errors='replace')}") from None
        yield CdsServer(base, proc, log_path, full_env)
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class FhirServer:
    base: str
    token: str | None
    proc: subprocess.Popen[bytes]

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; raise if any entry failed."""
        r = httpx.post(self.base, json=bundle, headers=self.headers(), timeout=60)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body


def sekmet_binary() -> str | None:
    exe = Path(sys.executable).parent / "sekmet"
    if exe.exists():
        return str(exe)
    return shutil.which("sekmet")


@contextlib.contextmanager
def run_sekmet(token: str | None = None) -> Iterator[FhirServer]:
    """A fresh SEKMET FHIR R4 server in its own directory (bearer-protected when ``token`` is set)."""
    exe = sekmet_binary()
    if exe is None:
        unavailable("SEKMET FHIR server not installed (pip install sekmet-fhir==0.1.1)")
        raise AssertionError("unreachable")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sekmet-"))
    base = f"http://127.0.0.1:{port}/fhir"
    lines = [
        f"base_url: {base}",
        "host: 127.0.0.1",
        f"port: {port}",
        "data_dir: data",
        "simulator: {enabled: false}",
        "log_inbound: false",
    ]
    if token:
        lines += ["server_auth:", '  types: ["bearer"]', f'  tokens: ["{token}"]']
    (work / "settings.yaml").write_text("\n".join(lines) + "\n")
    log = (work / "sekmet.log").open("wb")
    proc = subprocess.Popen(
        [exe, "serve", "-c", "settings.yaml"], cwd=work, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_http(base + "/metadata", proc, timeout=60)
        yield FhirServer(base, token, proc)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
