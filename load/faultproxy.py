"""A fault-injecting HTTP/1.1 reverse proxy for a FHIR server, on loopback, that logs what it broke.

Put it between the CDS service and the FHIR server (SEKMET) to make the FHIR server slow or failing
for a configurable fraction of requests. Each request draws at most one fault:

* ``delay``: held for ``delay_seconds`` (set beyond the service's prefetch deadline), then answered;
* ``http500``: answered 500 with an OperationOutcome;
* ``reset``: the TCP connection is reset (RST) before any byte of the answer;
* ``badjson``: answered 200 with the real body cut in half (invalid JSON).

A further fraction is merely *slow* (a short random delay, still within the deadline): load, not a
fault. Everything else is forwarded unchanged except that absolute links of the FHIR server (Bundle
``link`` and ``fullUrl``) are rewritten to the proxy, as a reverse proxy does, so ``next`` pages come
back through it.

Attribution: the load script gives each hook call its own FHIR base URL,
``http://127.0.0.1:PORT/h/<tag>/fhir``, so every proxied request is logged with the hook call it
serves (``tag``), its path and query, the fault drawn, when it arrived and when its answer had been
written. That is what makes "412 only where required data was unavailable" checkable.

Standalone (manual testing, e.g. the public Sandbox against a flaky FHIR server):
``python load/faultproxy.py --upstream http://127.0.0.1:8090/fhir --port 8091 --fault-rate 0.3``
then use ``http://127.0.0.1:8091/h/manual/fhir`` as the FHIR server URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

FAULTS = ("delay", "http500", "reset", "badjson")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}


def require_loopback(url: str) -> None:
    """Refuse anything but loopback: the load and fault tools must never send traffic elsewhere."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"refusing non-loopback URL {url!r}: loopback only")


def base_url(port: int, tag: str) -> str:
    """The FHIR base URL whose requests the proxy on ``port`` attributes to ``tag``."""
    return f"http://127.0.0.1:{port}/h/{tag}/fhir"


@dataclass
class Entry:
    """One proxied request and what became of it (times are ``time.monotonic()``, which on Linux is
    one clock for every process, so the load script can compare them with its own)."""

    tag: str  # the hook call it belongs to (the /h/<tag>/ path segment)
    target: str  # path and query below the FHIR base, e.g. "Condition?patient=x&_count=200"
    fault: str | None  # one of FAULTS, or None
    slow: float  # seconds of non-fault delay added
    received: float  # time.monotonic() when the request line arrived
    done: float | None = None  # time.monotonic() when the whole answer was written (None: not written)
    upstream_status: int | None = None
    id: int = 0


def read_log(path: Path) -> list[Entry]:
    """The entries of a ``--log`` file: one "recv" line per request, a "done" line when answered."""
    entries: dict[int, Entry] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.pop("event") == "recv":
            entries[rec["id"]] = Entry(**rec)
        elif rec["id"] in entries:
            entries[rec["id"]].done = rec["done"]
            entries[rec["id"]].upstream_status = rec["upstream_status"]
    return list(entries.values())


