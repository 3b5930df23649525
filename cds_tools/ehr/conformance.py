"""The conformance checker: plays a CDS client against any CDS Hooks service and reports, per rule
of the CDS Hooks 2.0 checklist (``rules.RULES``), what it observed.

The run, in order:

1. transport (1.2) and discovery (2.1, 2.2, titles, 4.1 templates);
2. per discovered (id, hook) it knows the context of: one call per patient with the prefetch
   resolved from ``--fhir`` (or, without a FHIR server, every key ``null``), checked against every
   response rule by ``cds_service.protocol.validate`` (the project's single response validator);
3. for the first patient, the data paths of spec 4.2/4.3: all keys ``null``; no prefetch and no
   fhirServer (412); OperationOutcome values; no prefetch with fhirServer; and unknown fields (10);
4. dispatch on (id, hook) (2.5) and feedback on the cards that came back (8);
5. once, the HTTP probes of ``probes``: bad input (7), URL forms, CORS, client JWTs, error bodies.

Rules that nothing exercised are reported as skipped with the reason (no card had suggestions,
no ``--auth-required``...), so a pass always means "seen and correct".
"""

from __future__ import annotations

import ipaddress
import json
import statistics
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from cds_service.data.templates import check_template
from cds_service.protocol.validate import card_recommendations, discovery_problems, response_problems, rule_of
from cds_tools.ehr import probes
from cds_tools.ehr.client import (
    ORDER_HOOKS,
    CdsClient,
    fhir_authorization,
    hook_context,
    hook_request,
)
from cds_tools.ehr.defaults import DEFAULT_USER, SANDBOX_LIKE_ORIGIN
from cds_tools.ehr.prefetch import Fetched, FhirReader, Plan, SearchMode, resolve, shape
from cds_tools.ehr.probes import Session, describe, fresh
from cds_tools.ehr.rules import Report
from cds_tools.ehr.signing import Signer

KNOWN_HOOKS = ("patient-view", "order-select", "order-sign", "encounter-start", "encounter-discharge")
EXTENSION = {"org.cds-fasciculation.conformance": {"probe": "unknown fields must be tolerated"}}


class UnknownService(ValueError):
    """``--service`` names an id the discovery document does not list."""


@dataclass
class Options:
    base_url: str
    service: str | None = None
    fhir: str | None = None
    patients: tuple[str, ...] = ()
    user: str = DEFAULT_USER
    fhir_token: str | None = None
    send_fhir_authorization: bool = False
    search: SearchMode = "get"
    drafts: dict[str, Any] | None = None
    auth_required: bool = False
    origin: str = SANDBOX_LIKE_ORIGIN


def exercised(body: Any) -> set[str]:
    """The response rules this answer gives something to check."""
    out = {"6", "1.3/1.4"}
    cards = [c for c in body.get("cards") or [] if isinstance(c, dict)] if isinstance(body, dict) else []
    if cards:
        out |= {"6.1-summary", "6.1-indicator", "6.1-source", "6.1-card", "6.1-uuid"}
    actions: list[Any] = list(body.get("systemActions") or []) if isinstance(body, dict) else []
    for c in cards:
        if c.get("suggestions"):
            out |= {"6.1-suggestions", "cds-resp-6"}
            if c.get("selectionBehavior") == "at-most-one":
                out.add("cds-resp-1")
            for s in c["suggestions"] if isinstance(c["suggestions"], list) else []:
                actions += s.get("actions") or [] if isinstance(s, dict) else []
        if c.get("overrideReasons"):
            out |= {"6.1-overrideReasons", "cds-resp-4"}
        if c.get("links"):
            out |= {"6.1-links", "cds-resp-3"}
    if actions:
        out |= {"6.1-action", "cds-resp-5"}
    if any(isinstance(a, dict) and a.get("type") == "delete" for a in actions):
        out.add("cds-resp-2")
    return out


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Main:
    """The plain call of one (id, hook) (a successful one when there was one): its request is
    the template of the later probes, its status what URL variants must also get."""

    service: dict[str, Any]
    body: dict[str, Any]
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 200


