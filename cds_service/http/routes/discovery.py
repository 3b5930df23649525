"""``GET /cds-services``: every (id, hook) this process serves, with its prefetch templates."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from cds_service.http.deps import RuntimeDep
from cds_service.http.responses import JSONResponse
from cds_service.protocol.models import DiscoveryResponse, dump
from cds_service.protocol.openapi import error_responses

router = APIRouter(tags=["CDS Hooks"])


@router.get("/cds-services", response_model=DiscoveryResponse, responses=error_responses(401))
async def discovery(rt: RuntimeDep) -> Response:
    """Discovery: every (id, hook) this process serves, with its prefetch templates."""
    services = [s.descriptor() for s in rt.registry.all()]
    return JSONResponse(dump(DiscoveryResponse(services=services)))
