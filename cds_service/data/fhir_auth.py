"""Whether the ``fhirAuthorization`` a client sent can be used for a fetch, decided before any
request leaves the service, with a reason that ends up in the 412's OperationOutcome.

Sending a token that cannot work only turns a clear problem into a vague one: an expired token
gets a 401 from the FHIR server, a scope that does not cover the resource gets a 403 or, worse, an
empty 200 from a server that filters instead of refusing. So:

* ``token_type`` must be ``Bearer`` (case-insensitive, RFC 6749 7.1): it is the only scheme the
  spec allows and the only one we can send;
* ``expires_in`` of 0 or less means the token has already expired: it is not sent;
* ``scope``, when given, must allow reading the resource type of the query: SMART v1
  (``patient/Observation.read``, ``user/*.*``) or v2 (``patient/Observation.rs``,
  ``system/*.r``); ``patient/``, ``user/`` and ``system/`` all count. Scopes that name no resource
  (``launch``, ``openid``, ``fhirUser``...) are ignored. No scope at all is not judged: the FHIR
  server decides.

Each refusal is a per-key reason: a required key refused this way gives 412 naming the key and the
reason (and, for a scope, the scope it needs), an optional key is reported missing on the cards.
None of these messages contains the token.
"""

from __future__ import annotations

import re

from cds_service.protocol.models import FhirAuthorization

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(\?.*)?$")
_V1_READ = {"read", "*"}


def token_refusal(auth: FhirAuthorization) -> str | None:
    """Why this token must not be sent at all, or None."""
    if auth.token_type.strip().lower() != "bearer":
        return "fhirAuthorization.token_type is not Bearer (the only type CDS Hooks allows); the token was not used"
    if auth.expires_in is not None and auth.expires_in <= 0:
        return (
            f"fhirAuthorization.expires_in is {auth.expires_in}: the token has already expired; "
            "it was not sent"
        )
    return None


def resource_type(query: str) -> str | None:
    """``Observation`` of ``Observation?patient=...`` or ``Observation/1``; None for anything else."""
    head = query.lstrip("/").split("?", 1)[0].split("/", 1)[0]
    return head if re.fullmatch(r"[A-Z][A-Za-z]+", head) else None


def _allows(scope: str, kind: str, search: bool) -> bool:
    m = _SCOPE.match(scope)
    if m is None or m.group(2) not in ("*", kind):
        return False
    perms = m.group(3)
    if perms in _V1_READ:
        return True
    if re.fullmatch(r"c?r?u?d?s?", perms):  # SMART v2: read needs r, search needs s
        return ("s" if search else "r") in perms
    return False


def scope_refusal(auth: FhirAuthorization, query: str) -> str | None:
    """Why the granted scopes cannot cover this read or search, or None (also when no scope was
    given, or the query names no resource type)."""
    if not auth.scope or not auth.scope.strip():
        return None
    kind = resource_type(query)
    if kind is None:
        return None
    scopes = auth.scope.split()
    if not any(_SCOPE.match(s) for s in scopes):
        return None  # only launch/openid-style scopes: nothing to judge by
    search = "?" in query or "/" not in query.lstrip("/")
    if any(_allows(s, kind, search) for s in scopes):
        return None
    context = "patient" if (auth.patient or any(s.startswith("patient/") for s in scopes)) else "user"
    needs = f"{context}/{kind}.read (SMART v1) or {context}/{kind}.{'s' if search else 'r'} (v2)"
    return f"fhirAuthorization.scope does not allow {'searching' if search else 'reading'} {kind}: it needs {needs}; no request was made"
