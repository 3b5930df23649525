"""The service's own ASGI middlewares (the others are Starlette's CORS, the trust gate and the
call record); their order is set in one place, ``cds_service/http/app.py``."""

from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from cds_service.http.responses import error_response
from cds_service.ops.record import record_of

log = logging.getLogger("cds.service")


class NormalizePath:
    """Collapse ``//`` and drop a trailing ``/`` so clients that build URLs by concatenation (the
    Sandbox does) reach the route directly: a redirect would break CORS preflights."""

    _slashes = re.compile(r"/{2,}")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = self._slashes.sub("/", scope["path"])
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/") or "/"
            if path != scope["path"]:
                scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)


class GuardErrors:
    """Turn any unexpected exception into a 500 OperationOutcome *inside* the CORS layer, so
    browsers see the status; the traceback goes to the log, never to the client. Whether the
    response had already started is read from the request's record (the one status watcher)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("unhandled error")
            record = record_of(scope)
            if record is None or record.status is not None:
                raise
            resp = error_response(500, "Internal error in the CDS service; see the service log.")
            await resp(scope, receive, send)
