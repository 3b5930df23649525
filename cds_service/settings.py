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
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        default_factory=lambda: ["cds_service.clinical.services"],
        description="Python modules whose register(registry, settings) adds CDS services",
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

    validate_responses: bool | None = Field(
        None, description="Check every response against the CDS Hooks invariants before sending it"
    )
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Largest request body accepted (413 beyond)")

    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS; empty = none (dev: '*' without credentials)",
    )

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
                env = ", ".join(f"CDS_{n.upper()}" for n in missing)
                raise ValueError(f"production profile needs {env}")
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
                "DEV PROFILE: SQLite file, open CORS, tokenless FHIR fetch allowed, dev hash key. "
                "Never use with real patient data; set CDS_PROFILE=production."
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
