"""The floor: the least a CDS service written like ours can do per call.

FastAPI on uvicorn (one worker, the same command-line options as ``cds-fasciculation serve``)
receives the same body, parses it with the same JSON parser (orjson) and answers one fixed card.
Everything our service does beyond this (checks, data gathering, rules, rendering, storage) is what
the throughput ratios against this row measure.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

CARD = orjson.dumps(
    {
        "cards": [
            {
                "uuid": "0b9c7c1e-8e36-4d43-9d4a-7b3f0f1f2a10",
                "summary": "Fixed card",
                "indicator": "info",
                "source": {"label": "floor"},
            }
        ]
    }
)

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> Response:
    """Read and parse the whole body (as the service must), then answer the fixed card."""
    data = orjson.loads(await request.body())
    if not isinstance(data, dict):
        return Response(b'{"error":"not an object"}', status_code=400, media_type="application/json")
    return Response(CARD, media_type="application/json")


@app.post("/receive-only/{service_id}")
async def receive_only(service_id: str, request: Request) -> Response:
    """Read the whole body and answer the fixed card without parsing it: the part of every call
    that is the HTTP server's (uvicorn reading the socket, the ASGI body messages). No service
    that reads its request can use less CPU than this, so ``receive-only req/s / floor req/s`` is
    the highest ratio to the floor any such service could reach (docs/performance.md)."""
    await request.body()
    return Response(CARD, media_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    """Readiness probe for the benchmark runner."""
    return Response(b'{"status":"ok"}', media_type="application/json")
