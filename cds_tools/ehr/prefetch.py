"""Prefetch as a CDS client does it: render the service's templates, read the FHIR server, and
shape the ``prefetch`` member in any of the forms the spec allows (so a service can be tried
against each of them).

Token replacement is the project's own (``cds_service.data.templates``): ``{{context.<field>}}``
for root-level primitive context fields and the four ``{{user*Id}}`` tokens; a template with a
token the context cannot fill is not satisfied and its key is left out, as the spec says ("MUST NOT
send any prefetch template key that it chooses not to satisfy") and as the Sandbox does.

Reads (``Type/id``) are always ``GET``. Searches are ``GET {fhir}/{Type}?{query}`` or, with
``search="post"``, ``POST {fhir}/{Type}/_search`` with the query form-encoded, the way the public
Sandbox asks. What the FHIR server answers becomes the value:

==========================  ===============================================================
FHIR answer                 prefetch value (spec 4.2)
==========================  ===============================================================
resource or searchset       that resource / Bundle, as returned (empty searches stay Bundles)
read answered 404 / 410     ``null``: "the client has no data" for a single-resource request
any other failure           an OperationOutcome saying what failed ("SHOULD be used")
==========================  ===============================================================

``Plan`` then changes the result on purpose: leave keys out (``omit``; ``only`` for a partial
prefetch), send ``null`` or an OperationOutcome for chosen keys, or send no prefetch at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode

import httpx

from cds_service.data.templates import render, token_values

SearchMode = Literal["get", "post"]
FHIR_ACCEPT = "application/fhir+json, application/json;q=0.9"


def operation_outcome(message: str, code: str = "exception") -> dict[str, Any]:
    """How a client reports a prefetch it could not satisfy (spec 4.2)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }


@dataclass(frozen=True)
class Fetched:
    """One template, resolved: the query sent (None if a token was missing) and its value."""

    key: str
    query: str | None
    value: Any  # a FHIR resource, None (= null), or an OperationOutcome
    note: str  # "ok", "empty", "no data", "unresolved token", or why the read failed

    @property
    def satisfied(self) -> bool:
        return self.query is not None


class FhirReader:
    """Reads the EHR's FHIR server with the EHR's own token (never sent anywhere else)."""

    def __init__(
        self,
        base: str,
        http: httpx.Client,
        token: str | None = None,
        search: SearchMode = "get",
    ) -> None:
        self.base = base.rstrip("/")
        self.http = http
        self.token = token
        self.search = search

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": FHIR_ACCEPT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def read(self, query: str) -> tuple[Any, str]:
        """(value, note) for one rendered template, per the table in the module docstring."""
        path, _, params = query.partition("?")
        path = path.strip("/")
        is_read = "/" in path
        try:
            if is_read or self.search == "get":
                resp = self.http.get(f"{self.base}/{query.lstrip('/')}", headers=self._headers())
            else:
                form = urlencode(parse_qsl(params, keep_blank_values=True))
                headers = {**self._headers(), "Content-Type": "application/x-www-form-urlencoded"}
                resp = self.http.post(f"{self.base}/{path}/_search", content=form, headers=headers)
        except httpx.HTTPError as exc:
            return operation_outcome(
                f"FHIR server unreachable: {type(exc).__name__}", "transient"
            ), "unreachable"
        if is_read and resp.status_code in (404, 410):
            return None, "no data"
        if not 200 <= resp.status_code < 300:
            return operation_outcome(
                f"FHIR server answered HTTP {resp.status_code}"
            ), f"HTTP {resp.status_code}"
        try:
            body = resp.json()
        except ValueError:
            return operation_outcome("FHIR server sent invalid JSON"), "invalid JSON"
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            return operation_outcome("FHIR server sent no FHIR resource"), "not FHIR"
        if body["resourceType"] == "Bundle" and not body.get("entry"):
            return body, "empty"
        return body, "ok"


def synthetic(query: str) -> Any:
    """What a FHIR server holding nothing but the patient would answer: a bare resource for a
    read (``Type/id``), an empty searchset for a search. Used when there is no FHIR server."""
    path = query.partition("?")[0].strip("/")
    if "/" in path:
        rtype, _, rid = path.partition("/")
        return {"resourceType": rtype, "id": unquote(rid)}
    return {"resourceType": "Bundle", "type": "searchset", "total": 0}


def resolve(templates: dict[str, str], context: dict[str, Any], reader: FhirReader | None) -> list[Fetched]:
    """Every template rendered with the context's tokens and read from the FHIR server.

    Without a reader (no FHIR server), satisfiable keys get ``synthetic`` values: a patient with
    no data at all.
    """
    values = token_values(context)
    out = []
    for key, template in templates.items():
        query = render(template, values)
        if query is None:
            out.append(Fetched(key, None, None, "unresolved token"))
        elif reader is None:
            out.append(Fetched(key, query, synthetic(query), "synthetic"))
        else:
            value, note = reader.read(query)
            out.append(Fetched(key, query, value, note))
    return out


@dataclass(frozen=True)
class Plan:
    """How to shape the prefetch member, over what was fetched.

    ``send=False``: no ``prefetch`` member at all. ``only``: a partial prefetch, just these keys.
    ``omit``: leave these keys out. ``null``/``outcome``: send ``null`` / an OperationOutcome for
    these keys, whatever was fetched.
    """

    send: bool = True
    only: frozenset[str] | None = None
    omit: frozenset[str] = field(default_factory=frozenset)
    null: frozenset[str] = field(default_factory=frozenset)
    outcome: frozenset[str] = field(default_factory=frozenset)

    def named_keys(self) -> set[str]:
        return set(self.only or ()) | set(self.omit) | set(self.null) | set(self.outcome)

    def check(self, templates: dict[str, str]) -> None:
        """Refuse a key the service does not declare: a typo must not pass silently."""
        unknown = sorted(self.named_keys() - set(templates))
        if unknown:
            raise ValueError(
                f"prefetch keys not declared by the service: {', '.join(unknown)} "
                f"(it declares: {', '.join(templates) or 'none'})"
            )
        clash = (set(self.null) & set(self.outcome)) | ((set(self.null) | set(self.outcome)) & set(self.omit))
        if clash:
            raise ValueError(f"a key can get only one of --omit/--null/--outcome: {', '.join(sorted(clash))}")


def shape(fetched: list[Fetched], plan: Plan) -> dict[str, Any] | None:
    """The ``prefetch`` member for a hook request (None: leave the member out, also when no key
    is left: an empty object is not allowed on the wire, rule 1.4)."""
    if not plan.send:
        return None
    out: dict[str, Any] = {}
    for f in fetched:
        if plan.only is not None and f.key not in plan.only:
            continue
        if f.key in plan.omit:
            continue
        if f.key in plan.null:
            out[f.key] = None
        elif f.key in plan.outcome:
            out[f.key] = operation_outcome(f"Simulated prefetch error for key '{f.key}'")
        elif f.satisfied:
            out[f.key] = f.value
    return out or None
