"""The app factory: start-up and shut-down (lifespan), error mapping, routers, middleware order.

Everything a request does lives elsewhere: bodies in ``body.py``, state in ``deps.py``, the routes
in ``routes/``, the CDS call itself in ``cds_service/call.py``, side effects in ``cds_service/ops``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from cds_service import __version__
from cds_service.data.gather import Gatherer, build_fhir_client
from cds_service.data.templates import check_template
from cds_service.http.deps import Runtime
from cds_service.http.middleware import GuardErrors, NormalizePath
from cds_service.http.responses import JSONResponse, error_response
from cds_service.http.routes import discovery, education, evidence, feedback, ops, services
from cds_service.ops.memory import pin_mmap_threshold
from cds_service.ops.observability import configure_logging
from cds_service.ops.readiness import Readiness
from cds_service.ops.record import RecordCall
from cds_service.protocol.errors import CdsError
from cds_service.registry import Registry, load_services
from cds_service.settings import Settings, get_settings
from cds_service.storage.db import make_engine, upgrade_async
from cds_service.storage.repo import Store
from cds_service.storage.writer import IssuedWriter, issued_journal
from cds_service.trust.edges import EdgeLimits, OutcomeErrors
from cds_service.trust.middleware import TrustGate
from cds_service.trust.runtime import TrustRuntime

log = logging.getLogger("cds.service")
GC_YOUNG_THRESHOLD = 10_000  # net container allocations between young collections (default 700)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """Build the app; ``registry`` defaults to the services named by ``CDS_SERVICE_MODULES``."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    if registry is None:
        registry = Registry()
        load_services(registry, settings.service_modules, settings)
    for svc in registry.all():
        for spec in svc.prefetch:
            check_template(spec.template)
    trust = TrustRuntime(settings)  # refuses to build (and so to start) on an unsafe configuration

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before any thread exists (database driver, fsync): large bodies' memory goes back to the
        # system, and the threads share two malloc arenas (cds_service/ops/memory.py).
        pin_mmap_threshold()
        settings.warn_if_dev(log)
        if settings.migrate_on_start:
            await upgrade_async(settings.db_url)
        engine = make_engine(
            settings.db_url, settings.database_timeout_seconds, settings.database_connect_timeout_seconds
        )
        http = build_fhir_client(settings)
        store = Store(engine, settings.database_timeout_seconds)
        readiness = Readiness(engine, settings.redis_url, settings.readiness_timeout_seconds)
        journal = issued_journal(settings.issued_journal, settings.issued_journal_dir, settings.db_url)
        issued = IssuedWriter(store, journal=journal)
        issued.start()
        app.state.rt = Runtime(settings, registry, store, Gatherer(settings, http), http, issued, readiness)
        await trust.start(store)
        # Garbage collection (docs/performance.md). Everything allocated so far (modules, models,
        # schemas, terminology) lives as long as the process: freeze it, so no collection walks it
        # again. A parsed prefetch is thousands of acyclic containers, freed when the call ends; at
        # the default young-generation threshold (700) each big call set off dozens of collections
        # that walked its own tree again and again (measured: 13.6 ms of a 2,000-Observation call,
        # 0.9 ms of a 300-Observation one); at 10,000 that is 4.2 ms and 0.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        log.info(
            "service ready",
            extra={
                "fields": {"services": [f"{s.id}:{s.hook}" for s in registry.all()], "version": __version__}
            },
        )
        try:
            yield
        finally:
            await issued.close()  # in-flight calls are done: every queued row is written
            await trust.close()
            await readiness.close()
            await http.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Fasciculation work-up CDS Hooks service",
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url="/docs",
        default_response_class=JSONResponse,
    )

    @app.exception_handler(CdsError)
    async def _cds_error(_: Request, exc: CdsError) -> Response:
        return JSONResponse(exc.outcome(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "No such endpoint", 405: "Method not allowed on this endpoint"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "Invalid request")

    for module in (discovery, services, feedback, evidence, education, ops):
        app.include_router(module.router)
    for extra in registry.routers:  # routers of plug-ins (e.g. /smart); the core imports none of them
        if not isinstance(extra, APIRouter):
            raise TypeError(f"a plug-in contributed {type(extra).__name__}, not a fastapi.APIRouter")
        app.include_router(extra)

    # Middleware order, outermost first (each add_middleware wraps what was added before it):
    #   NormalizePath  the path every later layer sees, // collapsed, no trailing /
    #   RecordCall     the request's one CallRecord: status, timing; then metrics and audit
    #   OutcomeErrors  CORS refusals and other plain-text errors become OperationOutcomes
    #   CORS           so a browser sees every answer below, the 401s and 500s included
    #   GuardErrors    any exception becomes a 500 OperationOutcome inside CORS
    #   TrustGate      client JWT on the CDS Hooks paths; its 401s pass through CORS
    #   EdgeLimits     Content-Type, body read timeout: the body is read only after auth
    app.add_middleware(EdgeLimits, settings=settings)
    app.add_middleware(TrustGate, trust=trust)
    app.add_middleware(GuardErrors)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Accept"],
        max_age=600,
    )
    app.add_middleware(OutcomeErrors)
    app.add_middleware(RecordCall, audit=trust.audit)
    app.add_middleware(NormalizePath)
    return app
