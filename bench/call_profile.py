"""Where the CPU of one hook call goes, in-process, without a socket.

    .venv/bin/python -m bench.call_profile                 # CPU ms per call for each bench body
    .venv/bin/python -m bench.call_profile --cprofile pv300 # plus the top functions of one row

The app is built as ``cds-fasciculation serve`` builds it with the benchmark's settings (SQLite,
responses not re-checked), its lifespan runs, and each call is driven straight through the ASGI
interface with the body delivered in 64 KiB chunks, as uvicorn delivers it. The floor app
(``bench/floor.py``) is driven the same way, so the two figures are comparable: the difference is
what our service does beyond reading and parsing the body. CPU time (``time.process_time``), median
over many calls. docs/performance.md quotes these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bench.run import SELECT_PATH, SERVICE_PATH, SIGN_PATH, discovery_templates, request_bodies

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
CHUNK = 65_536


def bodies() -> dict[str, tuple[str, bytes]]:
    """The benchmark's request bodies by row key (``bench/run.py`` ``request_bodies``), with the
    path each is posted to."""
    sent = request_bodies(discovery_templates())
    out = {key: (SERVICE_PATH, sent[name]) for key, name in
           (("pv50", "bg50-r04"), ("pv300", "bg300-r01"), ("pv2000", "bg2000-r01"), ("pv2000none", "bg2000-no-trigger"))}
    out["sign5"] = (SIGN_PATH, sent["sign5"])
    out["select5"] = (SELECT_PATH, sent["select5"])
    return out


async def call(app: ASGIApp, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST through the ASGI interface; the status and the response body."""
    chunks = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    sent = 0
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8100), "state": {},
    }

    async def receive() -> dict[str, Any]:
        nonlocal sent
        chunk = chunks[sent]
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < len(chunks)}

    status = 0
    out = bytearray()

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(out)


async def run(keys: list[str], calls: int, profile: str | None) -> None:
    os.environ.setdefault("CDS_DATABASE_URL", f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/cds.db")
    os.environ.setdefault("CDS_VALIDATE_RESPONSES", "false")
    os.environ.setdefault("CDS_LOG_LEVEL", "WARNING")
    from bench.floor import app as floor_app
    from cds_service.http.app import create_app

    app = create_app()
    all_bodies = bodies()
    async with app.router.lifespan_context(app):
        for key in keys:
            path, body = all_bodies[key]
            status, answer = await call(app, path, body)
            cards = len(orjson.loads(answer).get("cards", [])) if status == 200 else -1
            n = calls if len(body) < 1_000_000 else max(calls // 6, 5)
            for target, name in ((app, "service"), (floor_app, "floor")):
                times = []
                for _ in range(n):
                    t0 = time.process_time()
                    await call(target, path, body)
                    times.append(time.process_time() - t0)
                print(f"{key:11} {name:8} {len(body) // 1024:5d} KB  status {status} cards {cards}  "
                      f"cpu mean {statistics.fmean(times) * 1000:7.2f} ms, median "
                      f"{statistics.median(times) * 1000:7.2f} ms ({n} calls)")
            if profile == key:
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(n):
                    await call(app, path, body)
                prof.disable()
                pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "35")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", default=["pv50", "pv300", "pv2000", "pv2000none", "sign5", "select5"])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cprofile", default=None, help="row key to profile with cProfile")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.calls, args.cprofile))


if __name__ == "__main__":
    main()
