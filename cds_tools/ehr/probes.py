"""Probes of the conformance checker beyond the plain hook calls: bad input, URL forms, CORS, client
JWTs, error bodies, feedback, and the draft-order shapes real clients send.

``Session`` is what every probe shares: the client, the report, and one ``send`` that records
what the rules about *every* answer need (1.1 JSON content type, 7-outcome error bodies) and
turns a connection failure into an answer the report can name, so one crashing probe cannot stop
the whole check.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from cds_tools.ehr.client import AUTO, CdsClient, accepted, overridden
from cds_tools.ehr.defaults import SANDBOX_LIKE_ORIGIN
from cds_tools.ehr.rules import Report
from cds_tools.ehr.signing import Signer, generate

NO_ANSWER = 599  # status of the stand-in response when the service did not answer at all
REFUSAL_WORDS = ("expired", "signature", "audience", "issuer", "jti", "replay", "kid", "algorithm", "jku")
UNSERVED_HOOKS = ("appointment-book", "encounter-discharge", "medication-refill", "order-dispatch")


class Session:
    def __init__(self, client: CdsClient, report: Report) -> None:
        self.client = client
        self.report = report
        self.errors: list[tuple[str, httpx.Response]] = []
        self.latencies_ms: list[float] = []

    def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        where: str,
        token: str | None = AUTO,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        started = time.perf_counter()
        try:
            try:
                resp = self.client.send(method, url, body, token=token, raw=raw, headers=headers)
            except httpx.TransportError:
                # A server that crashed on the previous request may have closed the pooled
                # connection; a real client reconnects, so try once more on a fresh one.
                resp = self.client.send(method, url, body, token=token, raw=raw, headers=headers)
        except httpx.HTTPError as exc:
            text = f"no answer: {type(exc).__name__}"
            return httpx.Response(NO_ANSWER, text=text, request=httpx.Request(method, url))
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        if method in ("GET", "POST"):
            if resp.status_code == 200 and resp.content:
                kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                good = kind == "application/json" or kind.endswith("+json")
                self.report.check("1.1", good, f"{where}: Content-Type {kind or 'missing'}")
            elif resp.status_code >= 400:
                self.errors.append((where, resp))
        return resp


def describe(resp: httpx.Response) -> str:
    if resp.status_code == NO_ANSWER:
        return resp.text
    return f"HTTP {resp.status_code}"


def fresh(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a request body with a new hookInstance (and the given top-level changes;
    ``None`` removes a member)."""
    out = copy.deepcopy(body)
    out["hookInstance"] = str(uuid.uuid4())
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def bad_input(s: Session, service_id: str, hooks: list[str], body: dict[str, Any]) -> None:
    """Requests a service must refuse: each should get a clear 4xx, never 2xx or 5xx."""
    url = s.client.service_url(service_id)
    no_patient = fresh(body)
    no_patient["context"].pop("patientId", None)
    unserved = next((h for h in UNSERVED_HOOKS if h not in hooks), "x-unknown-hook")
    cases: list[tuple[str, str, dict[str, Any] | None, bytes | None]] = [
        ("7-json", "malformed JSON", None, b'{"hook": "patient-view", '),
        ("7-json", "a JSON array as body", None, b"[]"),
        ("7-fields", "no hook", fresh(body, hook=None), None),
        ("7-fields", "no hookInstance", fresh(body, hookInstance=None), None),
        ("7-fields", "no context", fresh(body, context=None), None),
        ("7-context", "context without patientId", no_patient, None),
        ("7-hook", f"hook {unserved} (not served by this id)", fresh(body, hook=unserved), None),
        (
            "cds-r-1",
            "fhirAuthorization without fhirServer",
            fresh(
                body,
                fhirServer=None,
                fhirAuthorization={
                    "access_token": "conformance-check-not-a-token",
                    "token_type": "Bearer",
                    "expires_in": 60,
                    "scope": "patient/*.read",
                    "subject": "conformance",
                },
            ),
            None,
        ),
    ]
    for rule, what, case_body, raw in cases:
        resp = s.send("POST", url, case_body, raw=raw, where=f"{service_id}: {what}")
        s.report.check(rule, 400 <= resp.status_code < 500, f"{what}: {describe(resp)}, expected 4xx (400)")
    resp = s.send(
        "POST",
        s.client.service_url(f"no-such-service-{uuid.uuid4().hex[:8]}"),
        fresh(body),
        where="unknown id",
    )
    s.report.check("7-404", resp.status_code == 404, f"unknown service id: {describe(resp)}, expected 404")
    resp = s.send("GET", url, where=f"GET {service_id}")
    s.report.check("7-405", resp.status_code == 405, f"GET on a service: {describe(resp)}, expected 405")


