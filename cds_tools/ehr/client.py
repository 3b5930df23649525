"""The HTTP side of a CDS client: discovery, hook calls and feedback, and the bodies they carry.

Every request gets its own JWT when a ``Signer`` is set, with ``aud`` = the exact URL called (the
spec's rule, and what our service and the Sandbox do). Redirects are never followed: a CDS client
that follows a 307 hides a service bug browsers will hit (a CORS preflight cannot follow one).
Bodies are plain dicts in the wire format; nothing here knows about our own service.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from cds_tools.ehr.defaults import DEFAULT_USER
from cds_tools.ehr.signing import Signer

ORDER_HOOKS = ("order-select", "order-sign")
AUTO = "auto"  # token argument: sign with the client's signer (if any)


def normalize_base(url: str) -> str:
    """``http://h/x/cds-services/`` and ``http://h/x`` both mean base ``http://h/x``."""
    base = url.strip().rstrip("/")
    if base.endswith("/cds-services"):
        base = base[: -len("/cds-services")]
    return base


class CdsClient:
    """Talks to one CDS server; one ``httpx.Client`` (no redirects) for all its calls."""

    def __init__(self, base_url: str, http: httpx.Client, signer: Signer | None = None) -> None:
        self.base = normalize_base(base_url)
        self.http = http
        self.signer = signer

    @property
    def discovery_url(self) -> str:
        return f"{self.base}/cds-services"

    def service_url(self, service_id: str) -> str:
        return f"{self.base}/cds-services/{service_id}"

    def feedback_url(self, service_id: str) -> str:
        return f"{self.service_url(service_id)}/feedback"

    def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        token: str | None = AUTO,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request. ``token``: ``AUTO`` signs with the signer (none without one), ``None`` sends
        no Authorization header, any other string is sent as the bearer token as is."""
        h = {"Accept": "application/json"}
        if body is not None or raw is not None:
            h["Content-Type"] = "application/json"
        if token == AUTO:
            token = self.signer.token(url) if self.signer else None
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        return self.http.request(method, url, content=content, headers=h)

    def discover(self) -> httpx.Response:
        return self.send("GET", self.discovery_url)

    def call(self, service_id: str, body: dict[str, Any]) -> httpx.Response:
        return self.send("POST", self.service_url(service_id), body)

    def feedback(self, service_id: str, body: dict[str, Any]) -> httpx.Response:
        return self.send("POST", self.feedback_url(service_id), body)


def http_client(timeout: float = 30.0) -> httpx.Client:
    """The client every simulator request uses: no redirects, no proxies from the environment
    (a loopback service must not be sent through a corporate proxy)."""
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)


# --------------------------------------------------------------------------- request bodies


def load_drafts(path: Path) -> dict[str, Any]:
    """Draft orders from a file (JSON, or YAML by suffix): a Bundle of any type, or a list of
    resources, returned as the ``draftOrders`` Bundle. Drafts are not validated: real EHRs send
    invalid ones too, and a service must cope."""
    text = path.read_text()
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if isinstance(data, list):
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in data]}
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        return data
    if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": data}]}
    raise ValueError(f"{path}: expected a FHIR Bundle, a resource, or a JSON list of resources")


def default_draft(patient: str) -> dict[str, Any]:
    """A plain R4 draft MedicationRequest (what the Sandbox's Rx View sends) for order hooks when
    no drafts are given."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "ehr-sim-draft-1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"text": "acetaminophen 500 mg oral tablet"},
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}


def selections_of(draft_orders: dict[str, Any]) -> list[str]:
    """``Type/id`` of every draft that has an id: the default ``selections`` for order-select."""
    out = []
    for entry in draft_orders.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str) and res.get("id"):
            out.append(f"{res['resourceType']}/{res['id']}")
    return out


