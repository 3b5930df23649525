"""Request bodies: read by hand (not by FastAPI's body validation) so every failure maps to the
status the checklist recommends (400 malformed, 404 unknown id, 413 too large) with an
OperationOutcome, and so the hook context stays raw JSON for the lenient hook models."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from cds_service.call import validation_message
from cds_service.data.sieve import Sieve, lean_loads
from cds_service.protocol.errors import BadRequest, CdsError, NotFound
from cds_service.registry import Registry
from cds_service.settings import Settings
from cds_service.trust.limits import check_json_shape, fits_shape

M = TypeVar("M", bound=BaseModel)


async def read_json_object(request: Request, settings: Settings, sieve: Sieve | None = None) -> dict[str, Any]:
    """The body as a JSON object, within the byte, depth and element limits of the settings;
    with a ``sieve``, prefetched resources the service cannot use are decoded as stubs only."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise CdsError(413, f"Request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise CdsError(413, f"Request body larger than {limit} bytes")
    # One allocation of the final size: growing a bytearray chunk by chunk re-mapped and copied
    # a 2 MB body several times (fresh pages each time; docs/performance.md).
    body = b"".join(chunks)
    del chunks
    if not body:
        raise BadRequest("Request body is empty; a JSON object is required")
    try:
        data = orjson.loads(body) if sieve is None else lean_loads(body, sieve)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    if not fits_shape(body, settings.max_json_depth, settings.max_json_elements):
        check_json_shape(data, settings.max_json_depth, settings.max_json_elements)
    return data


async def parse_for_service(
    request: Request, registry: Registry, settings: Settings, service_id: str, model: type[M]
) -> M:
    """The body of a call to a known service, as ``model``: 404 for an unknown id (before reading
    the body), 400 naming the fields for a body that does not fit."""
    if not registry.has_id(service_id):
        raise NotFound(f"No CDS service with id '{service_id}'")
    raw = await read_json_object(request, settings, registry.sieve_of(service_id))
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc, "")) from None
