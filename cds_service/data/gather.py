"""The prefetch engine: turn a request's prefetch into data, fetching what is missing.

Decision table (spec 4.2/4.3, checklist "Prefetch key state"):

========================  =====================================================================
key state                 action
========================  =====================================================================
resource / Bundle         use it; follow ``next`` links when the spec asks for all pages
``null``                  the client has no data: empty, never re-fetched
OperationOutcome, or a    the client hit an error: re-fetch when we may, else treat as failed
Bundle holding an error
absent                    fetch ``{fhirServer}/{rendered template}`` when we may
========================  =====================================================================

"When we may" = ``fhirServer`` is given and either ``fhirAuthorization`` is present or the
``allow_open_fhir_fetch`` setting is on (the public Sandbox sends no token; dev profile only).
All fetches of one request run in parallel over one pooled client under one deadline. A required
key that cannot be had raises ``PreconditionFailed`` (412) naming the key; an optional one is
reported to the handler as missing so a card can say its data was incomplete.

The access token only ever travels in the ``Authorization`` header to the ``fhirServer`` origin; it
is never put into a message, a log line or a stored row.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from cds_service.data.complete import cut_without_link, merge_pages
from cds_service.data.fhir_auth import scope_refusal, token_refusal
from cds_service.data.prefetch import PrefetchSpec
from cds_service.data.sieve import Sieve, lean_bundle
from cds_service.data.templates import render_for_fetch, token_values
from cds_service.data.tls import client_tls_context, tls_verify_failed
from cds_service.jsonshape import items
from cds_service.ops import metrics
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import HookRequest
from cds_service.settings import Settings

FHIR_ACCEPT = "application/fhir+json, application/json;q=0.9"


class KeyState(StrEnum):
    PREFETCHED = "prefetched"  # given by the client, used as is
    NULL = "null"  # client said: no data
    FETCHED = "fetched"  # we fetched it from fhirServer
    PARTIAL = "partial"  # data present but some pages could not be had
    MISSING = "missing"  # optional key we could not get


@dataclass
class KeyResult:
    key: str
    state: KeyState
    resources: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None
    fetch_ms: float | None = None
    required: bool = False  # the service cannot answer without this key (set by ``gather``)


@dataclass
class GatheredData:
    """Per prefetch key, the resources obtained and how; what the handler works from."""

    keys: dict[str, KeyResult] = field(default_factory=dict)

    def resources(self, key: str) -> list[dict[str, Any]]:
        r = self.keys.get(key)
        return r.resources if r else []

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        """Every resource of a type across keys, once per id (keys may overlap)."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for r in self.keys.values():
            for res in r.resources:
                if res.get("resourceType") != resource_type:
                    continue
                rid = res.get("id")
                if isinstance(rid, str):
                    if rid in seen:
                        continue
                    seen.add(rid)
                out.append(res)
        return out

    @property
    def missing(self) -> list[str]:
        return [k for k, r in self.keys.items() if r.state in (KeyState.MISSING, KeyState.PARTIAL)]

    @property
    def incomplete_required(self) -> list[KeyResult]:
        """Required keys whose data are only partly had (cut-off pages): the record is not whole, so
        an answer must never imply that something is absent (issue 17; ``complete.py``)."""
        return [r for r in self.keys.values() if r.required and r.state is KeyState.PARTIAL]

    @property
    def fetched(self) -> list[str]:
        return [k for k, r in self.keys.items() if r.state == KeyState.FETCHED]


# A request started with less time than this left would time out at once; not worth a connection.
_MIN_REQUEST_SECONDS = 0.05


class _FetchFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _has_error(value: dict[str, Any]) -> bool:
    """True for an OperationOutcome, or a Bundle that carries one with an error or fatal issue."""
    if value.get("resourceType") == "OperationOutcome":
        return True
    if value.get("resourceType") == "Bundle":
        for e in items(value.get("entry")):
            res = e.get("resource")
            if (
                isinstance(res, dict)
                and res.get("resourceType") == "OperationOutcome"
                and any(i.get("severity") in ("error", "fatal") for i in items(res.get("issue")))
            ):
                return True
    return False


