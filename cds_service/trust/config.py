"""Which CDS clients we trust, and how we find their keys.

A trusted issuer is one ``iss`` value with the places its signing keys may come from: allowed
``jku`` URLs (the token names one, we fetch only if it is on this list, which closes the SSRF and
key-injection hole of following any ``jku``), a fixed ``jwks_url`` (keys agreed out of band, for
tokens without ``jku``), or a local ``jwks_file`` (a pinned copy; used even when the token carries an
allowed ``jku``, so no network is needed). Optional ``tenants`` and ``fhir_server_origins`` narrow
what that client may ask of us.

Issuers come from ``CDS_TRUSTED_ISSUERS`` (a JSON list) and/or ``CDS_TRUST_CONFIG_FILE`` (YAML or
JSON, a list or ``{"issuers": [...]}``). A ``preset`` fills the well-known values of a client
family; anything written next to it wins. Configuration mistakes stop the process at start-up:
a silently half-trusted service is worse than one that does not start.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds_service.protocol.jws import check_algorithms
from cds_service.settings import Settings
from cds_service.trust.public_keys import is_public_test_url, public_keys_in_file

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
ORACLE_HEALTH_ISSUER = "https://cds-hooks.cerner.com"

PresetName = Literal["sandbox", "epic", "oracle-health"]

# What each preset fills in. Epic and Oracle Health differ per organisation, so ``iss`` and the key
# location must still be given for Epic, and the key location for Oracle Health.
PRESETS: dict[str, dict[str, Any]] = {
    "sandbox": {
        "iss": SANDBOX_ISSUER,
        "jku": [SANDBOX_JKU],
        "jwks_file": str(PRESETS_DIR / "sandbox-cds-hooks-org-jwks.json"),
        "algorithms": ["ES384"],
        "dev_only": True,
    },
    "epic": {"algorithms": ["RS384"], "require_nbf": True},
    "oracle-health": {"iss": ORACLE_HEALTH_ISSUER},
}


class TrustConfigError(ValueError):
    """The trust configuration is unusable; raised at start-up so the process refuses to run."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_key_url(url: str) -> str:
    """Key URLs must be https; plain http only on loopback (local test clients, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url
    raise ValueError(f"key URL must be https (http only on loopback): {url!r}")


def normalize_origin(value: str) -> str:
    """``https://Host:443/any/path`` -> ``https://host``: the unit a token may be sent to."""
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) origin: {value!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class IssuerConfig(BaseModel):
    """One trusted CDS client (an EHR, or the Sandbox in dev)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1, description="Exact `iss` claim value")
    preset: PresetName | None = Field(None, description="sandbox | epic | oracle-health")
    jku: tuple[str, ...] = Field((), description="`jku` header values allowed for this issuer")
    jwks_url: str | None = Field(None, description="JWK Set URL for tokens without `jku`")
    jwks_file: Path | None = Field(None, description="Local JWK Set file (pinned copy)")
    algorithms: tuple[str, ...] | None = Field(None, description="Overrides CDS_JWT_ALGORITHMS")
    tenants: tuple[str, ...] | None = Field(None, description="Allowed `tenant` claim values")
    fhir_server_origins: tuple[str, ...] | None = Field(None, description="Allowed fhirServer origins")
    require_nbf: bool = Field(False, description="Refuse tokens without `nbf`")
    dev_only: bool = Field(False, description="Refuse to start in the production profile")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            preset = PRESETS.get(str(data["preset"]))
            if preset is not None:
                return {**preset, **data}
        return data

    @field_validator("jku")
    @classmethod
    def _check_jku(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_key_url(u) for u in value)

    @field_validator("jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else check_key_url(value)

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            check_algorithms(value)
        return value

    @field_validator("fhir_server_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(normalize_origin(v) for v in value)

    @model_validator(mode="after")
    def _check_key_source(self) -> IssuerConfig:
        if not (self.jku or self.jwks_url or self.jwks_file):
            raise ValueError(f"issuer {self.iss!r} needs at least one of jku, jwks_url, jwks_file")
        if self.jwks_file is not None and not self.jwks_file.is_file():
            raise ValueError(f"issuer {self.iss!r}: jwks_file {str(self.jwks_file)!r} does not exist")
        return self


def _read_file(path: Path) -> list[Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TrustConfigError(f"cannot read CDS_TRUST_CONFIG_FILE {str(path)!r}: {exc.strerror}") from None
    try:
        data = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError):
        raise TrustConfigError(f"CDS_TRUST_CONFIG_FILE {str(path)!r} is not valid JSON/YAML") from None
    if isinstance(data, dict):
        data = data.get("issuers", [])
    if not isinstance(data, list):
        raise TrustConfigError("CDS_TRUST_CONFIG_FILE must hold a list of issuers or {issuers: [...]}")
    return data


def check_not_public(issuer: IssuerConfig) -> None:
    """Production refuses an issuer that would trust a published test key, however it is written:
    the Sandbox ``iss``, a ``jku``/``jwks_url`` on its host, or a pinned file holding its key
    (``dev_only: false`` does not lift this; keys fetched later are screened by the JWK Set cache)."""
    where = [u for u in (issuer.iss, *issuer.jku, issuer.jwks_url or "") if u and is_public_test_url(u)]
    kids = public_keys_in_file(issuer.jwks_file) if issuer.jwks_file is not None else []
    if where or kids:
        what = f"key {kids[0]!r} of {str(issuer.jwks_file)!r}" if kids else repr(where[0])
        raise TrustConfigError(
            f"trusted issuer {issuer.iss!r} uses a published test key ({what}; its private half is "
            "public): refused in the production profile"
        )


def load_issuers(settings: Settings) -> dict[str, IssuerConfig]:
    """Every trusted issuer by ``iss``, checked against the profile; raises TrustConfigError."""
    raw: list[Any] = list(settings.trusted_issuers)
    if settings.trust_config_file is not None:
        raw += _read_file(settings.trust_config_file)
    issuers: dict[str, IssuerConfig] = {}
    for i, entry in enumerate(raw):
        try:
            issuer = IssuerConfig.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(entry)'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise TrustConfigError(f"trusted issuer #{i}: {problems}") from None
        if issuer.iss in issuers:
            raise TrustConfigError(f"trusted issuer {issuer.iss!r} is configured twice")
        if issuer.dev_only and settings.profile == "production":
            raise TrustConfigError(
                f"trusted issuer {issuer.iss!r} is dev only (its signing key is public); "
                "remove it from the production configuration"
            )
        if settings.profile == "production":
            check_not_public(issuer)
        issuers[issuer.iss] = issuer
    if settings.profile == "production" and settings.require_client_jwt is False:
        raise TrustConfigError("CDS_REQUIRE_CLIENT_JWT=false is not allowed in the production profile")
    if settings.jwt_required and not issuers:
        raise TrustConfigError(
            "client JWTs are required (production profile) but no trusted issuer is configured: "
            "set CDS_TRUSTED_ISSUERS or CDS_TRUST_CONFIG_FILE (see docs/security.md)"
        )
    if settings.profile == "production" and not settings.public_base_url:
        raise TrustConfigError(
            "the production profile needs CDS_PUBLIC_BASE_URL: the token audience must be checked "
            "against the URL clients use, never against the request's own Host header"
        )
    return issuers
