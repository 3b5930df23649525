"""Errors that become HTTP responses carrying a FHIR OperationOutcome.

Every non-2xx body is an OperationOutcome with a clear, human message and no stack trace (a 3.0
ballot SHOULD, harmless in 2.0). The message must never contain a token or patient data: callers
pass only what they composed themselves, never raw input.
"""

from __future__ import annotations

from typing import Any

# FHIR IssueType codes we use, by HTTP status.
_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    412: "incomplete",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    500: "exception",
    503: "transient",
}


def operation_outcome(message: str, status: int, code: str | None = None) -> dict[str, Any]:
    """A minimal, valid R4 OperationOutcome with one error issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "fatal" if status >= 500 else "error",
                "code": code or _ISSUE_CODE.get(status, "processing"),
                "diagnostics": message,
            }
        ],
    }


class CdsError(Exception):
    """An error with the HTTP status the client should see; the message goes into the body."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.message, self.status, self.code)


class BadRequest(CdsError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class NotFound(CdsError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class PreconditionFailed(CdsError):
    """412: required FHIR data could not be had, by prefetch or from the FHIR server (spec 4.3.2)."""

    def __init__(self, message: str) -> None:
        super().__init__(412, message)


class ServiceUnavailable(CdsError):
    """503 with ``Retry-After``: a dependency (the database) cannot serve this call right now; the
    client may send the same request again later (feedback is idempotent)."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(503, message, headers={"Retry-After": str(retry_after)})