def url_forms(s: Session, service_id: str, body: dict[str, Any], expected: int) -> None:
    """Clients build URLs by concatenation (the Sandbox does): a trailing or doubled slash must be
    answered as the plain URL is (``expected``), never with a redirect, which a browser preflight
    cannot follow, or a 404."""
    base = s.client.base
    probes = [
        ("GET", f"{base}/cds-services/", None, 200),
        ("POST", f"{base}/cds-services//{service_id}", fresh(body), expected),
        ("POST", f"{s.client.service_url(service_id)}/", fresh(body), expected),
    ]
    for method, url, req, wanted in probes:
        resp = s.send(method, url, req, where=f"{method} {url}")
        path = urlsplit(url).path
        s.report.check(
            "9.3-redirect",
            resp.status_code == wanted,
            f"{method} {path}: {describe(resp)}, expected {wanted}",
        )


def _allows(header: str | None, wanted: str) -> bool:
    values = {v.strip().lower() for v in (header or "").split(",")}
    return wanted.lower() in values


def cors(s: Session, service_id: str, origin: str) -> None:
    """Preflights as the Sandbox sends them (no Authorization), then CORS headers on answers."""
    r = s.report
    for url, method, asked in (
        (s.client.discovery_url, "GET", "authorization"),
        (s.client.service_url(service_id), "POST", "authorization,content-type"),
    ):
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": asked,
        }
        resp = s.send("OPTIONS", url, token=None, headers=headers, where=f"preflight {url}")
        path = urlsplit(url).path
        if not 200 <= resp.status_code < 300:
            r.problem("9.3-cors", f"preflight {method} {path}: {describe(resp)}, expected 2xx without a JWT")
            continue
        allow_origin = resp.headers.get("access-control-allow-origin")
        r.check(
            "9.3-cors",
            allow_origin in (origin, "*"),
            f"preflight {path}: Access-Control-Allow-Origin {allow_origin!r}",
        )
        for h in asked.split(","):
            r.check(
                "9.3-cors",
                _allows(resp.headers.get("access-control-allow-headers"), h),
                f"preflight {path}: header {h} not allowed",
            )
        methods = resp.headers.get("access-control-allow-methods")
        r.check(
            "9.3-cors",
            _allows(methods, method) or _allows(methods, "*"),
            f"preflight {path}: method {method} not allowed",
        )
    for what, resp in (
        (
            "discovery",
            s.send("GET", s.client.discovery_url, headers={"Origin": origin}, where="discovery with Origin"),
        ),
        (
            "a 404 answer",
            s.send(
                "POST",
                s.client.service_url(f"no-such-{uuid.uuid4().hex[:8]}"),
                {},
                headers={"Origin": origin},
                where="404 with Origin",
            ),
        ),
    ):
        got = resp.headers.get("access-control-allow-origin")
        r.check("9.3-cors", got in (origin, "*"), f"{what}: no Access-Control-Allow-Origin for {origin}")


def auth(s: Session, service_id: str, body: dict[str, Any], signer: Signer | None, required: bool) -> None:
    """What a service that requires client JWTs must refuse (401), and that it says no more."""
    r = s.report
    if not required:
        why = "not requested (pass --auth-required when the service demands client JWTs)"
        for rule in ("9.2-required", "9.2-invalid", "9.2-replay", "9.2-no-detail"):
            r.skip(rule, why)
        return
    service = s.client.service_url(service_id)
    feedback = {
        "feedback": [
            {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}
        ]
    }
    refusals: list[tuple[str, httpx.Response]] = []

    def expect_401(rule: str, what: str, method: str, url: str, req: Any, token: str | None) -> None:
        resp = s.send(method, url, req, token=token, where=what)
        r.check(rule, resp.status_code == 401, f"{what}: {describe(resp)}, expected 401")
        if resp.status_code == 401:
            refusals.append((what, resp))

    expect_401("9.2-required", "discovery without JWT", "GET", s.client.discovery_url, None, None)
    origin = {"Origin": SANDBOX_LIKE_ORIGIN}
    refused = s.send("GET", s.client.discovery_url, token=None, headers=origin, where="401 with Origin")
    cors_ok = refused.headers.get("access-control-allow-origin") in (SANDBOX_LIKE_ORIGIN, "*")
    r.check("9.3-cors", cors_ok, "a 401 answer has no Access-Control-Allow-Origin: browsers cannot see it")
    expect_401("9.2-required", "service call without JWT", "POST", service, fresh(body), None)
    expect_401(
        "9.2-required", "feedback without JWT", "POST", s.client.feedback_url(service_id), feedback, None
    )
    iss = signer.iss if signer else "https://ehr-simulator.cds-fasciculation.test"
    stranger = Signer(generate("ES384"), iss=iss, jku=signer.jku if signer else None)
    expect_401("9.2-invalid", "JWT with alg none", "POST", service, fresh(body), stranger.unsigned(service))
    expect_401(
        "9.2-invalid", "JWT signed by an unknown key", "POST", service, fresh(body), stranger.token(service)
    )
    if signer is None:
        r.skip("9.2-replay", "needs the client's own key (--sign) to make an otherwise valid token")
    else:
        now = int(time.time())
        wrong_aud = signer.token(s.client.discovery_url)
        expect_401(
            "9.2-invalid",
            "JWT for the discovery URL used on a service",
            "POST",
            service,
            fresh(body),
            wrong_aud,
        )
        expired = signer.token(service, iat=now - 900, exp=now - 600)
        expect_401("9.2-invalid", "expired JWT", "POST", service, fresh(body), expired)
        once = signer.token(s.client.discovery_url)
        first = s.send("GET", s.client.discovery_url, token=once, where="discovery, first use of a JWT")
        if first.status_code != 200:
            r.problem(
                "9.2-replay", f"a valid JWT was refused ({describe(first)}); is this client's issuer trusted?"
            )
        else:
            expect_401("9.2-replay", "discovery, same JWT again", "GET", s.client.discovery_url, None, once)
    for what, resp in refusals:
        text = resp.text.lower()
        leaked = [w for w in REFUSAL_WORDS if w in text]
        r.check("9.2-no-detail", not leaked, f"{what}: the 401 body mentions {', '.join(leaked)}")


