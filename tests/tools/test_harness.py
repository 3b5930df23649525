"""The shared process harness (``cds_tools/harness.py``), as the tests, the benchmark and the load
test use it: free ports, waiting for HTTP, stopping, and the three programs it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_a_server_that_stops_by_itself_leaves_its_log_and_says_where() -> None:
    """A signal the harness did not send (or a worker that died) while a test used the server:
    the log outlives the temporary directory and a warning names it (CI showed such failures
    without any log)."""
    import signal as signals

    def stray_signal() -> None:
        with harness.run_cds_server() as server:
            server.proc.send_signal(signals.SIGTERM)  # behind the harness: as a stray signal would
            server.proc.wait(30)

    with pytest.warns(UserWarning, match="log kept at") as caught:
        stray_signal()
    kept = str(caught[0].message).split("log kept at ")[1].split(";")[0]
    assert Path(kept).is_file()
    Path(kept).unlink()
