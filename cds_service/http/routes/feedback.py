"""``POST /cds-services/{id}/feedback``: what clinicians did with the cards, stored durably."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cds_service.http.body import parse_for_service
from cds_service.http.deps import RuntimeDep
from cds_service.http.responses import JSONResponse
from cds_service.ops import metrics
from cds_service.protocol.errors import BadRequest
from cds_service.protocol.models import FeedbackRequest
from cds_service.protocol.openapi import error_responses, feedback_openapi_extra
from cds_service.storage.repo import parse_timestamp

log = logging.getLogger("cds.service")
router = APIRouter(tags=["CDS Hooks"])


@router.post(
    "/cds-services/{service_id}/feedback",
    responses=error_responses(400, 401, 404, 413),
    openapi_extra=feedback_openapi_extra(),
)
async def feedback(service_id: str, request: Request, rt: RuntimeDep) -> Response:
    """Store feedback durably (idempotently) before answering 200."""
    fb = await parse_for_service(request, rt.registry, rt.settings, service_id, FeedbackRequest)
    for i, item in enumerate(fb.feedback):
        if item.outcome == "accepted" and not item.acceptedSuggestions:
            raise BadRequest(f"feedback.{i}: acceptedSuggestions is required for outcome 'accepted'")
        try:
            parse_timestamp(item.outcomeTimestamp)
        except ValueError:
            raise BadRequest(f"feedback.{i}.outcomeTimestamp: not an RFC 3339 timestamp") from None
    stored = await rt.store.save_feedback(service_id, fb.feedback, datetime.now(UTC))
    metrics.feedback_received(service_id, fb.feedback)
    log.info(
        "feedback stored",
        extra={"fields": {"service": service_id, "items": len(fb.feedback), "new": stored}},
    )
    return JSONResponse({})
