"""SIGTERM with several workers (cds_service/serving.py): a call in flight is answered, and new
connections are refused at once instead of being queued behind the drain and reset when the
supervisor exits. The real server process, two workers, a call held in flight by a FHIR server that
accepts connections and never answers (the service waits for its prefetch deadline)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ROOT, run_cds_server

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def black_hole() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that accepts and never answers; the event is set once a connection came in."""
    srv = socket.create_server(("127.0.0.1", 0))
    got = threading.Event()
    held: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)
            got.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], got
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        srv.close()


def test_sigterm_answers_the_call_in_flight_and_refuses_new_connections(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/cds.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    migrated = subprocess.run([sys.executable, "-m", "cds_service", "migrate", "up"], capture_output=True,
                              text=True, env={**env, "CDS_DATABASE_URL": db, "PYTHONPATH": str(ROOT)},
                              cwd=tmp_path, timeout=120, check=False)
    assert migrated.returncode == 0, migrated.stderr
    settings = {"CDS_WORKERS": "2", "CDS_DATABASE_URL": db, "CDS_PREFETCH_DEADLINE_SECONDS": "4"}
    with black_hole() as (fhir_port, fetching), run_cds_server(settings) as server:
        port = int(server.base.rsplit(":", 1)[1])
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": f"http://127.0.0.1:{fhir_port}/fhir",
            "context": {"userId": "Practitioner/dr-1", "patientId": "pt-1"},
        }
        answer: list[int | str] = []

        def in_flight() -> None:
            try:
                answer.append(httpx.post(server.url("/cds-services/fasciculation-workup"), json=body,
                                         timeout=30).status_code)
            except httpx.HTTPError as exc:
                answer.append(type(exc).__name__)

        caller = threading.Thread(target=in_flight)
        caller.start()
        assert fetching.wait(20), "the call never reached the FHIR server"
        server.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the supervisor looks at its signals every 0.5 s
        refused, other = False, None
        try:
            socket.create_connection(("127.0.0.1", port), 2).close()
        except ConnectionRefusedError:
            refused = True
        except OSError as exc:
            other = exc
        caller.join(timeout=30)
        assert refused, f"a new connection during the drain was not refused ({other or 'accepted into the backlog'})"
        assert answer and isinstance(answer[0], int) and answer[0] < 500, answer
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
