"""Client registration of the SMART app, as configuration (``CDS_SMART_*`` environment variables).

The app is off until at least one FHIR server is allow-listed: ``iss`` values that are not in
``CDS_SMART_ALLOWED_ISS`` are refused before any network request, so a crafted launch link can
never make the service fetch an arbitrary URL. Scopes default to the least the page needs: read
and search (SMART v2 ``.rs``) of the nine resource types the rules read, plus the launch context
and ``openid fhirUser`` for the clinician's identity; never write, never ``*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

READ_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "ServiceRequest",
    "Procedure",
    "DiagnosticReport",
    "MedicationRequest",
    "Appointment",
)
DATA_SCOPES = " ".join(f"patient/{t}.rs" for t in READ_TYPES)
EHR_SCOPES = f"launch openid fhirUser {DATA_SCOPES}"
STANDALONE_SCOPES = f"launch/patient openid fhirUser {DATA_SCOPES}"


class SmartSettings(BaseSettings):
    """Registration of the app with the EHR's authorisation server, and its session policy."""

    model_config = SettingsConfigDict(env_prefix="CDS_SMART_", extra="ignore", env_file=None)

    allowed_iss: list[str] = Field(
        default_factory=list, description="FHIR base URLs (iss) the app may be launched from; empty = app off"
    )
    client_id: str = Field("cds-fasciculation-workup", description="client_id registered with the EHR")
    redirect_uri: str | None = Field(
        None, description="Registered redirect URI; default {CDS_PUBLIC_BASE_URL}/smart/callback"
    )
    scopes: str = Field(EHR_SCOPES, description="Scopes requested at EHR launch")
    standalone_scopes: str = Field(STANDALONE_SCOPES, description="Scopes requested at standalone launch")
    session_minutes: float = Field(
        15.0, gt=0, le=480, description="Longest life of a session (shorter when the token expires sooner)"
    )
    cookie_samesite: Literal["lax", "strict", "none"] = Field(
        "lax", description="SameSite of the session cookie ('none' for EHRs that embed apps in an iframe)"
    )
    client_key_file: Path | None = Field(
        None, description="PEM private key (RSA or EC P-384): confidential client with private_key_jwt"
    )
    client_key_id: str = Field("cds-fasciculation-smart-1", description="kid of that key in our JWKS")
    client_key_alg: Literal["RS384", "ES384"] = Field("RS384", description="Signing algorithm of the key")
    fhir_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Timeout of each FHIR/OAuth request")
    frame_ancestors: str = Field("'self'", description="CSP frame-ancestors (the EHR origin when embedded)")

    @field_validator("allowed_iss")
    @classmethod
    def _strip(cls, value: list[str]) -> list[str]:
        return [v.rstrip("/") for v in value if v.strip()]

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_iss)

    def iss_allowed(self, iss: str) -> bool:
        return iss.rstrip("/") in self.allowed_iss

    def redirect_for(self, base_url: str) -> str:
        return self.redirect_uri or f"{base_url.rstrip('/')}/smart/callback"
