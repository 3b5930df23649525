"""HTTP layer: the FastAPI app factory, the three CDS Hooks endpoints and their error mapping.

Request bodies are read and parsed here with orjson (not by FastAPI's body validation) so that
every failure maps to the status the checklist recommends (400 for malformed input, 404 unknown id,
412 missing data, 413 too large) with an OperationOutcome body, and so the request context stays raw
JSON for the lenient hook models.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service import __version__, metrics
from cds_service.data.gather import Gatherer, build_fhir_client
from cds_service.data.templates import check_template
from cds_service.health import Readiness
from cds_service.memory import pin_mmap_threshold
from cds_service.observability import configure_logging, hash_patient
from cds_service.ops import router as ops_router
from cds_service.protocol.errors import BadRequest, CdsError, NotFound, operation_outcome
from cds_service.protocol.models import (
    CdsResponse,
    DiscoveryResponse,
    FeedbackRequest,
    HookRequest,
    dump,
)
from cds_service.protocol.openapi import error_responses, feedback_openapi_extra, hook_openapi_extra
from cds_service.protocol.validate import response_problems
from cds_service.registry import HookCall, Registry, load_services
from cds_service.settings import Settings, get_settings
from cds_service.smart.router import build_router as smart_router
from cds_service.storage.db import make_engine, upgrade_async
from cds_service.storage.repo import IssuedCard, Store, parse_timestamp
from cds_service.storage.writer import IssuedWriter
from cds_service.trust.fhir_guard import check_fhir_server
from cds_service.trust.limits import check_json_shape, fits_shape
from cds_service.trust.middleware import TrustGate, audit_details, client_of
from cds_service.trust.runtime import TrustRuntime

log = logging.getLogger("cds.service")
M = TypeVar("M", bound=BaseModel)
GC_YOUNG_THRESHOLD = 10_000  # net container allocations between young collections (default 700)


class JSONResponse(StarletteJSONResponse):
    """orjson-serialised JSON; the one response class of the service. A JSONResponse subclass so
    FastAPI publishes the response models in /openapi.json (for any other class it writes "string")."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(message, status, code), status_code=status)


class NormalizePath:
    """Collapse ``//`` and drop a trailing ``/`` so clients that build URLs by concatenation (the
    Sandbox does) reach the route directly: a redirect would break CORS preflights."""

    _slashes = re.compile(r"/{2,}")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = self._slashes.sub("/", scope["path"])
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/") or "/"
            if path != scope["path"]:
                scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)


class GuardErrors:
    """Turn any unexpected exception into a 500 OperationOutcome *inside* the CORS layer, so
    browsers see the status; the traceback goes to the log, never to the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error")
            if started:
                raise
            resp = error_response(500, "Internal error in the CDS service; see the service log.")
            await resp(scope, receive, send)


@dataclass
class Runtime:
    """Per-process resources created at start-up and shared by all requests (never mutated)."""

    settings: Settings
    registry: Registry
    store: Store
    gatherer: Gatherer
    http: httpx.AsyncClient
    issued: IssuedWriter  # issued-card rows, written off the response path


def _validation_message(exc: ValidationError, prefix: str) -> str:
    """Field paths and reasons only: pydantic's own text can echo input values (PHI)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{prefix}{loc}: {err['msg']}")
    return "; ".join(parts)


