"""Logging that is safe to ship to a hospital's log pipeline: JSON lines, no PHI, no tokens.

Patient ids are replaced by a keyed HMAC (stable across replicas that share the key, so audit rows
can be joined, but not reversible without the key). A redaction filter on every handler masks
anything that looks like a bearer token or a JWT, as a last line of defence should a message ever
carry one by mistake.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

AUDIT_LOGGER = "cds.audit"

_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED-JWT]"),
    (re.compile(r'(?i)("?access_token"?\s*[:=]\s*"?)[^",\s}]+'), r"\1[REDACTED]"),
    # Database errors quote data: SQLAlchemy appends a statement's parameters (the engine hides
    # them, this is the second line of defence), Postgres' DETAIL can quote the failing row or key.
    (re.compile(r"\[parameters: [^\n]*"), "[parameters: [REDACTED]]"),
    (re.compile(r"(?i)(failing row contains|key \([^)\n]*\)=)\s*\([^\n]*"), r"\1 [REDACTED]"),
]


# Every pattern above needs one of these (lower-cased) in the text: a text with none of them is
# returned as it is without running the five substitutions (they were most of the cost of an
# audit line, ~0.3 ms a call; docs/performance.md).
_NEEDLES = ("bearer", "eyj", "access_token", "[parameters: ", "failing row contains", "key (")


def redact(text: str) -> str:
    """Mask bearer tokens, JWTs, access_token values and data quoted by database errors."""
    lowered = text.lower()
    if not any(needle in lowered for needle in _NEEDLES):
        return text
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    """``redact`` applied to every string inside a structured log field, so the fields of a record
    pass the same filter as its message (a field is no safer a place for a token than free text)."""
    if isinstance(value, str):
        return redact(value)
    if depth > 8:
        return "[TRUNCATED]"
    if isinstance(value, dict):
        return {str(k): redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth + 1) for v in value]
    return value


def hash_patient(key: bytes, patient_id: str | None) -> str:
    """Pseudonymous, stable id for a patient: HMAC-SHA256, first 32 hex characters."""
    if not patient_id:
        return "-"
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:32]


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured fields come from ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(redact_value(fields))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "info") -> None:
    """JSON logging for our loggers and uvicorn's; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Debug applies to our own loggers only: libraries echo data at debug level (aiosqlite logs
    # every SQL statement with its parameters, httpcore every request), which would put PHI and
    # tokens in the log. They stay at INFO or above whatever CDS_LOG_LEVEL says.
    wanted = logging.getLevelName(level.upper())
    wanted = wanted if isinstance(wanted, int) else logging.INFO
    root.setLevel(max(wanted, logging.INFO))
    logging.getLogger("cds").setLevel(wanted)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # The access log would print every path and client address; our audit line replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


def audit(fields: dict[str, Any]) -> None:
    """One structured audit record per call on the ``cds.audit`` stream: endpoint, service, hook,
    hookInstance, client ``iss``/``tenant``/``jti``, hashed patient, status, cards, rules, reason,
    latency (see cds_service/ops/audit.py). Fields must already be PHI-free."""
    logging.getLogger(AUDIT_LOGGER).info("cds call", extra={"fields": fields})
