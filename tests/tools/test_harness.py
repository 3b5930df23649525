"""The shared process harness (``cds_tools/harness.py``), as the tests, the benchmark and the load
test use it: free ports, waiting for HTTP, stopping, and the three programs it starts."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from cds_tools import harness
from tests.support.servers import FhirServer, run_cds_server, run_launcher


def test_wait_http_reports_a_process_that_exits_first() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="exited with 3"):
        harness.wait_http(f"http://127.0.0.1:{harness.free_port()}/", proc, timeout=10)


def test_stop_ends_a_process_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    harness.stop(proc, grace=0.5)
    assert proc.returncode == -9


@pytest.mark.e2e
def test_the_service_starts_and_stops() -> None:
    with run_cds_server() as server:
        assert httpx.get(server.url("/healthz")).json() == {"status": "ok"}
        proc = server.proc
    assert proc.returncode is not None  # stopped on leaving the block


@pytest.mark.e2e
@pytest.mark.node
def test_the_smart_launcher_proxies_sekmet(fhir_open: FhirServer) -> None:
    with run_launcher(fhir_open.base) as launcher:
        config = httpx.get(launcher.fhir_base + "/.well-known/smart-configuration", timeout=10).json()
        assert config["token_endpoint"].startswith(launcher.base)
        meta = httpx.get(launcher.fhir_base + "/metadata", headers={"Accept": "application/fhir+json"}, timeout=30)
        assert meta.json()["resourceType"] == "CapabilityStatement"
        proc = launcher.proc
    assert proc.returncode is not None
