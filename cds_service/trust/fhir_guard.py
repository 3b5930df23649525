"""fhirServer guard: decide, before any FHIR request, whether we may talk to the given server.

The ``fhirAuthorization`` token is a bearer credential for one FHIR server. A request could name
any URL as ``fhirServer`` (a forged or confused client, or a replayed body), and we would send the
token there and fetch from it. So: in production the server must be https (no token in clear
text), and when the verified client's issuer lists its FHIR origins, any other origin is refused
with 412 before a single request is made. The gatherer then keeps the token to that origin: it
never follows redirects and refuses ``next`` links to other origins.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import HookRequest
from cds_service.trust.client_jwt import ClientIdentity
from cds_service.trust.config import normalize_origin


def check_fhir_server(request: HookRequest, client: ClientIdentity | None, https_only: bool) -> None:
    """Raise 412 when this request's fhirServer may not be used; no network access."""
    if not request.fhirServer:
        return
    parts = urlsplit(request.fhirServer)
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:  # user:password@host: a credential in a URL ends up in logs and proxies
        raise PreconditionFailed(
            "fhirServer must not carry user information (user:password@); no FHIR request was made"
        )
    if https_only and scheme != "https":
        raise PreconditionFailed("fhirServer must be an https URL; no FHIR request was made")
    allowed = client.issuer.fhir_server_origins if client is not None else None
    if allowed is None:
        return
    try:
        origin = normalize_origin(request.fhirServer)
    except ValueError:
        raise PreconditionFailed("fhirServer is not an http(s) URL; no FHIR request was made") from None
    if origin not in allowed:
        raise PreconditionFailed(
            "fhirServer is not among the FHIR servers allowed for this client; no FHIR request was made"
        )