def hook_context(
    hook: str,
    patient: str,
    user: str = DEFAULT_USER,
    encounter: str | None = None,
    draft_orders: dict[str, Any] | None = None,
    selections: list[str] | None = None,
) -> dict[str, Any]:
    """The context of patient-view, order-select or order-sign (any other hook gets the common
    userId/patientId/encounterId fields)."""
    ctx: dict[str, Any] = {"userId": user, "patientId": patient}
    if encounter:
        ctx["encounterId"] = encounter
    if hook in ORDER_HOOKS:
        drafts = draft_orders or default_draft(patient)
        if hook == "order-select":
            ctx["selections"] = selections or selections_of(drafts)
        ctx["draftOrders"] = drafts
    return ctx


def fhir_authorization(
    token: str,
    patient: str | None,
    scope: str = "patient/*.read",
    subject: str = "cds-service",
    expires_in: int = 300,
) -> dict[str, Any]:
    """``fhirAuthorization`` (spec 3): ``patient`` is set when the scopes are patient scopes."""
    out: dict[str, Any] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
        "subject": subject,
    }
    if patient and "patient/" in scope:
        out["patient"] = patient
    return out


def hook_request(
    hook: str,
    context: dict[str, Any],
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    authorization: dict[str, Any] | None = None,
    extension: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
    if authorization:
        body["fhirAuthorization"] = authorization
    if prefetch is not None:
        body["prefetch"] = prefetch
    if extension:
        body["extension"] = extension
    return body


# --------------------------------------------------------------------------- feedback


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pick_card(cards: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """A card by its number as printed (1-based) or by its uuid."""
    if ref.isdigit() and 1 <= int(ref) <= len(cards):
        return cards[int(ref) - 1]
    for card in cards:
        if card.get("uuid") == ref:
            return card
    raise ValueError(f"no card {ref!r} in the response ({len(cards)} cards)")


def pick_suggestion(card: dict[str, Any], ref: str) -> dict[str, Any]:
    suggestions = card.get("suggestions") or []
    if ref.isdigit() and 1 <= int(ref) <= len(suggestions):
        found: dict[str, Any] = suggestions[int(ref) - 1]
        return found
    for s in suggestions:
        if s.get("uuid") == ref:
            return dict(s)
    raise ValueError(f"no suggestion {ref!r} on card {card.get('uuid')!r} ({len(suggestions)} suggestions)")


def pick_reason(card: dict[str, Any], code: str) -> dict[str, Any]:
    """An override reason from the card's own ``overrideReasons``, by ``code`` or ``system|code``."""
    reasons = card.get("overrideReasons") or []
    for r in reasons:
        if code in (r.get("code"), f"{r.get('system')}|{r.get('code')}"):
            return {"system": r.get("system"), "code": r.get("code")}
    offered = ", ".join(str(r.get("code")) for r in reasons) or "none"
    raise ValueError(f"card offers no override reason {code!r} (it offers: {offered})")


def accepted(card: dict[str, Any], suggestions: list[dict[str, Any]]) -> dict[str, Any]:
    """Feedback for accepted suggestions; the spec needs uuids on the card and each suggestion."""
    if not card.get("uuid"):
        raise ValueError("the card has no uuid, so no feedback can be sent for it (spec L880)")
    ids = []
    for s in suggestions:
        if not s.get("uuid"):
            raise ValueError(f"suggestion {s.get('label')!r} has no uuid, so it cannot be accepted")
        ids.append({"id": s["uuid"]})
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": ids,
        "outcomeTimestamp": now_rfc3339(),
    }


def overridden(
    card: dict[str, Any], reason: dict[str, Any] | None = None, comment: str | None = None
) -> dict[str, Any]:
    """Feedback for an overridden (dismissed) card, with the reason as the Sandbox sends it
    (``code`` and ``system``, no ``display``) and an optional comment."""
    if not card.get("uuid"):
        raise ValueError("the card has no uuid, so no feedback can be sent for it (spec L880)")
    item: dict[str, Any] = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now_rfc3339()}
    why: dict[str, Any] = {}
    if reason:
        why["reason"] = reason
    if comment:
        why["userComment"] = comment
    if why:
        item["overrideReason"] = why
    return item
