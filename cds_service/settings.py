"""Run-time configuration, read from environment variables prefixed ``CDS_``.

There are two profiles. ``dev`` (the default, so that the README quick start works with no set-up)
uses a SQLite file, in-process caches, permissive CORS and allows fetching from an open FHIR server
without a token; it says so loudly at start-up. ``production`` flips every one of those defaults to
the safe side. A value set explicitly in the environment always wins over the profile default, and
``docs/configuration.md`` lists every field.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cds_service.protocol.jws import check_algorithms

Profile = Literal["dev", "production"]

# Defaults that differ by profile. Fields left as ``None`` below take their value from here.
_PROFILE_DEFAULTS: dict[str, dict[str, object]] = {
    "dev": {
        "allow_open_fhir_fetch": True,
        "validate_responses": True,
        "database_url": "sqlite+aiosqlite:///./cds-fasciculation.db",
        "patient_hash_key": "dev-only-patient-hash-key",
        "auto_migrate": True,
    },
    "production": {
        "allow_open_fhir_fetch": False,
        "validate_responses": False,
        "database_url": None,  # must be given
        "patient_hash_key": None,  # must be given
        "auto_migrate": False,
    },
}


class Settings(BaseSettings):
    """All settings of the service; see docs/configuration.md for the environment variables."""

    model_config = SettingsConfigDict(env_prefix="CDS_", extra="ignore", env_file=None)

    profile: Profile = Field("dev", description="dev (embedded defaults, loud warning) or production")
    host: str = Field("127.0.0.1", description="Interface to bind the HTTP server to")
    port: int = Field(8100, ge=1, le=65535, description="TCP port of the HTTP server")
    workers: int = Field(1, ge=1, le=64, description="Number of uvicorn worker processes")
    log_level: str = Field("info", description="Log level for the service's own loggers")

    database_url: str | None = Field(
        None, description="SQLAlchemy async URL (sqlite+aiosqlite:///file.db or postgresql+asyncpg://...)"
    )
    auto_migrate: bool | None = Field(None, description="Apply Alembic migrations at start-up")
    database_timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="Longest one database statement may take (then 503 + Retry-After)"
    )
    issued_journal: bool = Field(
        True, description="Journal issued-card rows locally before answering, so a crash loses none"
    )
    issued_journal_dir: Path | None = Field(
        None, description="Directory of that journal (default: $TMPDIR/cds-issued-journal/<db hash>)"
    )
    database_connect_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="Longest wait for a database connection (new or from the pool)"
    )
    redis_url: str | None = Field(
        None, description="Redis URL (redis://host:6379/0) for state shared by replicas; unset = in-process"
    )
    public_base_url: str | None = Field(
        None, description="Externally visible base URL (https://cds.example.org) behind a proxy; JWT aud"
    )
    patient_hash_key: str | None = Field(
        None, description="Secret key for the HMAC that pseudonymises patient ids in logs and audit rows"
    )

    service_modules: list[str] = Field(
        default_factory=lambda: ["cds_service.clinical.services", "cds_service.smart.plugin"],
        description="Python modules whose register(registry, settings) adds CDS services (and routers)",
    )

    prefetch_deadline_seconds: float = Field(
        2.5, gt=0, le=30, description="One deadline for all FHIR fetches of a request (EHRs wait ~5 s)"
    )
    fhir_connect_timeout_seconds: float = Field(1.0, gt=0, le=30, description="TCP connect timeout to FHIR")
    fhir_page_cap: int = Field(
        10, ge=1, le=200, description="Most `next` pages followed for one prefetch key"
    )
    fhir_max_connections: int = Field(50, ge=1, le=1000, description="Pool size of the shared FHIR client")
    allow_open_fhir_fetch: bool | None = Field(
        None, description="Fetch from fhirServer without fhirAuthorization (public Sandbox; dev only)"
    )
    tls_ca_bundle: Path | None = Field(
        None, description="PEM file of extra CA certificates trusted for https FHIR servers and JWK Set URLs"
    )
    tls_system_trust: bool = Field(
        False, description="Trust the operating system's CA store (instead of certifi's) for outgoing https"
    )

    validate_responses: bool | None = Field(
        None, description="Check every response against the CDS Hooks invariants before sending it"
    )
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Largest request body accepted (413 beyond)")

    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS; empty = none (dev: '*' without credentials)",
    )

    # --- Trust and security (cds_service/trust, docs/security.md) -------------------------------
    require_client_jwt: bool | None = Field(
        None, description="Demand a valid client JWT on every CDS call (production: always on)"
    )
    trusted_issuers: list[dict[str, Any]] = Field(
        default_factory=list, description="Trusted CDS clients as a JSON list (see docs/security.md)"
    )
    trust_config_file: Path | None = Field(
        None, description="YAML/JSON file with more trusted issuers (a list, or {issuers: [...]})"
    )
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["ES384", "RS384"],
        description="JWS algorithms accepted unless an issuer overrides them (never none or HS*)",
    )
    jwt_clock_skew_seconds: int = Field(60, ge=0, le=300, description="Leeway on exp, iat and nbf")
    jwt_max_age_seconds: int = Field(3600, ge=60, le=86400, description="Oldest `iat` accepted")
    jwks_cache_seconds: int = Field(3600, ge=60, le=86400, description="How long a fetched JWK Set is used")
    jwks_min_refresh_seconds: int = Field(
        60, ge=1, le=86400, description="At most one unknown-`kid` refresh per JWK Set in this interval"
    )
    jwks_timeout_seconds: float = Field(3.0, gt=0, le=30, description="Timeout of one JWK Set fetch")
    replay_cache_max_entries: int = Field(
        500_000, ge=1000, description="In-memory `jti` cache size (when full: 503, never a replay)"
    )
    redis_timeout_seconds: float = Field(1.0, gt=0, le=30, description="Connect/read timeout for Redis")
    fhir_server_require_https: bool | None = Field(
        None, description="Refuse (412) a non-https fhirServer (production default: on)"
    )
    max_json_depth: int = Field(64, ge=8, le=1000, description="Deepest JSON nesting accepted (400 beyond)")
    max_json_elements: int = Field(
        200_000, ge=1000, description="Most JSON values in one request body (413 beyond)"
    )
    audit_to_database: bool = Field(False, description="Also write each audit record to the database")
    max_headers: int = Field(100, ge=10, le=10_000, description="Most request header lines (431 beyond)")
    max_header_bytes: int = Field(
        32_768, ge=1024, le=1_048_576, description="Most bytes of request line plus headers (431 beyond)"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Request line and headers must arrive within this time (408)"
    )
    body_timeout_seconds: float = Field(
        15.0, gt=0, le=600, description="A POST body must arrive completely within this time (408)"
    )
    override_snooze_days: int = Field(
        30,
        ge=0,
        le=365,
        description="Override memory: days a card overridden for a patient stays snoozed unless its inputs "
        "change (0: off; critical cards are never snoozed)",
    )
    accepted_snooze_days: int = Field(
        90,
        ge=0,
        le=365,
        description="Override memory: longest a card whose suggestion was accepted stays snoozed while its "
        "order is open (0: off)",
    )

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_weak_algorithms(cls, value: list[str]) -> list[str]:
        """``none`` and HMAC can never be switched on, not even by mistake."""
        check_algorithms(value)
        return value

    @property
    def override_memory(self) -> bool:
        """Whether calls consult override memory at all (one indexed query per call)."""
        return self.override_snooze_days > 0 or self.accepted_snooze_days > 0

    @property
    def jwt_required(self) -> bool:
        """Production always requires a client JWT; dev only when asked to."""
        return self.profile == "production" or bool(self.require_client_jwt)

    @property
    def https_fhir_only(self) -> bool:
        if self.fhir_server_require_https is None:
            return self.profile == "production"
        return self.fhir_server_require_https

    # --- end of trust and security ----------------------------------------------------------------

    # --- Deployment: graceful shutdown, metrics, readiness, analytics (docs/deployment.md) ------
    shutdown_grace_seconds: int = Field(
        20, ge=1, le=600, description="On SIGTERM, how long in-flight requests may take to finish"
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at GET /metrics")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve /metrics on this separate port instead of the main one"
    )
    readiness_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Time budget of each /readyz dependency check"
    )
    analytics_enabled: bool | None = Field(
        None, description="Serve GET /analytics/feedback (dev default: on; production default: off)"
    )
    analytics_token: SecretStr | None = Field(
        None, description="Bearer token that /analytics/feedback demands (required in production)"
    )

    @model_validator(mode="after")
    def _deployment_defaults(self) -> Settings:
        """Analytics show how clinicians act on cards: never open to the world in production."""
        if self.analytics_enabled is None:
            object.__setattr__(self, "analytics_enabled", self.profile == "dev")
        if self.profile == "production" and self.analytics_enabled and self.analytics_token is None:
            raise ValueError("production profile with CDS_ANALYTICS_ENABLED needs CDS_ANALYTICS_TOKEN")
        return self

    @property
    def analytics_on(self) -> bool:
        return bool(self.analytics_enabled)

    # --- end of deployment --------------------------------------------------------------------------

    @model_validator(mode="after")
    def _apply_profile(self) -> Settings:
        """Fill unset fields from the profile, and refuse a production profile missing its secrets."""
        defaults = _PROFILE_DEFAULTS[self.profile]
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.profile == "production":
            missing = [n for n in ("database_url", "patient_hash_key") if getattr(self, n) in (None, "")]
            if missing:
                # one line per missing setting (cds_service/startup.py prints each on its own)
                raise ValueError("\n".join(f"production profile needs CDS_{n.upper()}" for n in missing))
        if self.profile == "dev" and not self.cors_allow_origins:
            object.__setattr__(self, "cors_allow_origins", ["*"])
        return self

    # Typed accessors: after validation these are never None.
    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url

    @property
    def hash_key(self) -> bytes:
        assert self.patient_hash_key is not None
        return self.patient_hash_key.encode()

    @property
    def open_fetch(self) -> bool:
        return bool(self.allow_open_fhir_fetch)

    @property
    def self_check(self) -> bool:
        return bool(self.validate_responses)

    @property
    def migrate_on_start(self) -> bool:
        return bool(self.auto_migrate)

    def warn_if_dev(self, log: logging.Logger) -> None:
        """Make it impossible to miss that a dev profile is running."""
        if self.profile == "dev":
            log.warning(
                f"DEV PROFILE: {'; '.join(self.dev_conveniences())}. "
                "Never use with real patient data; set CDS_PROFILE=production."
            )

    def dev_conveniences(self) -> list[str]:
        """What is actually in force, for the dev warning (settings may have turned any of the
        dev defaults off; the warning must not claim what is not true)."""
        origins = self.cors_allow_origins
        return [
            "SQLite file database" if self.db_url.startswith("sqlite") else "database from CDS_DATABASE_URL",
            "open CORS (any origin)"
            if "*" in origins
            else (f"CORS for {len(origins)} origin(s)" if origins else "CORS closed"),
            "tokenless FHIR fetch allowed" if self.open_fetch else "tokenless FHIR fetch refused",
            "dev patient-hash key"
            if self.patient_hash_key == _PROFILE_DEFAULTS["dev"]["patient_hash_key"]
            else "own patient-hash key",
            "client JWT required" if self.jwt_required else "client JWT optional",
        ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