async def read_json_object(request: Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object, within the byte, depth and element limits of the settings."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise CdsError(413, f"Request body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise CdsError(413, f"Request body larger than {limit} bytes")
    if not body:
        raise BadRequest("Request body is empty; a JSON object is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    if not fits_shape(body, settings.max_json_depth, settings.max_json_elements):
        check_json_shape(data, settings.max_json_depth, settings.max_json_elements)
    return data


async def parse_for_service(request: Request, r: Runtime, service_id: str, model: type[M]) -> M:
    """The body of a call to a known service, as ``model``: 404 for an unknown id (before reading
    the body), 400 naming the fields for a body that does not fit."""
    if not r.registry.has_id(service_id):
        raise NotFound(f"No CDS service with id '{service_id}'")
    raw = await read_json_object(request, r.settings)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(_validation_message(exc, "")) from None


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
        settings.warn_if_dev(log)
        if settings.migrate_on_start:
            await upgrade_async(settings.db_url)
        engine = make_engine(settings.db_url)
        http = build_fhir_client(settings)
        store = Store(engine)
        app.state.readiness = Readiness(engine, settings.redis_url, settings.readiness_timeout_seconds)
        issued = IssuedWriter(store)
        issued.start()
        app.state.rt = Runtime(settings, registry, store, Gatherer(settings, http), http, issued)
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
        pin_mmap_threshold()  # large bodies' memory goes back to the system (cds_service/memory.py)
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
            await app.state.readiness.close()
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
        return JSONResponse(exc.outcome(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "No such endpoint", 405: "Method not allowed on this endpoint"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "Invalid request")

    def rt(request: Request) -> Runtime:
        runtime: Runtime = request.app.state.rt
        return runtime

    @app.get(
        "/cds-services", response_model=DiscoveryResponse, tags=["CDS Hooks"], responses=error_responses(401)
    )
    async def discovery(request: Request) -> Response:
        """Discovery: every (id, hook) this process serves, with its prefetch templates."""
        services = [s.descriptor() for s in rt(request).registry.all()]
        return JSONResponse(dump(DiscoveryResponse(services=services)))

    @app.post(
        "/cds-services/{service_id}",
        response_model=CdsResponse,
        tags=["CDS Hooks"],
        responses=error_responses(400, 401, 404, 412, 413),
        openapi_extra=hook_openapi_extra(),  # the body is parsed by hand (exact 400/404/412), not by FastAPI
    )
    async def call_service(service_id: str, request: Request) -> Response:
        """Invoke a service: dispatch on (id, hook), gather data, run the handler, check the answer."""
        r = rt(request)
        req = await parse_for_service(request, r, service_id, HookRequest)
        service = r.registry.get(service_id, req.hook)
        if service is None:
            served = ", ".join(r.registry.hooks_of(service_id))
            raise BadRequest(f"Service '{service_id}' does not serve hook '{req.hook}' (it serves: {served})")
        metrics.label_call(request, service_id, req.hook)
        try:
            context = service.context_model().model_validate(req.context)
        except ValidationError as exc:
            raise BadRequest(_validation_message(exc, "context.")) from None
        if req.fhirAuthorization is not None and not req.fhirServer:
            raise BadRequest("fhirServer is required when fhirAuthorization is given")
        patient_hash = hash_patient(r.settings.hash_key, str(req.context.get("patientId") or ""))
        audit_details(request, hook=req.hook, hookInstance=req.hookInstance[:200], patient=patient_hash)
        check_fhir_server(req, client_of(request), r.settings.https_fhir_only)
        data = await r.gatherer.gather(service.prefetch, req)
        now = datetime.now(UTC)
        base = r.settings.public_base_url or str(request.base_url)
        result = await service.handler(HookCall(req, context, data, now, base.rstrip("/")))
        audit_details(request, cards=len(result.issued), rules=sorted({c.rule_id for c in result.issued}))
        if r.settings.self_check:
            problems = response_problems(result.body)
            if problems:
                log.error("response failed self-check", extra={"fields": {"problems": problems[:20]}})
                raise CdsError(500, "The service produced a non-conformant response; it was withheld.")
        await r.issued.submit(
            [
                IssuedCard(
                    card_uuid=c.card_uuid,
                    service_id=service_id,
                    rule_id=c.rule_id,
                    indicator=c.indicator,
                    hook=req.hook,
                    hook_instance=req.hookInstance[:200],
                    patient_hash=patient_hash,
                    issued_at=now,
                )
                for c in result.issued
            ]
        )
        metrics.cards_issued(service_id, result.issued)
        return JSONResponse(result.body)

    @app.post(
        "/cds-services/{service_id}/feedback",
        tags=["CDS Hooks"],
        responses=error_responses(400, 401, 404, 413),
        openapi_extra=feedback_openapi_extra(),
    )
    async def feedback(service_id: str, request: Request) -> Response:
        """Store feedback durably (idempotently) before answering 200."""
        r = rt(request)
        fb = await parse_for_service(request, r, service_id, FeedbackRequest)
        for i, item in enumerate(fb.feedback):
            if item.outcome == "accepted" and not item.acceptedSuggestions:
                raise BadRequest(f"feedback.{i}: acceptedSuggestions is required for outcome 'accepted'")
            try:
                parse_timestamp(item.outcomeTimestamp)
            except ValueError:
                raise BadRequest(f"feedback.{i}.outcomeTimestamp: not an RFC 3339 timestamp") from None
        stored = await r.store.save_feedback(service_id, fb.feedback, datetime.now(UTC))
        metrics.feedback_received(service_id, fb.feedback)
        log.info(
            "feedback stored",
            extra={"fields": {"service": service_id, "items": len(fb.feedback), "new": stored}},
        )
        return JSONResponse({})

    @app.get("/evidence", include_in_schema=False)
    @app.get("/evidence/{name}", include_in_schema=False)
    async def evidence(request: Request, name: str = "index") -> Response:
        """Pages a topic publishes about its cards (rule, evidence, codes), linked from every card."""
        r = rt(request)
        page = r.registry.pages.get(name)
        if page is None:
            raise NotFound(f"No page '{name}'")
        base = (r.settings.public_base_url or str(request.base_url)).rstrip("/")
        return Response(page(base), media_type="text/html; charset=utf-8")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok"})

    app.include_router(ops_router)  # /readyz, /metrics, /analytics/feedback
    app.include_router(smart_router(settings))  # /smart/...: the SMART companion app (docs/smart-app.md)
    app.add_middleware(TrustGate, trust=trust)  # innermost: its 401s pass through CORS
    app.add_middleware(GuardErrors)
    origins = settings.cors_allow_origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Accept"],
        max_age=600,
    )
    app.add_middleware(metrics.MetricsMiddleware)  # outside CORS and trust: counts their answers too
    app.add_middleware(NormalizePath)
    return app
