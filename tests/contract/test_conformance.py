"""The conformance checker, run as ``cds-fasciculation conformance``:

* against our real service with a real FHIR server, it must pass every rule it can exercise (with
  ``--strict``: no warning either), in the dev profile and with client JWTs required;
* against a deliberately broken service (tests/support/broken_service.py) it must report exactly
  the mistakes planted there, and exit non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broken_service import run_broken_service
from tests.support.ehr_cli import cds_cli, jwt_server, ok
from tests.support.servers import FHIR_TOKEN, CdsServer, FhirServer, free_port, run_cds_server
from tests.tools.test_ehr import CYCLOBENZAPRINE

pytestmark = pytest.mark.e2e

JWT_RULES = {"9.2-required", "9.2-invalid", "9.2-replay", "9.2-no-detail"}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {r["rule"]: r["status"] for r in report["rules"]}


def problems(report: dict[str, Any], rule: str) -> list[str]:
    found: list[str] = next(r["problems"] for r in report["rules"] if r["rule"] == rule)
    return found


def run(*args: str) -> tuple[int, dict[str, Any]]:
    proc = cds_cli("conformance", *args, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def drafts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An order the service advises to remove: exercises delete actions (cds-resp-2)."""
    path = tmp_path_factory.mktemp("drafts") / "drafts.json"
    path.write_text(json.dumps([CYCLOBENZAPRINE]))
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server() as s:
        yield s


def test_our_service_passes_every_rule(server: CdsServer, fhir_open: FhirServer, drafts: Path) -> None:
    ok(cds_cli("ehr", "load", "r01-weakness", "r02-sudden", "r20-reassurance", "--fhir", fhir_open.base))
    patients = [
        "--patient",
        "fx-r01-weakness",
        "--patient",
        "fx-r02-sudden",
        "--patient",
        "fx-r20-reassurance",
    ]
    rc, report = run(server.url("/cds-services"), "--fhir", fhir_open.base, *patients, "--drafts", str(drafts), "--strict")  # fmt: skip
    got = statuses(report)
    bad = {rule: problems(report, rule) for rule, status in got.items() if status in ("fail", "warn")}
    assert bad == {}
    assert rc == 0
    skipped = {rule for rule, status in got.items() if status == "skip"}
    # plain http on loopback; JWTs not required in dev; one id per hook, so no id serves two (2.5)
    assert skipped == {"1.2", "2.5", *JWT_RULES}
    assert got["2.5-ids"] == "pass"
    assert all(status == "pass" for rule, status in got.items() if rule not in skipped)


def test_our_service_with_client_jwts_and_fhir_authorization(fhir_bearer: FhirServer, tmp_path: Path) -> None:
    ok(cds_cli("ehr", "load", "r01-weakness", "--fhir", fhir_bearer.base, "--fhir-token", FHIR_TOKEN))
    keys = tmp_path / "keys"
    with jwt_server(keys) as (server, port):
        sign = ["--sign", "ES384", "--key-dir", str(keys), "--jwks-port", str(port), "--auth-required"]
        fhir = [
            "--fhir",
            fhir_bearer.base,
            "--fhir-token",
            FHIR_TOKEN,
            "--fhir-authorization",
            "--search",
            "post",
        ]
        rc, report = run(server.url(""), "--service", "fasciculation-workup", "--patient", "fx-r01-weakness", *fhir, *sign)  # fmt: skip
        got = statuses(report)
        assert {rule: problems(report, rule) for rule, s in got.items() if s in ("fail", "warn")} == {}
        assert rc == 0
        assert all(got[rule] == "pass" for rule in (*JWT_RULES, "4.3.1", "8", "6", "9.3-cors"))
        assert FHIR_TOKEN not in server.logs()


def test_broken_service_fails_exactly_where_it_is_broken() -> None:
    with run_broken_service() as base:
        rc, report = run(base)
    assert rc == 1
    got = statuses(report)
    fails = {rule for rule, s in got.items() if s == "fail"}
    warns = {rule for rule, s in got.items() if s == "warn"}
    assert fails == {"1.3/1.4", "6.1-summary", "cds-resp-6", "4.3.2"}
    assert warns == {
        "4.2-null",  # a null prefetch value crashes it (500)
        "4.3.6",  # so does an OperationOutcome
        "7-json",
        "7-fields",
        "7-context",
        "7-hook",
        "cds-r-1",  # it validates nothing
        "7-outcome",  # FastAPI's {"detail": ...} bodies
        "9.3-cors",  # no CORS middleware
        "9.3-redirect",  # FastAPI's trailing-slash 307
    }
    assert any("summary: 150 characters, must be < 140" in p for p in problems(report, "6.1-summary"))
    assert any("links: null is not allowed" in p for p in problems(report, "1.3/1.4"))
    assert any("selectionBehavior: required with suggestions" in p for p in problems(report, "cds-resp-6"))
    assert any("HTTP 500, expected 412" in p for p in problems(report, "4.3.2"))
    assert any("GET /cds-services/: HTTP 307" in p for p in problems(report, "9.3-redirect"))
    assert got["8"] == "skip"  # no feedback endpoint: optional, not a failure
    assert got["6.1-summary"] == "fail" and got["2.2"] == "pass" and got["10"] == "pass"


def test_text_report_and_usage_errors(server: CdsServer) -> None:
    proc = cds_cli("conformance", server.url("/cds-services"), "--service", "fasciculation-workup")
    assert proc.returncode == 0, proc.stdout
    assert "PASS  2.1 " in proc.stdout and "SKIP  9.2-replay" in proc.stdout
    assert "passed, 0 failed" in proc.stdout
    unknown = cds_cli("conformance", server.url(""), "--service", "no-such-service")
    assert unknown.returncode == 2 and "no-such-service" in unknown.stderr
    nobody = cds_cli("conformance", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 1 and "FAIL  2.1" in nobody.stdout and "no answer" in nobody.stdout
