"""Liveness, readiness and graceful shutdown of the real server process.

Readiness must follow the real dependencies: a database that does not answer, a schema behind the
migration head, a Redis that does not answer each take the replica out of rotation (503) while
liveness stays 200. Graceful shutdown must let a request that is in flight at SIGTERM finish.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.conftest import PROBE_ENV, REDIS_URL
from tests.support.client import hook_body
from tests.support.servers import ROOT, free_port, redis_or_unavailable, run_cds_server

pytestmark = pytest.mark.e2e


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    full.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "cds_service", *args], env=full, capture_output=True, text=True, timeout=120
    )


def test_ready_on_migrated_sqlite_and_healthcheck_cli() -> None:
    with run_cds_server(PROBE_ENV) as s:
        assert httpx.get(s.url("/healthz")).json() == {"status": "ok"}
        r = httpx.get(s.url("/readyz"))
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "database": "up", "migrations": "current"}
        port = s.env["CDS_PORT"]
        assert cli("healthcheck", env={"CDS_PORT": port}).returncode == 0
        assert cli("healthcheck", "--ready", env={"CDS_PORT": port}).returncode == 0
    closed = cli("healthcheck", "--timeout", "2", env={"CDS_PORT": str(free_port())})
    assert closed.returncode == 1 and "healthcheck:" in closed.stderr


def test_not_ready_when_database_unreachable() -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    env = dict(PROBE_ENV, CDS_DATABASE_URL=dead, CDS_AUTO_MIGRATE="false", CDS_READINESS_TIMEOUT_SECONDS="2")
    with run_cds_server(env) as s:
        assert httpx.get(s.url("/healthz")).status_code == 200  # alive: no restart for a DB outage
        r = httpx.get(s.url("/readyz"), timeout=15)
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "database": "down", "migrations": "unknown"}
        assert "127.0.0.1" not in r.text and "postgres" not in r.text


@pytest.mark.postgres
def test_ready_only_at_migration_head_on_postgres(postgres_url: str) -> None:
    env = dict(PROBE_ENV, CDS_DATABASE_URL=postgres_url, CDS_AUTO_MIGRATE="false")
    with run_cds_server(env) as s:
        r = httpx.get(s.url("/readyz"))
        assert r.status_code == 503 and r.json()["migrations"] == "not applied"
        assert r.json()["database"] == "up"
        assert cli("migrate", "up", env={"CDS_DATABASE_URL": postgres_url}).returncode == 0
        r = httpx.get(s.url("/readyz"))
        assert r.status_code == 200 and r.json()["migrations"] == "current"
        assert cli("migrate", "down", env={"CDS_DATABASE_URL": postgres_url}).returncode == 0
        r = httpx.get(s.url("/readyz"))
        assert r.status_code == 503 and r.json()["migrations"] == "not applied"


@pytest.mark.postgres
def test_replicas_migrating_at_once_queue_on_a_lock(postgres_url: str) -> None:
    """Three init containers starting together: all succeed, the schema ends at head."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    full.update(CDS_DATABASE_URL=postgres_url, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cds_service", "migrate", "up"],
            env=full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    with run_cds_server(dict(PROBE_ENV, CDS_DATABASE_URL=postgres_url, CDS_AUTO_MIGRATE="false")) as s:
        assert httpx.get(s.url("/readyz")).json()["migrations"] == "current"


@pytest.mark.redis
def test_readiness_checks_redis_when_configured() -> None:
    url = redis_or_unavailable(REDIS_URL)
    with run_cds_server(dict(PROBE_ENV, CDS_REDIS_URL=url)) as s:
        r = httpx.get(s.url("/readyz"))
        assert r.status_code == 200 and r.json()["redis"] == "up"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with run_cds_server(dict(PROBE_ENV, CDS_REDIS_URL=dead, CDS_READINESS_TIMEOUT_SECONDS="2")) as s:
        r = httpx.get(s.url("/readyz"), timeout=15)
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "database": "up", "migrations": "current", "redis": "down"}


class HeldFhirServer:
    """A FHIR server that answers only when the test says so: it holds a CDS request in flight
    for as long as needed, without relying on timing."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                held.arrived.set()
                held.release.wait(60)
                if self.path.startswith("/fhir/Patient/"):
                    body: dict[str, object] = {"resourceType": "Patient", "id": self.path.rsplit("/", 1)[1]}
                else:
                    body = {"resourceType": "Bundle", "type": "searchset", "entry": []}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HeldFhirServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.fixture
def held_fhir() -> Iterator[HeldFhirServer]:
    with HeldFhirServer() as server:
        yield server


def test_sigterm_lets_the_request_in_flight_finish(held_fhir: HeldFhirServer) -> None:
    env = dict(PROBE_ENV, CDS_PREFETCH_DEADLINE_SECONDS="30", CDS_SHUTDOWN_GRACE_SECONDS="30")
    with run_cds_server(env) as s, ThreadPoolExecutor(1) as pool:
        body = hook_body(patient="pt-graceful", fhir_server=held_fhir.base)
        pending = pool.submit(httpx.post, s.url("/cds-services/probe"), json=body, timeout=60)
        assert held_fhir.arrived.wait(30), "the CDS service never asked the FHIR server"
        s.send_signal(signal.SIGTERM)
        port = int(s.env["CDS_PORT"])
        for _ in range(200):  # shutting down: the listening socket closes first
            if refuses_connections(port):
                break
            threading.Event().wait(0.1)
        assert refuses_connections(port), "server kept accepting connections after SIGTERM"
        assert s.proc.poll() is None, "server exited with a request in flight"
        held_fhir.release.set()
        response = pending.result(timeout=60)
        assert response.status_code == 200
        assert "patient=fetched:1" in response.json()["cards"][0]["detail"]
        # uvicorn re-raises the signal once drained, so a supervisor sees "ended by SIGTERM"
        assert s.proc.wait(30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in s.logs()
