"""Which certificate authorities the service trusts when it is the TLS client: https FHIR servers
(``fhirServer``) and JWK Set URLs of trusted CDS clients.

Hospitals often run their FHIR server behind their own CA. Without a way to trust it, every fetch
ended as 412 "could not connect" and nothing could be done about it. ``CDS_TLS_CA_BUNDLE`` names a
PEM file of extra CA certificates; ``CDS_TLS_SYSTEM_TRUST`` uses the operating system's store (where
hospital IT installs its CA) instead of the certifi bundle that ships with httpx. Both may be set:
the bundle is then added to the system store. Hostname checking is never switched off.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import certifi

if TYPE_CHECKING:
    from cds_service.settings import Settings


def client_tls_context(settings: Settings) -> ssl.SSLContext:
    """The SSL context of every outgoing https request; raises ValueError naming the setting when
    the CA bundle cannot be used (a start-up refusal, never a per-request surprise)."""
    ctx = ssl.create_default_context() if settings.tls_system_trust else ssl.create_default_context(
        cafile=certifi.where()
    )
    bundle = settings.tls_ca_bundle
    if bundle is not None:
        if not bundle.is_file():
            raise ValueError(f"CDS_TLS_CA_BUNDLE: no such file: {bundle}")
        try:
            ctx.load_verify_locations(cafile=str(bundle))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"CDS_TLS_CA_BUNDLE: {bundle} is not a PEM file of CA certificates ({exc})") from None
    return ctx


def tls_verify_failed(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a certificate verification failure."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
