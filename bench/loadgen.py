"""The one load generator of the benchmark: closed-loop HTTP/1.1 keep-alive connections on asyncio.

Why not httpx, wrk or hey: httpx spends more CPU per request than the floor server does, so on a
2-core machine it would measure itself; wrk and hey are not installed everywhere CI runs. This
client pre-serialises each request once and then only writes bytes and parses a status line and a
``Content-Length`` (or chunked) body, which costs a few tens of microseconds per request, so one
core of load generation keeps a single-worker server on the other core saturated (the table prints
the generator's own CPU per call beside the server's to show it). Every row of the benchmark,
including the direct FHIR queries, goes through this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


def post_request(host: str, port: int, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    """A complete keep-alive POST, serialised once and replayed for every request."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def get_request(host: str, port: int, path_and_query: str, accept: str = "application/fhir+json") -> bytes:
    """A complete keep-alive GET (the direct FHIR queries)."""
    return f"GET {path_and_query} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: {accept}\r\n\r\n".encode("ascii")


@dataclass
class LoadResult:
    """Latencies (seconds) of the requests completed inside the measurement window."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0  # non-2xx answers and broken connections
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile in milliseconds (0 when nothing completed)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000


class _Stop(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code. Handles Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length > 0:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str,
    port: int,
    requests: Sequence[bytes],
    offset: int,
    start_measuring: float,
    deadline: float,
    budget: list[int] | None,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
    i = offset
    try:
        while True:
            if budget is not None:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            t0 = time.perf_counter()
            if t0 >= deadline:
                return
            writer.write(requests[i % len(requests)])
            i += 1
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                result.errors += 1
                result.first_error = result.first_error or f"connection: {type(exc).__name__}"
                writer.close()
                reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
                continue
            t1 = time.perf_counter()
            if not 200 <= status < 300:
                result.errors += 1
                result.first_error = result.first_error or f"HTTP {status}"
            elif t0 >= start_measuring:
                result.latencies.append(t1 - t0)
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    duration: float,
    warmup: float = 0.0,
    total: int | None = None,
) -> LoadResult:
    """Keep ``connections`` requests in flight for ``warmup + duration`` seconds (or until ``total``
    requests were sent); requests cycle through ``requests``. Only requests that *start* after the
    warm-up are measured, and the window ends when the last measured request finishes."""
    result = LoadResult()
    now = time.perf_counter()
    start_measuring = now + warmup
    deadline = start_measuring + duration
    budget = [total] if total is not None else None
    await asyncio.gather(
        *(
            _worker(host, port, requests, i, start_measuring, deadline, budget, result)
            for i in range(connections)
        )
    )
    result.elapsed = time.perf_counter() - max(start_measuring, now)
    return result


async def run_bursts(host: str, port: int, requests: Sequence[bytes], duration: float) -> LoadResult:
    """Send all ``requests`` at once over one keep-alive connection each, wait for every answer,
    repeat for ``duration`` seconds; each latency is one whole burst. This is what a service that
    fetches its prefetch queries in parallel waits for at best."""
    result = LoadResult()
    conns = [await asyncio.open_connection(host, port, limit=1 << 24) for _ in requests]
    started = time.perf_counter()
    deadline = started + duration
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for (_, writer), request in zip(conns, requests, strict=True):
                writer.write(request)
            statuses = await asyncio.gather(*(_read_response(reader) for reader, _ in conns))
            bad = [s for s in statuses if not 200 <= s < 300]
            if bad:
                result.errors += 1
                result.first_error = result.first_error or f"HTTP {bad[0]}"
            else:
                result.latencies.append(time.perf_counter() - t0)
    finally:
        for _, writer in conns:
            writer.close()
    result.elapsed = time.perf_counter() - started
    return result


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as the servers use), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
