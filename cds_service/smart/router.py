"""HTTP endpoints of the SMART app (``/smart/...``), mounted through ``Registry.routers`` by ``plugin.py``.

``GET /smart/launch``   EHR launch (``iss`` + ``launch``) or standalone launch (``iss`` only)
``GET /smart/callback`` the redirect URI: checks ``state`` and its browser, handles ``error=``
``GET /smart/app``      the page, read fresh from the EHR with the session's token
``GET /smart``          standalone start: the allow-listed EHRs
``GET /smart/jwks.json`` our public key set (confidential client with ``private_key_jwt``)

Every answer is HTML with a strict CSP, ``no-store`` and ``no-referrer`` (the callback URL holds
the code); failures are readable pages with the right status, never a stack trace.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from cds_service.clinical.settings import TopicSettings
from cds_service.http.deps import RuntimeDep
from cds_service.ops.observability import hash_patient
from cds_service.protocol.errors import PreconditionFailed
from cds_service.settings import Settings
from cds_service.smart import auth
from cds_service.smart.fhir import TokenRejected, read_patient_data
from cds_service.smart.pipeline import cards_for, patient_view_specs, resources_by_type
from cds_service.smart.render import csp, error_page, page_html, picker_page
from cds_service.smart.session import (
    LAUNCH_COOKIE,
    LAUNCH_SECONDS,
    SESSION_COOKIE,
    PendingLaunch,
    Session,
    SessionStore,
    digest,
    new_secret,
)
from cds_service.smart.view import ViewBuilder
from cds_service.smart_settings import SmartSettings

log = logging.getLogger("cds.smart")
SECTIONS = ("red-flags", "workup", "trends", "emg", "medications", "orders", "follow-up", "cards")


def section_of(app_context: str | None) -> str | None:
    """The section a card asked to open: appContext is the section id, or JSON with ``section``."""
    if not app_context:
        return None
    value: Any = app_context
    if app_context.lstrip().startswith("{"):
        try:
            value = json.loads(app_context).get("section")
        except (ValueError, AttributeError):
            return None
    return value if isinstance(value, str) and value in SECTIONS else None


def build_router(settings: Settings, smart: SmartSettings | None = None) -> APIRouter:
    """The app's routes; ``smart`` defaults to the ``CDS_SMART_*`` environment."""
    cfg = smart or SmartSettings()
    store = SessionStore()
    views = ViewBuilder(TopicSettings())
    router = APIRouter(prefix="/smart", include_in_schema=False)

    def base(request: Request) -> str:
        return (settings.public_base_url or str(request.base_url)).rstrip("/")

    def secure(request: Request) -> bool:
        return base(request).startswith("https://") or cfg.cookie_samesite == "none"

    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = csp(cfg.frame_ancestors)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def page(status: int, title: str, message: str, relaunch: bool = False) -> Response:
        return headers(
            Response(
                error_page(title, message, "/smart" if relaunch else None), status, media_type="text/html"
            )
        )

    def cookie(resp: Response, request: Request, name: str, value: str, seconds: float) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=int(seconds),
            path="/smart",
            httponly=True,
            samesite=cfg.cookie_samesite,
            secure=secure(request),
        )

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=cfg.fhir_timeout_seconds, follow_redirects=False, trust_env=False)

    @router.get("")  # /smart (the service drops a trailing slash before routing)
    async def start(request: Request) -> Response:
        if not cfg.enabled:
            return page(
                404, "App not configured", "No EHR is allow-listed for the SMART app on this service."
            )
        links = [(iss, f"{base(request)}/smart/launch?{urlencode({'iss': iss})}") for iss in cfg.allowed_iss]
        return headers(Response(picker_page(links), media_type="text/html"))

    @router.get("/jwks.json")
    async def jwks() -> Response:
        return JSONResponse(auth.public_jwks(cfg), headers={"Cache-Control": "max-age=300"})

    @router.get("/launch")
    async def launch(request: Request) -> Response:
        if not cfg.enabled:
            return page(
                404, "App not configured", "No EHR is allow-listed for the SMART app on this service."
            )
        iss = request.query_params.get("iss", "").strip()
        launch_code = request.query_params.get("launch") or None
        if not iss:
            return page(400, "Launch incomplete", "The launch did not say which EHR it came from (no iss).")
        if not cfg.iss_allowed(iss):
            log.warning(
                "smart launch refused: iss not allowed",
                extra={"fields": {"iss_host": urlsplit(iss).netloc[:100]}},
            )
            return page(
                403,
                "EHR not allowed",
                "This EHR (iss) is not on the service's allow-list, so the app will not contact it. "
                "Ask the service's administrator to register it.",
            )
        async with client() as http:
            try:
                smart_cfg = await auth.discover(http, iss.rstrip("/"))
            except auth.SmartError as exc:
                return page(exc.status, exc.title, exc.message)
        state = new_secret()
        verifier, challenge = auth.pkce_pair()
        binding = request.cookies.get(LAUNCH_COOKIE) or new_secret()
        redirect_uri = cfg.redirect_for(base(request))
        store.start_launch(
            state,
            PendingLaunch(
                iss.rstrip("/"),
                launch_code,
                verifier,
                digest(binding),
                smart_cfg,
                redirect_uri,
                time.time() + LAUNCH_SECONDS,
            ),
        )
        target = auth.authorize_url(
            smart_cfg, cfg, redirect_uri, iss.rstrip("/"), state, challenge, launch_code
        )
        resp = headers(RedirectResponse(target, status_code=302))
        cookie(resp, request, LAUNCH_COOKIE, binding, LAUNCH_SECONDS)
        log.info("smart launch started", extra={"fields": {"mode": "ehr" if launch_code else "standalone"}})
        return resp

    @router.get("/callback")
    async def callback(request: Request) -> Response:
        q = request.query_params
        state = q.get("state") or ""
        pending = store.finish_launch(state) if state else None
        if q.get("error"):
            reason = q.get("error", "")[:80]
            detail = (q.get("error_description") or "")[:300]
            return page(
                401,
                "Authorization not granted",
                f"The EHR did not authorise the app ({reason}{': ' + detail if detail else ''}). "
                "Nothing was read. Launch the app again if this was not intended.",
                relaunch=True,
            )
        if pending is None:
            return page(
                400,
                "Launch not recognised",
                "The sign-in answer does not match a launch started here (wrong or expired state). "
                "Launch the app again from the EHR.",
                relaunch=True,
            )
        binding = request.cookies.get(LAUNCH_COOKIE)
        if not binding or digest(binding) != pending.binding:
            return page(
                400,
                "Launch not recognised",
                "The sign-in answer arrived in a different browser than the one that started the launch.",
                relaunch=True,
            )
        code = q.get("code")
        if not code:
            return page(400, "Launch incomplete", "The EHR sent no authorisation code.", relaunch=True)
        async with client() as http:
            try:
                token = await auth.exchange_code(
                    http, pending.config, cfg, code, pending.verifier, pending.redirect_uri
                )
            except auth.SmartError as exc:
                return page(exc.status, exc.title, exc.message, relaunch=True)
            user = await auth.fhir_user(http, pending.config, cfg, token.id_token)
        if not token.patient:
            return page(
                400,
                "No patient in context",
                "The EHR did not say which patient the app was opened for.",
                relaunch=True,
            )
        lifetime = cfg.session_minutes * 60
        if token.expires_in is not None:
            lifetime = min(lifetime, token.expires_in)
        session = Session(
            pending.iss,
            token.access_token,
            token.patient,
            user,
            token.scope,
            token.app_context,
            time.time() + lifetime,
        )
        secret = store.open(session)
        section = section_of(token.app_context)
        resp = headers(RedirectResponse("/smart/app" + (f"#{section}" if section else ""), status_code=303))
        # The cookie outlives a short token so the page can say "expired"; the server enforces expiry.
        cookie(resp, request, SESSION_COOKIE, secret, cfg.session_minutes * 60)
        resp.delete_cookie(LAUNCH_COOKIE, path="/smart")
        log.info(
            "smart session opened",
            extra={
                "fields": {
                    "patient": hash_patient(settings.hash_key, token.patient),
                    "seconds": int(lifetime),
                }
            },
        )
        return resp

    @router.get("/app")
    async def app_page(request: Request, rt: RuntimeDep) -> Response:
        secret = request.cookies.get(SESSION_COOKIE)
        session = store.find(secret)
        if session is None:
            return page(
                401, "No active session", "Open the app from the EHR (or start it again here).", relaunch=True
            )
        if session.expired:
            store.close(secret)
            return page(
                401,
                "Session expired",
                "Your session with the EHR has expired. Launch the app again.",
                relaunch=True,
            )
        specs = patient_view_specs(rt.registry)
        async with client() as http:
            try:
                prefetch = await read_patient_data(
                    http, session.iss, session.access_token, session.patient, specs
                )
            except TokenRejected:
                store.close(secret)
                return page(
                    401,
                    "Session expired",
                    "The EHR no longer accepts this session's access token (expired or revoked). Launch the app again.",
                    relaunch=True,
                )
        now = datetime.now(UTC)
        try:
            cards = await cards_for(
                rt.registry,
                rt.settings,
                rt.gatherer,
                prefetch,
                session.patient,
                session.user,
                now,
                base(request),
            )
        except PreconditionFailed:
            return page(
                502,
                "EHR data incomplete",
                "Data the work-up needs (conditions and observations) could not be read from the EHR.",
            )
        missing = [s.key for s in specs if s.key not in prefetch]
        model = views.build(
            resources_by_type(prefetch),
            session.patient,
            now,
            cards,
            missing,
            session.iss,
            section_of(session.app_context),
        )
        return headers(Response(page_html(model), media_type="text/html"))

    return router