def _entries(value: dict[str, Any]) -> list[dict[str, Any]]:
    """Resources of a Bundle (informational OperationOutcomes dropped), or ``[resource]``."""
    if value.get("resourceType") != "Bundle":
        return [value]
    out = []
    for e in items(value.get("entry")):
        res = e.get("resource")
        kind = res.get("resourceType") if isinstance(res, dict) else None
        if isinstance(res, dict) and isinstance(kind, str) and kind != "OperationOutcome":
            out.append(res)
    return out


def _next_link(value: dict[str, Any]) -> str | None:
    if value.get("resourceType") != "Bundle":
        return None
    for link in items(value.get("link")):
        if link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class Gatherer:
    """Collects the data a service needs for one request; one instance per process."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.lingering: set[asyncio.Task[tuple[list[dict[str, Any]], bool]]] = set()
        # Admission to the client's pool: a request enters httpx only when a connection is free
        # (see _fetch), so it never waits inside the pool.
        self._slots = asyncio.Semaphore(settings.fhir_max_connections)

    async def gather(
        self, specs: tuple[PrefetchSpec, ...], request: HookRequest, sieve: Sieve | None = None
    ) -> GatheredData:
        data = GatheredData()
        given = request.prefetch or {}
        to_fetch: list[tuple[PrefetchSpec, str | None, list[dict[str, Any]], str | None]] = []
        # (spec, url to fetch or None, resources so far, why the client's copy was not usable)
        for spec in specs:
            if spec.key in given:
                value = given[spec.key]
                if value is None:
                    data.keys[spec.key] = KeyResult(spec.key, KeyState.NULL)
                    continue
                if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
                    to_fetch.append((spec, None, [], "prefetch value is not a FHIR resource"))
                    continue
                if _has_error(value):
                    to_fetch.append((spec, None, [], "client reported an OperationOutcome"))
                    continue
                resources = _entries(value)
                nxt = _next_link(value) if spec.all_pages else None
                cut = cut_without_link(value) if spec.all_pages and nxt is None else None
                if cut is not None:  # fetch the whole search again; keep what was given meanwhile
                    to_fetch.append((spec, None, resources, cut))
                elif nxt is None:
                    data.keys[spec.key] = KeyResult(spec.key, KeyState.PREFETCHED, resources)
                else:
                    to_fetch.append((spec, nxt, resources, None))
            else:
                to_fetch.append((spec, None, [], "not in prefetch"))

        if to_fetch:
            await self._fetch_all(request, to_fetch, data, sieve)

        for spec in specs:
            data.keys[spec.key].required = spec.required
        metrics.prefetch_observed(data.keys.values())
        failed = [
            r for spec in specs if spec.required and (r := data.keys[spec.key]).state is KeyState.MISSING
        ]
        if failed:
            detail = "; ".join(f"'{r.key}': {r.problem}" for r in failed)
            raise PreconditionFailed(f"Required FHIR data could not be obtained: {detail}")
        return data

    def _can_fetch(self, request: HookRequest) -> str | None:
        """None when we may call the FHIR server, else why not."""
        if not request.fhirServer:
            return "no fhirServer in the request"
        if request.fhirAuthorization is None and not self.settings.open_fetch:
            return "no fhirAuthorization in the request (tokenless fetch is disabled)"
        scheme = urlsplit(request.fhirServer).scheme.lower()
        if scheme not in ("http", "https"):
            return "fhirServer is not an http(s) URL"
        if request.fhirAuthorization is not None:
            return token_refusal(request.fhirAuthorization)
        return None

    async def _fetch_all(
        self,
        request: HookRequest,
        jobs: list[tuple[PrefetchSpec, str | None, list[dict[str, Any]], str | None]],
        data: GatheredData,
        sieve: Sieve | None = None,
    ) -> None:
        refusal = self._can_fetch(request)
        values = token_values(request.context)
        tasks: dict[
            asyncio.Task[tuple[list[dict[str, Any]], bool]], tuple[PrefetchSpec, list[dict[str, Any]]]
        ] = {}
        stop_at = time.monotonic() + self.settings.prefetch_deadline_seconds
        for spec, next_url, so_far, why in jobs:
            if refusal is not None:
                state = KeyState.PARTIAL if next_url or so_far else KeyState.MISSING
                data.keys[spec.key] = KeyResult(spec.key, state, so_far, f"{why or 'more pages'}; {refusal}")
                continue
            if next_url is None:
                rendered = render_for_fetch(spec.template, values)
                if rendered is None:
                    data.keys[spec.key] = KeyResult(
                        spec.key,
                        KeyState.PARTIAL if so_far else KeyState.MISSING,
                        so_far,
                        f"{why}; template token not in context",
                    )
                    continue
                assert request.fhirServer is not None
                narrow = scope_refusal(request.fhirAuthorization, rendered) if request.fhirAuthorization else None
                if narrow is not None:
                    data.keys[spec.key] = KeyResult(spec.key, KeyState.MISSING, [], f"{why}; {narrow}")
                    continue
                url = request.fhirServer.rstrip("/") + "/" + rendered.lstrip("/")
            else:
                url = next_url
            task = asyncio.create_task(self._fetch(url, request, spec.all_pages, stop_at, sieve))
            tasks[task] = (spec, so_far)
        if not tasks:
            return
        started = time.perf_counter()
        done, pending = await asyncio.wait(tasks, timeout=self.settings.prefetch_deadline_seconds)
        for task in pending:
            self._linger(task)
        elapsed = (time.perf_counter() - started) * 1000
        for task, (spec, so_far) in tasks.items():
            if task in done and task.exception() is None:
                got, truncated = task.result()
                data.keys[spec.key] = KeyResult(
                    spec.key,
                    KeyState.PARTIAL if truncated else KeyState.FETCHED,
                    merge_pages(so_far, got),
                    f"stopped after {self.settings.fhir_page_cap} pages" if truncated else None,
                    fetch_ms=elapsed,
                )
                continue
            if task in done:
                exc = task.exception()
                reason = exc.reason if isinstance(exc, _FetchFailed) else "FHIR request failed"
            else:
                reason = f"FHIR server did not answer within {self.settings.prefetch_deadline_seconds:g} s"
            state = KeyState.PARTIAL if so_far else KeyState.MISSING
            data.keys[spec.key] = KeyResult(spec.key, state, so_far, reason, fetch_ms=elapsed)

    def _linger(self, task: asyncio.Task[tuple[list[dict[str, Any]], bool]]) -> None:
        """Leave a fetch still running at the deadline to end by its own timeouts; never cancel it.

        A request cancelled while it waits in httpx's connection pool for a connection just made
        for it (not connected yet) leaks that pool slot for good (httpcore 1.0.9,
        encode/httpcore#1093); a pool-wait timeout is such a cancellation too. Under a slow FHIR
        server the slots ran out within a minute of the long load run, after which no request
        reached the FHIR server any more and every call without prefetch was a 412 until restart
        (found by load/loadtest.py). So: requests wait for a connection in our own semaphore, never
        in the pool (``_fetch``), and a fetch still running at the deadline is not cancelled. Its
        requests carry connect, read and write timeouts of the time that was left, so it ends about
        one deadline later; its result is dropped, the key having been reported as not answered.
        """
        self.lingering.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[tuple[list[dict[str, Any]], bool]]) -> None:
        self.lingering.discard(task)
        if not task.cancelled():
            task.exception()  # retrieve it: a late failure is expected and was already reported

    async def _get(self, url: str, headers: dict[str, str], stop_at: float) -> httpx.Response:
        """One GET, admitted by ``_slots`` (so httpx's pool always has a connection for it, and it
        never waits there: see ``_linger``) and bounded by the time left until ``stop_at``."""
        left = stop_at - time.monotonic()
        if left <= _MIN_REQUEST_SECONDS:
            raise _FetchFailed("FHIR request timed out")
        try:
            await asyncio.wait_for(self._slots.acquire(), left)
        except TimeoutError:
            raise _FetchFailed("FHIR request timed out") from None
        try:
            left = max(stop_at - time.monotonic(), _MIN_REQUEST_SECONDS)
            connect = min(left, self.settings.fhir_connect_timeout_seconds)
            timeout = httpx.Timeout(connect=connect, read=left, write=left, pool=None)
            return await self.client.get(url, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise _FetchFailed("FHIR request timed out") from None
        except httpx.HTTPError as exc:
            if tls_verify_failed(exc):
                raise _FetchFailed(
                    "the FHIR server's TLS certificate is not trusted (its CA may be set with CDS_TLS_CA_BUNDLE)"
                ) from None
            raise _FetchFailed("could not connect to the FHIR server") from None
        finally:
            self._slots.release()

    async def _fetch(
        self, url: str, request: HookRequest, all_pages: bool, stop_at: float, sieve: Sieve | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """GET one query (and its next pages) -> (resources, stopped at the page cap).

        Every request gets the time left until ``stop_at`` (``time.monotonic()``) as its timeouts,
        so the fetch ends by itself near the deadline (see ``_linger``).
        Raises _FetchFailed with a reason that never contains the token or the URL.
        """
        assert request.fhirServer is not None
        home = _origin(request.fhirServer)
        headers = {"Accept": FHIR_ACCEPT}
        if request.fhirAuthorization is not None:
            headers["Authorization"] = f"Bearer {request.fhirAuthorization.access_token}"
        out: list[dict[str, Any]] = []
        pages = 0
        next_url: str | None = url
        while next_url is not None:
            if _origin(next_url) != home:
                raise _FetchFailed("next link points away from fhirServer; not followed")
            resp = await self._get(next_url, headers, stop_at)
            if resp.status_code in (401, 403):
                why = (
                    ": the fhirAuthorization token was not accepted (expired, revoked or issued for another server)"
                    if request.fhirAuthorization is not None
                    else ""
                )
                raise _FetchFailed(f"FHIR server refused access (HTTP {resp.status_code}){why}")
            if not 200 <= resp.status_code < 300:
                raise _FetchFailed(f"FHIR server answered HTTP {resp.status_code}")
            try:
                # With the service's sieve, resources it cannot use arrive as stubs, as in a
                # prefetch (cds_service/data/sieve.py); the answer is the same either way.
                body = orjson.loads(resp.content) if sieve is None else lean_bundle(resp.content, sieve)
            except orjson.JSONDecodeError:
                raise _FetchFailed("FHIR server sent invalid JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
                raise _FetchFailed("FHIR server sent something that is not a FHIR resource")
            if _has_error(body):
                raise _FetchFailed("FHIR server answered with an OperationOutcome")
            out.extend(_entries(body))
            pages += 1
            next_url = _next_link(body) if all_pages else None
            if next_url is not None and pages >= self.settings.fhir_page_cap:
                return out, True
        return out, False


def _remember_missing_sniffio() -> None:
    """httpcore runs ``import sniffio`` on every request to learn which async library runs it. When
    sniffio is not installed (it is optional), each of those imports fails only after searching the
    whole ``sys.path`` again: about a third of the service's CPU time on a call that fetches from
    fhirServer (docs/performance.md). Recording the absence in ``sys.modules`` makes the import fail
    at once, with the same outcome (asyncio)."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # documented: import raises at once


def build_fhir_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client per process; redirects are not followed so a token never leaves its origin."""
    _remember_missing_sniffio()
    timeout = httpx.Timeout(settings.prefetch_deadline_seconds, connect=settings.fhir_connect_timeout_seconds)
    limits = httpx.Limits(
        max_connections=settings.fhir_max_connections, max_keepalive_connections=settings.fhir_max_connections
    )
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        trust_env=False,
        verify=client_tls_context(settings),  # CDS_TLS_CA_BUNDLE / CDS_TLS_SYSTEM_TRUST
    )