class Checker:
    def __init__(self, opts: Options, http: httpx.Client, signer: Signer | None = None) -> None:
        self.opts = opts
        self.signer = signer
        self.client = CdsClient(opts.base_url, http, signer)
        self.report = Report(self.client.discovery_url)
        self.s = Session(self.client, self.report)
        self.reader = FhirReader(opts.fhir, http, opts.fhir_token, opts.search) if opts.fhir else None
        self.cards: dict[str, list[dict[str, Any]]] = {}
        self.status: dict[tuple[str, str], int] = {}
        self._fetch_cache: dict[tuple[str, str], list[Fetched]] = {}

    # ------------------------------------------------------------------ run

    def run(self) -> Report:
        r = self.report
        if urlsplit(self.client.base).scheme == "https":
            r.ok("1.2")
        elif _loopback(self.client.base):
            r.skip("1.2", "loopback test run: plain http")
        else:
            r.problem("1.2", f"{self.client.base} is not https")
        services = self._discovery()
        if services is None:
            return r
        selected = [s for s in services if not self.opts.service or s.get("id") == self.opts.service]
        if self.opts.service and not selected:
            raise UnknownService(f"discovery lists no service with id {self.opts.service!r}")
        mains: list[_Main] = []
        for svc in selected:
            main = self._hook_calls(svc)
            if main is not None:
                mains.append(main)
        self._dispatch(selected)
        for sid in dict.fromkeys(str(s.get("id")) for s in selected):
            probes.feedback(self.s, sid, self.cards.get(sid, []))
        if mains:
            first = next((m for m in mains if m.ok), mains[0])
            sid = str(first.service["id"])
            hooks = [str(s.get("hook")) for s in services if s.get("id") == sid]
            probes.bad_input(self.s, sid, hooks, first.body)
            probes.url_forms(self.s, sid, first.body, first.status)
            probes.cors(self.s, sid, self.opts.origin)
            probes.auth(self.s, sid, first.body, self.signer, self.opts.auth_required)
        else:
            r.notes.append(
                "No hook call was answered 200, so the probes of sections 7, 8, 9 and 10 did not run."
            )
        probes.error_bodies(self.s)
        if self.s.latencies_ms:
            r.notes.append(
                f"Latency over {len(self.s.latencies_ms)} requests: median {statistics.median(self.s.latencies_ms):.0f} ms, "
                f"max {max(self.s.latencies_ms):.0f} ms (spec 3: SHOULD respond in about 500 ms; not a rule here)."
            )
        return r

    # ------------------------------------------------------------------ discovery

    def _discovery(self) -> list[dict[str, Any]] | None:
        r = self.report
        resp = self.s.send("GET", self.client.discovery_url, where="discovery")
        if resp.status_code != 200:
            hint = " (is this client's JWT issuer trusted by the service?)" if resp.status_code == 401 else ""
            r.problem("2.1", f"GET {self.client.discovery_url}: {describe(resp)}{hint}")
            return None
        r.ok("2.1")
        try:
            body = resp.json()
        except ValueError:
            r.problem("2.2", "discovery body is not JSON")
            return None
        problems = discovery_problems(body)
        for p in problems:
            r.problem(rule_of(p), f"discovery: {p}")
        r.ok("2.2")
        r.ok("1.3/1.4")
        if not isinstance(body, dict) or not isinstance(body.get("services"), list):
            return None
        # Entries without a string id and hook cannot be called (already a 2.2 problem).
        services = [
            s
            for s in body["services"]
            if isinstance(s, dict) and isinstance(s.get("id"), str) and isinstance(s.get("hook"), str)
        ]
        self._distinct_ids(services)
        for s in services:
            where = f"{s.get('id')}/{s.get('hook')}"
            r.check("2.2-title", bool(s.get("title")), f"{where}: no title")
            for key, template in (s.get("prefetch") or {}).items():
                self._template(where, key, template)
        return services

    def _distinct_ids(self, services: list[dict[str, Any]]) -> None:
        """2.5-ids: the spec lets one id serve several hooks, but the CDS Hooks Sandbox keys
        discovered services by ``{discovery URL}/{id}``: entries sharing an id overwrite each other
        and only the last hook is ever called, without any error. So a shared id is a failure."""
        hooks: dict[str, list[str]] = {}
        for s in services:
            hooks.setdefault(str(s["id"]), []).append(str(s["hook"]))
        for sid, hs in hooks.items():
            self.report.check(
                "2.5-ids",
                len(hs) == 1,
                f"id {sid!r} is listed for {len(hs)} hooks ({', '.join(hs)}): clients that key services "
                f"by id (the CDS Hooks Sandbox) keep only the last entry, so {', '.join(hs[:-1])} "
                "would never be called; give each entry its own id",
            )

    def _template(self, where: str, key: str, template: Any) -> None:
        if not isinstance(template, str):
            return  # already a 2.2 problem
        try:
            check_template(template)
        except ValueError as exc:
            self.report.problem("4.1", f"{where} prefetch {key}: {exc}")
            return
        path = template.partition("?")[0]
        relative = "://" not in path and not path.startswith("/") and path[:1].isupper()
        self.report.check(
            "4.1", relative, f"{where} prefetch {key}: not a relative read or search ({template[:60]})"
        )

    # ------------------------------------------------------------------ hook calls

    def _fetched(self, svc: dict[str, Any], context: dict[str, Any]) -> list[Fetched]:
        templates = svc.get("prefetch") or {}
        cache_key = (json.dumps(templates, sort_keys=True), json.dumps(context.get("patientId")))
        if cache_key not in self._fetch_cache:
            self._fetch_cache[cache_key] = resolve(templates, context, self.reader)
        return self._fetch_cache[cache_key]

    def _request(
        self, svc: dict[str, Any], patient: str, plan: Plan, fhir_server: bool, authorize: bool
    ) -> dict[str, Any]:
        hook = str(svc["hook"])
        encounter = "ehr-sim-encounter" if hook.startswith("encounter-") else None
        ctx = hook_context(hook, patient, self.opts.user, encounter, self.opts.drafts)
        prefetch = shape(self._fetched(svc, ctx), plan) if svc.get("prefetch") else None
        server = self.opts.fhir if fhir_server else None
        auth = None
        if authorize and server and self.opts.send_fhir_authorization and self.opts.fhir_token:
            auth = fhir_authorization(self.opts.fhir_token, patient)
        return hook_request(hook, ctx, prefetch, server, auth)

    def _answer(self, resp: httpx.Response, where: str) -> dict[str, Any] | None:
        """Check a 200 answer against every response rule; the body, or None."""
        if resp.status_code != 200:
            return None
        try:
            body = resp.json()
        except ValueError:
            self.report.problem("6", f"{where}: 200 without a JSON body")
            return None
        for p in response_problems(body):
            self.report.problem(rule_of(p), f"{where}: {p}")
        for rule in exercised(body):
            self.report.ok(rule)
        if not isinstance(body, dict):
            return None
        for i, card in enumerate(body.get("cards") or []):
            for p in card_recommendations(card, f"cards[{i}]"):
                self.report.problem("6.1-uuid", f"{where}: {p}")
        return body

    def _hook_calls(self, svc: dict[str, Any]) -> _Main | None:
        """One call per patient, then (first patient) the data paths and unknown fields."""
        r = self.report
        sid, hook = str(svc.get("id")), str(svc.get("hook"))
        where = f"{sid}/{hook}"
        if hook not in KNOWN_HOOKS:
            r.notes.append(f"{where}: not called (the checker builds contexts for {', '.join(KNOWN_HOOKS)}).")
            return None
        url = self.client.service_url(sid)
        patients = self.opts.patients or ("ehr-sim-patient",)
        main: _Main | None = None
        for patient in patients:
            body = self._request(svc, patient, Plan(), fhir_server=True, authorize=True)
            resp = self.s.send("POST", url, body, where=f"{where} {patient}")
            self.status.setdefault((sid, hook), resp.status_code)
            r.check(
                "6", resp.status_code == 200, f"{where} patient {patient}: {describe(resp)}, expected 200"
            )
            answer = self._answer(resp, f"{where} {patient}")
            if answer is not None:
                self.cards.setdefault(sid, []).extend(
                    c for c in answer.get("cards") or [] if isinstance(c, dict)
                )
            if main is None or (not main.ok and answer is not None):
                main = _Main(svc, body, resp.status_code)
        assert main is not None
        if svc.get("prefetch"):
            self._data_paths(svc, patients[0])
        else:
            for rule in ("4.2-null", "4.3.1", "4.3.2", "4.3.6"):
                r.skip(rule, f"{where} declares no prefetch")
        if not main.ok:
            r.skip("10", f"{where}: the plain call was not answered 200, so there is nothing to compare with")
            return main
        self._tolerance(main, where, url)
        return main

    def _tolerance(self, main: _Main, where: str, url: str) -> None:
        """Requests that are valid, or what real clients send, and must not be refused."""
        r = self.report
        unknown = fresh(main.body, extension=EXTENSION, futureTopLevelField={"x": 1})
        unknown["context"]["futureContextField"] = "x"
        unknown["prefetch"] = {**(unknown.get("prefetch") or {}), "notDeclaredByTheService": None}
        resp = self.s.send("POST", url, unknown, where=f"{where} with unknown fields")
        r.check(
            "10",
            resp.status_code == 200,
            f"{where} extension and unknown fields: {describe(resp)}, expected 200",
        )
        self._answer(resp, f"{where} with unknown fields")
        legacy = fresh(main.body)
        legacy["hookInstance"] = "conformance-check-not-a-uuid"  # 1.0-era and test clients vary
        resp = self.s.send("POST", url, legacy, where=f"{where} non-UUID hookInstance")
        r.check(
            "10", resp.status_code == 200, f"{where} non-UUID hookInstance: {describe(resp)}, expected 200"
        )
        hook = str(main.service.get("hook"))
        if hook not in ORDER_HOOKS:
            r.skip("5-drafts", "no order hook was called")
            return
        patient = str(main.body["context"].get("patientId"))
        for what, draft in probes.sandbox_drafts(patient).items():
            body = fresh(main.body)
            body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": draft}]}
            if hook == "order-select":
                body["context"]["selections"] = [f"{draft['resourceType']}/{draft['id']}"]
            resp = self.s.send("POST", url, body, where=f"{where} {what}")
            r.check("5-drafts", resp.status_code == 200, f"{where} {what}: {describe(resp)}, expected 200")
            self._answer(resp, f"{where} {what}")

    def _data_paths(self, svc: dict[str, Any], patient: str) -> None:
        """Spec 4.2/4.3 with one patient: null values, no data, OperationOutcomes, FHIR fallback."""
        r = self.report
        sid, hook = str(svc["id"]), str(svc["hook"])
        where, url = f"{sid}/{hook}", self.client.service_url(sid)
        keys = frozenset(svc.get("prefetch") or {})

        body = self._request(svc, patient, Plan(null=keys), fhir_server=False, authorize=False)
        resp = self.s.send("POST", url, body, where=f"{where} all keys null")
        r.check(
            "4.2-null", resp.status_code == 200, f"{where} every key null: {describe(resp)}, expected 200"
        )
        self._answer(resp, f"{where} all keys null")

        body = self._request(svc, patient, Plan(send=False), fhir_server=False, authorize=False)
        resp = self.s.send("POST", url, body, where=f"{where} no data")
        r.check(
            "4.3.2",
            resp.status_code in (200, 412),
            f"{where} no prefetch, no fhirServer: {describe(resp)}, expected 412",
        )
        if resp.status_code == 200:
            r.notes.append(f"{where}: answered 200 with no data at all (it treats all its data as optional).")
            self._answer(resp, f"{where} no data")

        body = self._request(svc, patient, Plan(outcome=keys), fhir_server=False, authorize=False)
        resp = self.s.send("POST", url, body, where=f"{where} OperationOutcome prefetch")
        r.check(
            "4.3.6",
            resp.status_code in (200, 412),
            f"{where} OperationOutcome values: {describe(resp)}, expected 200 or 412",
        )
        self._answer(resp, f"{where} OperationOutcome prefetch")

        if self.reader is None:
            r.skip("4.3.1", "no --fhir server given")
            return
        body = self._request(svc, patient, Plan(send=False), fhir_server=True, authorize=True)
        resp = self.s.send("POST", url, body, where=f"{where} fetch from fhirServer")
        token_sent = "fhirAuthorization" in body
        ok = resp.status_code == 200 or (resp.status_code == 412 and not token_sent)
        r.check(
            "4.3.1",
            ok,
            f"{where} no prefetch, fhirServer{' + token' if token_sent else ''}: {describe(resp)}, expected 200",
        )
        if resp.status_code == 412 and not token_sent:
            r.notes.append(
                f"{where}: 412 when asked to fetch without fhirAuthorization (allowed: the spec's MAY needs a token)."
            )
        self._answer(resp, f"{where} fetched")

    def _dispatch(self, selected: list[dict[str, Any]]) -> None:
        hooks: dict[str, list[str]] = {}
        for s in selected:
            if s.get("hook") in KNOWN_HOOKS:
                hooks.setdefault(str(s.get("id")), []).append(str(s.get("hook")))
        multi = {sid: hs for sid, hs in hooks.items() if len(hs) > 1}
        if not multi:
            self.report.skip("2.5", "no id is listed for more than one hook")
        for sid, hs in multi.items():
            for hook in hs:
                status = self.status.get((sid, hook))
                self.report.check("2.5", status == 200, f"{sid}/{hook}: HTTP {status}, expected 200")
