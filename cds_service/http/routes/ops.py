"""Operations endpoints: liveness, readiness, Prometheus metrics and feedback analytics.

They are kept apart from the CDS Hooks endpoints because their audience is hospital IT and
clinical informaticists, not EHRs: they are not CDS calls (no client JWT), and each has its own
exposure rule. ``/readyz`` is open (it says only "up"/"down" per dependency). ``/metrics`` is on
the main port unless ``CDS_METRICS_PORT`` moves it to a port that is not published through the
ingress. ``/analytics/feedback`` reveals how clinicians act on cards, so the production profile
serves it only when ``CDS_ANALYTICS_ENABLED=true``, and then only with ``CDS_ANALYTICS_TOKEN``.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cds_service.http.deps import RuntimeDep, SettingsDep
from cds_service.http.responses import JSONResponse
from cds_service.ops import metrics
from cds_service.protocol.errors import BadRequest, NotFound, operation_outcome
from cds_service.protocol.openapi import error_responses
from cds_service.settings import Settings
from cds_service.storage.analytics import feedback_report
from cds_service.storage.repo import parse_timestamp

router = APIRouter()
DEFAULT_WINDOW = timedelta(days=30)


def _json(content: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


@router.get("/healthz", include_in_schema=False)
async def healthz() -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(rt: RuntimeDep) -> Response:
    """Readiness: database reachable, schema at the migration head, Redis reachable if configured."""
    ready, report = await rt.readiness.check()
    return _json({"status": "ok" if ready else "unavailable", **report}, 200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(settings: SettingsDep) -> Response:
    """Prometheus text exposition (all workers' values in multi-worker mode)."""
    if not settings.metrics_enabled or settings.metrics_port is not None:
        raise NotFound("No such endpoint")
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def window(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """``[since, until)`` from RFC 3339 timestamps or dates; default: the 30 days up to now."""
    try:
        end = parse_timestamp(until) if until else now
        start = parse_timestamp(since) if since else end - DEFAULT_WINDOW
    except ValueError:
        raise BadRequest("since and until must be RFC 3339 timestamps or dates (YYYY-MM-DD)") from None
    if start >= end:
        raise BadRequest("since must be before until")
    return start, end


def _authorised(request: Request, settings: Settings) -> bool:
    token = settings.analytics_token
    if token is None:  # only possible outside the production profile
        return True
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.get_secret_value().encode()
    )


@router.get("/analytics/feedback", tags=["Analytics"], responses=error_responses(400, 401, 404))
async def analytics_feedback(
    request: Request, rt: RuntimeDep, since: str | None = None, until: str | None = None, top: int = 5
) -> Response:
    """Per service and rule: cards issued, accepted, overridden, acceptance rate against cards
    issued, and the top override reasons, for cards issued in ``[since, until)``."""
    settings = rt.settings
    if not settings.analytics_on:
        raise NotFound("No such endpoint")
    if not _authorised(request, settings):
        return _json(operation_outcome("Unauthorized", 401), 401, {"WWW-Authenticate": "Bearer"})
    if not 1 <= top <= 50:
        raise BadRequest("top must be between 1 and 50")
    start, end = window(since, until, datetime.now(UTC))
    await rt.issued.flush()  # this process's answered calls are all counted
    report = await feedback_report(rt.store.engine, start, end, top)
    return _json(report.as_json())
