"""Regression: the FHIR connection pool survives deadline expiries (found by load/loadtest.py).

The prefetch engine used to cancel the fetches still running at its deadline. A request interrupted
while it waits in httpx's pool for a connection just made for it (a cancellation, or the pool-wait
timeout, which httpcore implements as one) leaks that pool slot for good (httpcore 1.0.9,
encode/httpcore#1093); under a FHIR server that is slow part of the time the slots ran out within a
minute of the long load run, after which no request reached the FHIR server again and every call
without prefetch was a 412 until a restart. Now requests wait for a connection in the gatherer's own
semaphore, never in the pool, and a late fetch is left to end by its own timeouts
(``Gatherer._get`` and ``Gatherer._linger``).

Both tests use a real loopback HTTP server and the service's own client and gatherer; neither
asserts on time: the pool is judged by whether a request still gets through afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import httpx

from cds_service.data.gather import Gatherer, KeyState, build_fhir_client
from cds_service.data.prefetch import PrefetchSpec
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import HookRequest
from cds_service.settings import Settings

SPECS = tuple(
    PrefetchSpec(f"k{i}", f"Observation?patient={{{{context.patientId}}}}&n={i}", required=i < 2)
    for i in range(6)
)
BUNDLE = b'{"resourceType":"Bundle","type":"searchset"}'


@contextlib.asynccontextmanager
async def flaky_fhir(slow_fraction: float, reset_fraction: float) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback HTTP/1.1 server answering empty searchsets; some answers come after 2 s (past any
    deadline used here), some connections are reset. Yields its FHIR base and a log of outcomes."""
    rng = random.Random(5)  # noqa: S311 - a reproducible fault pattern, not cryptography
    outcomes: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while await reader.readline():
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                draw = rng.random()
                if draw < reset_fraction:
                    outcomes.append("reset")
                    writer.transport.abort()
                    return
                if draw < reset_fraction + slow_fraction:
                    outcomes.append("slow")
                    await asyncio.sleep(2.0)
                else:
                    outcomes.append("ok")
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: {len(BUNDLE)}\r\n\r\n"
                writer.write(head.encode() + BUNDLE)
                await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/fhir", outcomes
    finally:
        server.close()


def request(fhir: str) -> HookRequest:
    return HookRequest(
        hook="patient-view",
        hookInstance=str(uuid.uuid4()),
        context={"userId": "Practitioner/dr-1", "patientId": "pt-1"},
        fhirServer=fhir,
    )


async def churn_then_fetch() -> tuple[int, bool, int]:
    """Many concurrent calls against a small pool while a third of the answers miss the deadline;
    then the pool's orphans (connections neither idle nor closed once every request has ended: lost
    slots), and one call with a generous deadline against answers that are all prompt."""
    settings = Settings(prefetch_deadline_seconds=0.2, fhir_max_connections=8, allow_open_fhir_fetch=True)
    client = build_fhir_client(settings)
    gatherer = Gatherer(settings, client)
    try:
        async with flaky_fhir(slow_fraction=0.3, reset_fraction=0.1) as (fhir, outcomes):

            async def call() -> None:
                with contextlib.suppress(PreconditionFailed):
                    await gatherer.gather(SPECS, request(fhir))

            for _ in range(16):  # measured: the old engines lose 6 to 8 of the 8 slots in this churn
                await asyncio.gather(*(call() for _ in range(16)))
            broken = sum(1 for o in outcomes if o != "ok")
            while gatherer.lingering:  # late fetches end by their own timeouts
                await asyncio.sleep(0.05)
        # httpcore's pool, read directly: a lost slot shows as a connection that is neither idle
        # nor closed although no request is left (encode/httpcore#1093).
        pool = client._transport._pool  # type: ignore[attr-defined]
        orphans = sum(1 for c in pool.connections if not (c.is_idle() or c.is_closed()))
        async with flaky_fhir(slow_fraction=0.0, reset_fraction=0.0) as (fhir, _):
            patient = Settings(
                prefetch_deadline_seconds=20, fhir_max_connections=8, allow_open_fhir_fetch=True
            )
            data = await Gatherer(patient, client).gather(SPECS, request(fhir))
            return orphans, all(r.state is KeyState.FETCHED for r in data.keys.values()), broken
    finally:
        await client.aclose()


def test_pool_still_fetches_after_many_deadline_expiries() -> None:
    orphans, fetched, broken = asyncio.run(churn_then_fetch())
    assert broken > 20, "the churn must actually make fetches miss the deadline"
    assert orphans == 0, "slots of the FHIR connection pool were lost to interrupted requests"
    assert fetched, "the FHIR connection pool no longer gets a request through"


async def late_fetch_is_not_cancelled() -> tuple[str, int, int]:
    cancelled: list[bool] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.sleep(0.8)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        cancelled.append(False)
        return httpx.Response(200, content=BUNDLE)

    settings = Settings(prefetch_deadline_seconds=0.2, allow_open_fhir_fetch=True)
    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        gatherer = Gatherer(settings, client)
        try:
            await gatherer.gather(SPECS, request("http://127.0.0.1:9/fhir"))
            outcome = "answered"
        except PreconditionFailed as exc:
            outcome = exc.message
        lingering = len(gatherer.lingering)
        while gatherer.lingering:
            await asyncio.sleep(0.05)
    return outcome, lingering, cancelled.count(False) - cancelled.count(True)


def test_late_fetches_end_by_themselves_and_the_call_is_412() -> None:
    outcome, lingering, completed = asyncio.run(late_fetch_is_not_cancelled())
    assert "'k0'" in outcome and "did not answer within" in outcome
    assert lingering == len(SPECS), "every late fetch is left running, not cancelled"
    assert completed == len(SPECS), "each late request ran to its end"
