"""Request dependencies, as ``Annotated`` types (the FastAPI full-stack template's ``api/deps.py``).

Routes declare what they need (``rt: RuntimeDep``, ``record: RecordDep``, ``client: ClientDep``)
instead of reaching into ``request.app.state`` or the ASGI scope: where state lives is decided here
once, and a route's signature says everything it reads.

Every dependency is ``async def`` although none awaits anything: FastAPI runs a plain ``def``
dependency in its thread pool, and the five of a hook call cost ten thread hand-offs per request
(measured with cProfile, issue 15; docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from cds_service.data.gather import Gatherer
from cds_service.ops.readiness import Readiness
from cds_service.ops.record import CallRecord, record_of
from cds_service.registry import Registry
from cds_service.settings import Settings
from cds_service.storage.repo import Store
from cds_service.storage.writer import IssuedWriter
from cds_service.trust.client_jwt import ClientIdentity
from cds_service.trust.middleware import client_of


@dataclass
class Runtime:
    """Per-process resources created at start-up and shared by all requests (never mutated)."""

    settings: Settings
    registry: Registry
    store: Store
    gatherer: Gatherer
    http: httpx.AsyncClient
    issued: IssuedWriter  # issued-card rows, written off the response path
    readiness: Readiness


async def get_runtime(request: Request) -> Runtime:
    """The one place that knows the runtime sits on ``app.state`` (set by the lifespan)."""
    runtime: Runtime = request.app.state.rt
    return runtime


async def get_settings(rt: Annotated[Runtime, Depends(get_runtime)]) -> Settings:
    return rt.settings


async def get_record(request: Request) -> CallRecord:
    """This request's record (created by the outer ``RecordCall`` middleware)."""
    record = record_of(request.scope)
    if record is None:  # only if the app was built without its middleware stack
        raise RuntimeError("no CallRecord in scope: RecordCall middleware missing")
    return record


async def get_client(request: Request) -> ClientIdentity | None:
    """The verified caller (None: dev profile, unauthenticated), as the trust gate left it."""
    return client_of(request.scope)


async def get_base_url(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> str:
    """The externally visible base URL for absolute links (``CDS_PUBLIC_BASE_URL`` behind a proxy)."""
    return (settings.public_base_url or str(request.base_url)).rstrip("/")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RecordDep = Annotated[CallRecord, Depends(get_record)]
ClientDep = Annotated[ClientIdentity | None, Depends(get_client)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
