"""ASGI middleware that authenticates and audits every CDS call.

It sits inside the CORS middleware (so a 401 still carries the CORS headers a browser needs to
see it) and guards exactly the CDS Hooks paths: ``/cds-services`` and everything below it. CORS
preflights (``OPTIONS``) pass without a token, as browsers never send one with them; health,
readiness, metrics and the OpenAPI pages are not CDS calls and stay open.

A refused call gets 401 with a generic OperationOutcome and ``WWW-Authenticate: Bearer``; the
reason goes only to the log and the ``cds_auth_failures_total`` counter. Every call, refused or
not, ends in one audit record written after the response has been sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.protocol.errors import operation_outcome
from cds_service.trust.client_jwt import AuthFailure, ClientIdentity
from cds_service.trust.metrics import count_failure
from cds_service.trust.runtime import TrustRuntime

log = logging.getLogger("cds.trust")

CLIENT_KEY = "cds.client"
AUDIT_KEY = "cds.audit"
_MESSAGES = {401: "Unauthorized", 503: "Service temporarily unavailable"}


def client_of(request: Request) -> ClientIdentity | None:
    """The verified caller of this request (None: dev profile, unauthenticated)."""
    client = request.scope.get(CLIENT_KEY)
    return client if isinstance(client, ClientIdentity) else None


def audit_details(request: Request, **fields: Any) -> None:
    """Let an endpoint add its call-specific fields (hook, patient hash, cards...) to the audit."""
    details = request.scope.get(AUDIT_KEY)
    if isinstance(details, dict):
        details.update(fields)


def classify(path: str) -> tuple[str, str | None] | None:
    """(endpoint kind, service id) for a CDS Hooks path, None for any other path."""
    if path == "/cds-services":
        return "discovery", None
    if not path.startswith("/cds-services/"):
        return None
    rest = path[len("/cds-services/") :]
    if rest.endswith("/feedback"):
        return "feedback", rest[: -len("/feedback")][:200]
    return "service", rest[:200]


class TrustGate:
    """Authenticate (per ``TrustRuntime``) and audit the CDS Hooks endpoints."""

    def __init__(self, app: ASGIApp, trust: TrustRuntime) -> None:
        self.app = app
        self.trust = trust

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = classify(scope["path"]) if scope["type"] == "http" else None
        if kind is None or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        details: dict[str, Any] = {"endpoint": kind[0], "service": kind[1]}
        scope = dict(scope)
        scope[AUDIT_KEY] = details
        status = 500
        try:
            client = await self.trust.authenticate(scope)
        except AuthFailure as failure:
            status = failure.status
            self._log_refusal(failure, kind[0])
            details["reason"] = failure.reason.value  # nothing unverified goes into iss/tenant/jti
            await self._refuse(failure.status, scope, receive, send)
            await self._audit(details, status, started)
            return
        if client is not None:
            scope[CLIENT_KEY] = client
            details.update(iss=client.iss, tenant=client.tenant, jti=client.jti)

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            await self._audit(details, status, started)

    def _log_refusal(self, failure: AuthFailure, endpoint: str) -> None:
        total = count_failure(failure.reason)
        log.warning(
            "client authentication refused",
            extra={
                "fields": {
                    "reason": failure.reason.value,
                    "status": failure.status,
                    "endpoint": endpoint,
                    "claimed_iss": failure.claimed_iss,
                    "refusals_for_reason": int(total),
                }
            },
        )

    async def _refuse(self, status: int, scope: Scope, receive: Receive, send: Send) -> None:
        body = orjson.dumps(operation_outcome(_MESSAGES.get(status, "Unauthorized"), status))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _audit(self, details: dict[str, Any], status: int, started: float) -> None:
        details["status"] = status
        details["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        await self.trust.audit.record(details)
