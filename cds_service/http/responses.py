"""The service's one response class and the OperationOutcome error response."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

from cds_service.protocol.errors import operation_outcome


class JSONResponse(StarletteJSONResponse):
    """orjson-serialised JSON; the one response class of the service. A JSONResponse subclass so
    FastAPI publishes the response models in /openapi.json (for any other class it writes "string")."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(message, status, code), status_code=status)
