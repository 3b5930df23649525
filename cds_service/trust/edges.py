"""The HTTP edge: what a request must look like before any endpoint sees it (issue 16, point 7).

Three layers, each where it can act:

* ``EdgeHttpProtocol`` (uvicorn's httptools protocol, chosen in ``cli.py``) bounds what is parsed
  before the application exists for the request: at most ``CDS_MAX_HEADERS`` header lines and
  ``CDS_MAX_HEADER_BYTES`` bytes of request line plus headers (431 beyond), and the request line and
  headers must arrive within ``CDS_HEADER_TIMEOUT_SECONDS`` of the connection's first byte or of the
  previous response (408; a slow-loris client cannot hold a connection open forever). A request the
  parser cannot read gets a 400. All three answer with an OperationOutcome and close the connection.
* ``EdgeLimits`` (ASGI, innermost: after client authentication, so an unauthenticated client
  still cannot make us read a body; inside CORS, so browsers can read its answers) refuses a
  request carrying two ``Authorization`` headers (401: which one would count is ambiguous, and
  proxies and frameworks disagree; on the CDS paths the trust gate has refused it already), a POST
  whose ``Content-Type`` is not JSON (415: ``application/json`` or ``application/*+json``), and
  reads a POST body completely within ``CDS_BODY_TIMEOUT_SECONDS`` (408 for a stalled or
  trickling body) before the endpoint runs.
* ``OutcomeErrors`` (ASGI, outermost but metrics) turns an error response that is not JSON (the CORS
  middleware's "Disallowed CORS origin", a framework's plain-text error) into an OperationOutcome with
  the same status, so a client always gets one error format.

What a reverse proxy in front should also do is in docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cds_service.protocol.errors import operation_outcome
from cds_service.settings import Settings, get_settings

log = logging.getLogger("cds.edge")

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def outcome_bytes(status: int, message: str) -> bytes:
    return orjson.dumps(operation_outcome(message, status))


class _HeadersTooLarge(Exception):
    pass


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits, a header timeout and JSON parse errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._max_headers = settings.max_headers
        self._max_header_bytes = settings.max_header_bytes
        self._header_timeout = settings.header_timeout_seconds
        self._header_bytes = 0
        self._header_count = 0
        self._too_large = False
        self._header_timer: asyncio.TimerHandle | None = None
        # Raw bytes received while a request line/headers are being read: httptools buffers a
        # header value until it is complete, so counting parsed headers alone would let one
        # 16 MB header sit in memory before it is refused.
        self._in_headers = True
        self._raw_bytes = 0

    # -- header timeout: armed when a connection opens and when a new request begins
    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.warning("request headers not received in time; connection closed")
            self._send_error(408, "Request line and headers were not received in time")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._raw_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._raw_bytes > self._max_header_bytes and not self.transport.is_closing():
            self._too_large = True
            self.send_400_response("request headers too large")

    def on_message_begin(self) -> None:
        self._in_headers = True
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0
        if self._header_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes or self._header_count > self._max_headers:
            self._too_large = True
            raise _HeadersTooLarge()  # httptools turns this into HttpParserCallbackError

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_headers = False
        self._raw_bytes = 0
        super().on_headers_complete()

    # Idle keep-alive connections are closed by uvicorn's keep-alive timeout; the header timer
    # starts again with the next request's first byte (on_message_begin).

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            log.warning(
                "request headers over the limit; connection closed",
                extra={
                    "fields": {"max_headers": self._max_headers, "max_header_bytes": self._max_header_bytes}
                },
            )
            self._send_error(
                431,
                f"Request headers too large (at most {self._max_headers} headers, "
                f"{self._max_header_bytes} bytes)",
            )
            return
        self._send_error(400, "The HTTP request could not be parsed")

    def _send_error(self, status: int, message: str) -> None:
        self._disarm()
        body = outcome_bytes(status, message)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        head += [b"%s: %s\r\n" % (name, value) for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def is_json_media_type(value: str) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters (charset) allowed."""
    media = value.split(";", 1)[0].strip().lower()
    kind, _, sub = media.partition("/")
    return kind == "application" and (sub == "json" or (sub.endswith("+json") and len(sub) > 5))


class EdgeLimits:
    """Duplicate Authorization (401), POST Content-Type (415) and the body read timeout (408)."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        settings = settings or get_settings()
        self.body_timeout = settings.body_timeout_seconds
        self.max_body = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(1 for name, _ in headers if name == b"authorization") > 1:
            log.warning("request with more than one Authorization header refused")
            await _respond(
                send, 401, "Unauthorized: more than one Authorization header", www_authenticate=True
            )
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = next((v for n, v in headers if n == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.max_body:  # too large whatever it is
            await _respond(send, 413, f"Request body larger than {self.max_body} bytes", close=True)
            return
        types = [v.decode("latin-1") for n, v in headers if n == b"content-type"]
        no_body = declared in (b"", b"0") and not any(n == b"transfer-encoding" for n, _ in headers)
        if not types and no_body:
            await self.app(scope, receive, send)  # nothing to type: the endpoint says "body is empty" (400)
            return
        if len(types) != 1 or not is_json_media_type(types[0]):
            await _respond(
                send, 415, "Content-Type must be application/json (or application/*+json) with a JSON body"
            )
            return
        body = await self._read_body(receive, send)
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body within the timeout; None when an answer (408/413) was already sent or
        the client went away. A body over the limit is answered 413 here, before it is all read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                log.warning("request body not received in time", extra={"fields": {"received_bytes": size}})
                await _respond(
                    send, 408, f"Request body not received within {self.body_timeout:g} s", close=True
                )
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _respond(send, 413, f"Request body larger than {self.max_body} bytes", close=True)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(
    send: Send, status: int, message: str, *, www_authenticate: bool = False, close: bool = False
) -> None:
    body = outcome_bytes(status, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if www_authenticate:
        headers.append((b"www-authenticate", b"Bearer"))
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class OutcomeErrors:
    """Rewrite a non-JSON error response (status >= 400) into an OperationOutcome, same status
    (HTML pages excepted: a route that answers a browser with a page chose its format)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        text = bytearray()

        async def rewriting_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                status = int(message["status"])
                ctype = next((v for n, v in message.get("headers", []) if n.lower() == b"content-type"), b"")
                # An HTML page with an error status is a deliberate answer to a browser (a plug-in's
                # pages, e.g. the SMART app's "session expired"): left as it is.
                if (
                    status >= 400
                    and b"json" not in ctype.lower()
                    and not ctype.lower().startswith(b"text/html")
                ):
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                text.extend(message.get("body", b"")[:1000])
                if message.get("more_body", False):
                    return
                status = int(held["status"])
                words = text.decode("utf-8", "replace").strip()[:200] or "Request refused"
                body = outcome_bytes(status, words if words.isprintable() else "Request refused")
                headers = [
                    (n, v)
                    for n, v in held.get("headers", [])
                    if n.lower() not in (b"content-type", b"content-length")
                ]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewriting_send)