def error_bodies(s: Session) -> None:
    """Every 4xx/5xx answer seen during the run should carry an OperationOutcome."""
    for where, resp in s.errors:
        try:
            body = resp.json()
        except ValueError:
            body = None
        good = isinstance(body, dict) and body.get("resourceType") == "OperationOutcome"
        s.report.check("7-outcome", good, f"{where}: {describe(resp)} without an OperationOutcome body")


def sandbox_drafts(patient: str) -> dict[str, dict[str, Any]]:
    """Drafts in the shapes the public Sandbox sends (checklist 13.2), always in a Bundle
    without ``type``: an R4 MedicationRequest before a drug is picked (no medication, no intent),
    and a DSTU2 MedicationOrder (what it sends with a DSTU2 FHIR server)."""
    return {
        "R4 draft without medication or intent": {
            "resourceType": "MedicationRequest",
            "id": "request-123",
            "status": "draft",
            "subject": {"reference": f"Patient/{patient}"},
            "authoredOn": "2026-01-01",
        },
        "DSTU2 MedicationOrder draft": {
            "resourceType": "MedicationOrder",
            "id": "order-123",
            "status": "draft",
            "patient": {"reference": f"Patient/{patient}"},
            "dateWritten": "2026-01-01",
            "medicationCodeableConcept": {"text": "acetaminophen 500 mg tablet"},
        },
    }


def feedback(s: Session, sid: str, returned: list[dict[str, Any]]) -> None:
    """Feedback as clients send it, on the cards the service returned (8)."""
    r = s.report
    cards = [c for c in returned if c.get("uuid")]
    if not cards:
        r.skip("8", f"{sid}: no card with a uuid came back, so a client has nothing to give feedback on")
        return
    items = [("overridden without reason", overridden(cards[0]))]
    with_reasons = next((c for c in cards if c.get("overrideReasons")), None)
    if with_reasons is not None:
        first = with_reasons["overrideReasons"][0]
        # As the Sandbox sends it: code and system, no display (and nothing the service left out).
        fields = first if isinstance(first, dict) else {}
        reason = {k: fields[k] for k in ("system", "code") if isinstance(fields.get(k), str)} or None
        items.append(("overridden with a reason", overridden(with_reasons, reason, "conformance check")))
    pair = next(((c, sg) for c in cards for sg in c.get("suggestions") or [] if sg.get("uuid")), None)
    if pair is not None:
        items.append(("accepted", accepted(pair[0], [pair[1]])))
    for what, item in items:
        resp = s.send(
            "POST", s.client.feedback_url(sid), {"feedback": [item]}, where=f"{sid} feedback {what}"
        )
        if resp.status_code in (404, 405) and what == items[0][0]:
            r.skip("8", f"{sid}: no feedback endpoint ({describe(resp)}); the spec makes it optional (MAY)")
            return
        r.check("8", 200 <= resp.status_code < 300, f"{sid} feedback {what}: {describe(resp)}, expected 2xx")
    stranger = {"feedback": [{**items[0][1], "card": f"unknown-card-{uuid.uuid4()}"}]}
    resp = s.send("POST", s.client.feedback_url(sid), stranger, where=f"{sid} feedback, unknown card")
    r.check(
        "8",
        resp.status_code < 500,
        f"{sid} feedback on an unknown card: {describe(resp)}, expected 2xx or 4xx",
    )
    batch = {"feedback": [item for _, item in items]}
    for attempt in ("batch", "same batch again"):
        resp = s.send("POST", s.client.feedback_url(sid), batch, where=f"{sid} feedback {attempt}")
        r.check(
            "8",
            200 <= resp.status_code < 300,
            f"{sid} feedback {attempt}: {describe(resp)}, expected 2xx",
        )