@dataclass
class FaultProxy:
    upstream: str  # FHIR base of the real server, e.g. http://127.0.0.1:8090/fhir
    fault_rate: float = 0.2
    slow_rate: float = 0.1
    delay_seconds: float = 3.0
    slow_max_seconds: float = 0.3
    seed: int = 1
    port: int = 0
    log: list[Entry] = field(default_factory=list)
    log_file: IO[str] | None = None  # JSONL record of every request, written as it happens
    _server: asyncio.Server | None = None
    _client: httpx.AsyncClient | None = None
    _rng: random.Random = field(default_factory=random.Random)

    async def start(self) -> None:
        require_loopback(self.upstream)
        self._rng.seed(self.seed)
        self._client = httpx.AsyncClient(
            timeout=30.0,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            trust_env=False,
        )
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self._client is not None:
            await self._client.aclose()

    def base_for(self, tag: str) -> str:
        """The FHIR base URL a hook call tagged ``tag`` must use to be attributed."""
        return base_url(self.port, tag)

    def _record(self, entry: Entry, event: str) -> None:
        if self.log_file is None:
            return
        if event == "recv":
            line = {"event": "recv", **asdict(entry)}
        else:
            line = {
                "event": "done",
                "id": entry.id,
                "done": entry.done,
                "upstream_status": entry.upstream_status,
            }
        self.log_file.write(json.dumps(line) + "\n")
        self.log_file.flush()

    def _draw(self) -> tuple[str | None, float]:
        r = self._rng.random()
        if r < self.fault_rate:
            return self._rng.choice(FAULTS), 0.0
        if r < self.fault_rate + self.slow_rate:
            return None, self._rng.uniform(0.0, self.slow_max_seconds)
        return None, 0.0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: requests in turn (keep-alive) until it closes or we reset it."""
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                parts = line.decode("latin-1").split()
                if len(parts) != 3:
                    return
                keep = await self._answer(parts[0], parts[1], writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            return  # the proxy is closing while a request is held (a delay fault): end quietly
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _answer(self, method: str, target: str, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must not be used again."""
        received = time.monotonic()
        segments = target.split("/", 4)  # ['', 'h', tag, 'fhir', rest]
        if method != "GET" or len(segments) < 4 or segments[1] != "h" or segments[3].split("?")[0] != "fhir":
            await self._write(writer, 404, b'{"resourceType":"OperationOutcome"}')
            return True
        tag = segments[2]
        rest = segments[4] if len(segments) > 4 else ""
        fault, slow = self._draw()
        entry = Entry(tag, rest, fault, slow, received, id=len(self.log))
        self.log.append(entry)
        self._record(entry, "recv")  # the fault is on record even if the answer is never written
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "http500":
            body = b'{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception"}]}'
            await self._write(writer, 500, body)
            entry.done = time.monotonic()
            self._record(entry, "done")
            return True
        if fault == "delay":
            await asyncio.sleep(self.delay_seconds)
        elif slow:
            await asyncio.sleep(slow)
        assert self._client is not None
        upstream_url = self.upstream.rstrip("/") + ("/" + rest if rest else "")
        try:
            resp = await self._client.get(upstream_url, headers={"Accept": "application/fhir+json"})
        except httpx.HTTPError:
            await self._write(writer, 502, b'{"resourceType":"OperationOutcome"}')
            entry.upstream_status = 502
            entry.done = time.monotonic()
            self._record(entry, "done")
            return True
        entry.upstream_status = resp.status_code
        body = resp.content.replace(self.upstream.rstrip("/").encode(), self.base_for(tag).encode())
        if fault == "badjson":
            body = body[: len(body) // 2]
        await self._write(writer, resp.status_code, body)
        entry.done = time.monotonic()
        self._record(entry, "done")
        return True

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            "Content-Type: application/fhir+json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()


async def _main(args: argparse.Namespace) -> None:
    log_file = Path(args.log).open("a") if args.log else None  # noqa: SIM115 - closed below
    proxy = FaultProxy(
        args.upstream,
        fault_rate=args.fault_rate,
        slow_rate=args.slow_rate,
        delay_seconds=args.delay,
        slow_max_seconds=args.slow_max,
        seed=args.seed,
        port=args.port,
        log_file=log_file,
    )
    await proxy.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"READY {proxy.port} {proxy.base_for('manual')} -> {args.upstream}", flush=True)
    try:
        while not stopping.is_set():
            if not args.report_every:
                await stopping.wait()
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), args.report_every)
            broken = sum(1 for e in proxy.log if e.fault)
            print(f"{len(proxy.log)} requests, {broken} broken", flush=True)
    finally:
        await proxy.close()
        if log_file is not None:
            log_file.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fault-injecting reverse proxy for a FHIR server (loopback)")
    parser.add_argument("--upstream", required=True, help="FHIR base URL, e.g. http://127.0.0.1:8090/fhir")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--slow-rate", type=float, default=0.1)
    parser.add_argument("--delay", type=float, default=3.0, help="seconds a 'delay' fault holds a request")
    parser.add_argument("--slow-max", type=float, default=0.3, help="longest delay of a merely slow request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", help="append a JSONL record of every request to this file")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between counts (0: never)")
    asyncio.run(_main(parser.parse_args()))
