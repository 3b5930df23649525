"""Start-up messages (issue 12): a refused start is one clear line per problem and a non-zero exit,
never a traceback; the dev warning says what is actually in force, not what the defaults were."""

from __future__ import annotations

import logging

import pytest

from cds_service.settings import Settings
from tests.support.servers import run_cds_server
from tests.support.trust_env import start_fails


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CDS_PORT": "abc"}, ["CDS_PORT: Input should be a valid integer, unable to parse string as an integer"]),
        (
            {"CDS_PROFILE": "production", "CDS_DATABASE_URL": ""},
            ["production profile needs CDS_DATABASE_URL", "production profile needs CDS_PATIENT_HASH_KEY"],
        ),
        ({"CDS_TLS_CA_BUNDLE": "/no/such/ca.pem"}, ["CDS_TLS_CA_BUNDLE: no such file: /no/such/ca.pem"]),
        (
            {"CDS_TRUSTED_ISSUERS": '[{"iss": "https://x.example.org"}]'},
            ["trusted issuer #0: (entry): Value error, issuer 'https://x.example.org' needs at least one of jku, jwks_url, jwks_file"],
        ),
    ],
    ids=["bad-port", "production-without-secrets", "ca-bundle-missing", "issuer-without-keys"],
)
def test_refused_start_is_one_line_per_problem(env: dict[str, str], expected: list[str]) -> None:
    code, output = start_fails(env)
    assert code == 2
    assert "Traceback" not in output
    assert lines(output) == [f"cds-fasciculation: refusing to start: {e}" for e in expected]


def dev_warning(settings: Settings, caplog: pytest.LogCaptureFixture) -> str:
    with caplog.at_level(logging.WARNING, logger="test.dev"):
        settings.warn_if_dev(logging.getLogger("test.dev"))
    [record] = caplog.records
    return record.getMessage()


def test_dev_warning_defaults(caplog: pytest.LogCaptureFixture) -> None:
    text = dev_warning(Settings(), caplog)
    assert text.startswith(
        "DEV PROFILE: SQLite file database; open CORS (any origin); tokenless FHIR fetch allowed; "
        "dev patient-hash key; client JWT optional."
    )


def test_dev_warning_says_what_settings_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        allow_open_fhir_fetch=False,
        cors_allow_origins=["https://ehr.example.org"],
        database_url="postgresql+asyncpg://u@127.0.0.1/db",
        patient_hash_key="a-real-key",
        require_client_jwt=True,
    )
    text = dev_warning(settings, caplog)
    assert "DEV PROFILE: database from CDS_DATABASE_URL; CORS for 1 origin(s); tokenless FHIR fetch refused; " in text
    assert "own patient-hash key; client JWT required." in text
    assert "open CORS" not in text and "fetch allowed" not in text


def test_production_prints_no_dev_warning(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(profile="production", database_url="sqlite+aiosqlite://", patient_hash_key="k")
    with caplog.at_level(logging.WARNING, logger="test.dev"):
        settings.warn_if_dev(logging.getLogger("test.dev"))
    assert not caplog.records


@pytest.mark.e2e
def test_the_running_service_logs_the_settings_in_force() -> None:
    env = {"CDS_ALLOW_OPEN_FHIR_FETCH": "false", "CDS_CORS_ALLOW_ORIGINS": '["https://ehr.example.org"]'}
    with run_cds_server(env) as server:
        logs = server.logs()
    assert "DEV PROFILE: SQLite file database; CORS for 1 origin(s); tokenless FHIR fetch refused" in logs
