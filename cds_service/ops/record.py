"""One record per HTTP request, for every side effect: metrics, the audit trail and the logs.

``RecordCall`` is the outermost middleware but one (inside the path normaliser, so the path it
classifies is the one routing sees). It creates the :class:`CallRecord` once, classifies the path
once, watches the one status actually sent and, when the response is done, hands the record to the
metrics and, for CDS Hooks calls, to the audit trail. Inner layers only fill the record in: the
trust gate the verified client (or the refusal reason), the CDS call its service, hook, patient
hash and cards. Nobody else tracks a status or classifies a path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.ops import metrics

SCOPE_KEY = "cds.call"
CDS_ENDPOINTS = frozenset({"discovery", "service", "feedback"})
_FIXED_ENDPOINTS = {
    "/cds-services": "discovery",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/analytics/feedback": "analytics",
    "/docs": "docs",
    "/openapi.json": "docs",
}
_METHODS = frozenset({"GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "PATCH"})


def classify(path: str) -> tuple[str, str | None]:
    """(endpoint kind, service id) of a path. The kind comes from a small closed set and is never the
    raw path (it may hold any id); the service id is the id as the path names it (cut to 200
    characters), known or not, for the CDS Hooks paths only."""
    fixed = _FIXED_ENDPOINTS.get(path)
    if fixed is not None:
        return fixed, None
    if path.startswith("/cds-services/"):
        rest = path[len("/cds-services/") :]
        if rest.endswith("/feedback"):
            return "feedback", rest[: -len("/feedback")][:200]
        return "service", rest[:200]
    if path == "/evidence" or path.startswith("/evidence/"):
        return "evidence", None
    if path.startswith("/education/"):
        return "education", None
    return "other", None


@dataclass
class CallRecord:
    """What one request did, as far as metrics, audit and logs may know it: identifiers only, no PHI."""

    method: str
    endpoint: str
    service: str | None = None  # the id the path names (audit), registered or not
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None  # the status actually sent; None until the response starts
    served: tuple[str, str] | None = None  # (service id, hook) once known to be registered: metric labels
    hook: str | None = None
    hook_instance: str | None = None
    patient: str | None = None  # keyed hash, never the id
    iss: str | None = None
    tenant: str | None = None
    jti: str | None = None
    reason: str | None = None  # why the trust gate refused the call
    issued: list[Any] = field(default_factory=list)  # CardRecord-like: rule_id, indicator
    foreign_dropped: int | None = None  # gathered entries of another subject, dropped (issue 16)

    @property
    def is_cds_call(self) -> bool:
        """A CDS Hooks call: authenticated and audited (CORS preflights are neither)."""
        return self.endpoint in CDS_ENDPOINTS and self.method != "OPTIONS"

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def audit_fields(self) -> dict[str, Any]:
        """The audit record's fields (see ``ops/audit.py`` for their order and columns)."""
        fields: dict[str, Any] = {"endpoint": self.endpoint, "service": self.service}
        if self.reason is not None:
            fields["reason"] = self.reason
        for name, value in (("iss", self.iss), ("tenant", self.tenant), ("jti", self.jti)):
            if value is not None:
                fields[name] = value
        if self.hook is not None:
            fields.update(hook=self.hook, hookInstance=self.hook_instance, patient=self.patient)
        if self.foreign_dropped is not None:
            fields["foreign_dropped"] = self.foreign_dropped
        if self.issued:
            fields.update(cards=len(self.issued), rules=sorted({c.rule_id for c in self.issued}))
        fields["status"] = self.status if self.status is not None else 500
        fields["latency_ms"] = round(self.elapsed() * 1000, 2)
        return fields


def record_of(scope: Scope) -> CallRecord | None:
    """The record of this request (None outside the service's middleware stack)."""
    record = scope.get(SCOPE_KEY)
    return record if isinstance(record, CallRecord) else None


class AuditSink(Protocol):
    async def record(self, fields: dict[str, Any]) -> None: ...


class RecordCall:
    """Creates the request's :class:`CallRecord`; afterwards feeds it to metrics and the audit."""

    def __init__(self, app: ASGIApp, audit: AuditSink) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint, service = classify(scope["path"])
        method = scope["method"] if scope["method"] in _METHODS else "other"
        record = CallRecord(method, endpoint, service)
        scope[SCOPE_KEY] = record  # one object: it survives the scope copies made by inner layers

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            metrics.observe(record)
            if record.is_cds_call:
                await self.audit.record(record.audit_fields())
