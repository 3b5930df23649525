"""The audit trail: exactly one record per CDS call, refused calls included.

The record is the request's :class:`~cds_service.ops.record.CallRecord`, which the outer
``RecordCall`` middleware creates and, once the response has been sent, hands over here: it saw the
status actually sent and the latency, the trust gate wrote the verified client (or the refusal
reason) into it and the CDS call its hook, hookInstance, patient hash, cards and rules. It goes to
the ``cds.audit`` log stream and, with ``CDS_AUDIT_TO_DATABASE``, to ``audit_events`` (through the
``Store``: storage owns all SQL).

Only identifiers are recorded: the patient as its keyed hash, the client as ``iss``/``tenant``/
``jti``. A database outage never fails a call: the log line is already written.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from cds_service.ops.observability import audit
from cds_service.storage.repo import Store

log = logging.getLogger("cds.trust")

# Field order of the log record, and the column each maps to.
_COLUMNS = {
    "endpoint": "endpoint",
    "service": "service_id",
    "hook": "hook",
    "hookInstance": "hook_instance",
    "iss": "iss",
    "tenant": "tenant",
    "jti": "jti",
    "patient": "patient_hash",
    "status": "status",
    "cards": "cards",
    "rules": "rules",
    "reason": "reason",
    "latency_ms": "latency_ms",
    "foreign_dropped": "foreign_dropped",
}
_LIMITS = {"service_id": 200, "hook": 100, "hook_instance": 200, "iss": 200, "tenant": 200, "jti": 200}


def complete(fields: dict[str, Any]) -> dict[str, Any]:
    """Every audit field present (None when not applicable), in a stable order."""
    out = {name: fields.get(name) for name in _COLUMNS}
    out["cards"] = int(out["cards"] or 0)
    out["rules"] = list(out["rules"] or [])
    return out


class AuditTrail:
    """Writes audit records; the database copy is optional and best effort."""

    def __init__(self, to_database: bool) -> None:
        self.to_database = to_database
        self.store: Store | None = None

    async def record(self, fields: dict[str, Any]) -> None:
        entry = complete(fields)
        audit(entry)
        if not self.to_database or self.store is None:
            return
        row: dict[str, Any] = {column: entry[name] for name, column in _COLUMNS.items()}
        for column, limit in _LIMITS.items():
            if isinstance(row[column], str):
                row[column] = row[column][:limit]
        row["at"] = datetime.now(UTC)
        row["rules"] = row["rules"] or None
        try:
            await self.store.save_audit_event(row)
        except Exception as exc:
            log.warning(
                "audit record not written to the database",
                extra={"fields": {"problem": type(exc).__name__}},
            )
