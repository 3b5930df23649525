"""A deliberately non-conformant CDS service, for the conformance checker's negative test.

It is a plain FastAPI app of the kind people write in an afternoon, with the mistakes the checker
must catch, each on purpose:

* the card summary is 150 characters (6.1: < 140);
* ``links`` is ``null`` (1.3: no nulls);
* the card has suggestions but no ``selectionBehavior`` (cds-resp-6), like the Sandbox's demo services;
* it reads ``prefetch.patient`` without checking it is there, so a call without prefetch or with a
  ``null`` value crashes (500) instead of answering 412 (4.3.2) or 200 (4.2);
* it validates nothing: a request without ``hook`` or ``context`` gets cards, bad JSON a 500;
* no CORS middleware, FastAPI's default trailing-slash redirect, no feedback endpoint, and
  FastAPI's own ``{"detail": ...}`` error bodies.

Run it with ``run_broken_service()``: a real uvicorn process on a free loopback port.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.servers import ROOT, free_port, stop, wait_http

app = FastAPI()

DISCOVERY = {
    "services": [
        {
            "hook": "patient-view",
            "id": "broken",
            "title": "Broken on purpose",
            "description": "A service with the mistakes the conformance checker must find",
            "prefetch": {"patient": "Patient/{{context.patientId}}"},
        }
    ]
}


@app.get("/cds-services")
async def discovery() -> dict[str, Any]:
    return DISCOVERY


@app.post("/cds-services/{service_id}")
async def call(service_id: str, request: Request) -> JSONResponse:
    if service_id != "broken":
        return JSONResponse({"detail": "unknown service"}, status_code=404)
    body = await request.json()
    patient = body["prefetch"]["patient"]["id"]  # the bug: prefetch assumed present and non-null
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": ("Patient " + str(patient) + ": " + "x" * 150)[:150],
        "indicator": "info",
        "source": {"label": "Broken service"},
        "links": None,
        "suggestions": [
            {
                "label": "Order a test",
                "uuid": str(uuid.uuid4()),
                "actions": [
                    {
                        "type": "create",
                        "description": "Create a ServiceRequest",
                        "resource": {
                            "resourceType": "ServiceRequest",
                            "status": "draft",
                            "intent": "proposal",
                            "code": {"text": "a test"},
                            "subject": {"reference": f"Patient/{patient}"},
                        },
                    }
                ],
            }
        ],
    }
    return JSONResponse({"cards": [card]})


@contextlib.contextmanager
def run_broken_service() -> Iterator[str]:
    """Start the app with uvicorn on a free port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.support.broken_service:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/cds-services", proc)
        yield base
    finally:
        stop(proc)
