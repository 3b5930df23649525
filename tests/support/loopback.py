"""A tiny JSON server on a free loopback port, started inside a test: it serves JWK Sets (which the
test can swap to rotate keys) and stands in for a FHIR server that records every request it gets."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Hit:
    path: str
    authorization: str | None


@dataclass
class JsonServer:
    base: str
    routes: dict[str, tuple[int, Any]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, path: str, body: Any, status: int = 200) -> None:
        with self.lock:
            self.routes[path] = (status, body)

    def url(self, path: str) -> str:
        return self.base + path

    def hits_on(self, path: str) -> int:
        with self.lock:
            return sum(1 for h in self.hits if h.path == path)

    def all_hits(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)


@contextlib.contextmanager
def serve_json() -> Iterator[JsonServer]:
    """Start the server on 127.0.0.1 (port chosen by the OS); unknown paths answer 404."""
    holder: list[JsonServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server = holder[0]
            path = urlsplit(self.path).path
            with server.lock:
                server.hits.append(Hit(path, self.headers.get("Authorization")))
                status, body = server.routes.get(path, (404, {"resourceType": "OperationOutcome"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(JsonServer(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
