"""ASGI middleware that authenticates every CDS call.

It sits inside the CORS middleware (so a 401 still carries the CORS headers a browser needs to
see it) and guards exactly the CDS Hooks paths: ``/cds-services`` and everything below it. CORS
preflights (``OPTIONS``) pass without a token, as browsers never send one with them; health,
readiness, metrics and the OpenAPI pages are not CDS calls and stay open.

A refused call gets 401 with a generic OperationOutcome and ``WWW-Authenticate: Bearer``; the
reason goes only to the log, the ``cds_auth_failures_total`` counter and the request's
:class:`~cds_service.ops.record.CallRecord`. The path was classified, and the audit record is
written, by the outer ``RecordCall`` middleware: every call, refused or not, ends in one audit
record written after the response has been sent.
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from cds_service.ops.record import record_of
from cds_service.protocol.errors import operation_outcome
from cds_service.trust.client_jwt import AuthFailure, ClientIdentity
from cds_service.trust.metrics import count_failure
from cds_service.trust.runtime import TrustRuntime

log = logging.getLogger("cds.trust")

CLIENT_KEY = "cds.client"
_MESSAGES = {401: "Unauthorized", 503: "Service temporarily unavailable"}


def client_of(scope: Scope) -> ClientIdentity | None:
    """The verified caller of this request (None: dev profile, unauthenticated)."""
    client = scope.get(CLIENT_KEY)
    return client if isinstance(client, ClientIdentity) else None


class TrustGate:
    """Authenticate (per ``TrustRuntime``) the CDS Hooks endpoints."""

    def __init__(self, app: ASGIApp, trust: TrustRuntime) -> None:
        self.app = app
        self.trust = trust

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = record_of(scope) if scope["type"] == "http" else None
        if record is None or not record.is_cds_call:
            await self.app(scope, receive, send)
            return
        try:
            client = await self.trust.authenticate(scope)
        except AuthFailure as failure:
            self._log_refusal(failure, record.endpoint)
            record.reason = failure.reason.value  # nothing unverified goes into iss/tenant/jti
            await self._refuse(failure.status, scope, receive, send)
            return
        if client is not None:
            scope = dict(scope)
            scope[CLIENT_KEY] = client
            record.iss, record.tenant, record.jti = client.iss, client.tenant, client.jti
        await self.app(scope, receive, send)

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
