"""``POST /cds-services/{id}``: a hook call. The body is read here; the call itself is
:func:`cds_service.call.run_call`, which knows nothing of HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cds_service.call import run_call
from cds_service.http.body import parse_for_service
from cds_service.http.deps import BaseUrlDep, ClientDep, RecordDep, RuntimeDep
from cds_service.http.responses import JSONResponse
from cds_service.protocol.models import CdsResponse, HookRequest
from cds_service.protocol.openapi import error_responses, hook_openapi_extra

router = APIRouter(tags=["CDS Hooks"])


@router.post(
    "/cds-services/{service_id}",
    response_model=CdsResponse,
    responses=error_responses(400, 401, 404, 412, 413),
    openapi_extra=hook_openapi_extra(),  # the body is parsed by hand (exact 400/404/412), not by FastAPI
)
async def call_service(
    service_id: str, request: Request, rt: RuntimeDep, record: RecordDep, client: ClientDep, base: BaseUrlDep
) -> Response:
    """Invoke a service: dispatch on (id, hook), gather data, run the handler, check the answer."""
    req = await parse_for_service(request, rt.registry, rt.settings, service_id, HookRequest)
    outcome = await run_call(
        service_id,
        req,
        settings=rt.settings,
        registry=rt.registry,
        gatherer=rt.gatherer,
        client=client,
        base_url=base,
        record=record,
    )
    await rt.issued.submit(outcome.issued)
    return JSONResponse(outcome.body)
