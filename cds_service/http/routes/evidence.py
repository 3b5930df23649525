"""``GET /evidence/{name}``: pages a topic publishes about its cards, linked from every card."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from cds_service.http.deps import BaseUrlDep, RuntimeDep
from cds_service.protocol.errors import NotFound

router = APIRouter(include_in_schema=False)


@router.get("/evidence")
@router.get("/evidence/{name}")
async def evidence(rt: RuntimeDep, base: BaseUrlDep, name: str = "index") -> Response:
    """Pages a topic publishes about its cards (rule, evidence, codes), linked from every card."""
    page = rt.registry.pages.get(name)
    if page is None:
        raise NotFound(f"No page '{name}'")
    return Response(page(base), media_type="text/html; charset=utf-8")
