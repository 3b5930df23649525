"""Fuzzing the live service through its own OpenAPI document (schemathesis), plus HTTP regressions.

schemathesis reads ``/openapi.json`` from the real server process and generates requests from it:
the body examples, boundary values of every schema (coverage phase), random valid and invalid
bodies (fuzzing phase) and discovery-then-call sequences (stateful phase). The checks: no 5xx, every
status documented, content types as documented, every response body valid against its documented
schema (``CdsResponse``, ``DiscoveryResponse``, ``OperationOutcome``), and schema-invalid input
rejected with a documented 4xx. The example count is bounded (``CDS_FUZZ_HTTP_EXAMPLES``, default
40 per operation) and the run has a hard wall-clock bound, so CI time stays under a minute.

The server runs with tokenless FHIR fetching off: a generated ``fhirServer`` must never make the
service reach out of loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cds_service.protocol.openapi import OperationOutcome
from tests.support.client import checked
from tests.support.servers import CdsServer, run_cds_server, unavailable

pytestmark = pytest.mark.e2e

SERVICE_ID = "fasciculation-workup"
EXAMPLES = int(os.environ.get("CDS_FUZZ_HTTP_EXAMPLES", "40"))
SEED = int(os.environ.get("CDS_FUZZ_SEED", "20261122"))  # fixed: CI runs are reproducible
WALL_CLOCK_BOUND = 300.0
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)
# Fix the path to a real service id (a random id is a 404 before the body is read) and make most
# generated hooks ones the service serves, so generated bodies reach the prefetch engine and rules.
CONFIG = f"""
[dictionaries.hooks]
values = ["patient-view", "order-select", "order-sign"]

[parameters]
"path.service_id" = "{SERVICE_ID}"
"body.hook" = {{ dictionary = "hooks", probability = 0.7 }}

[checks.negative_data_rejection]
# 412: the body is valid JSON but the data it names cannot be had; 413: too large
expected-statuses = [400, 401, 404, 412, 413]
"""


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    env = {"CDS_VALIDATE_RESPONSES": "true", "CDS_ALLOW_OPEN_FHIR_FETCH": "false"}
    with run_cds_server(env) as s:
        yield s


def schemathesis_exe() -> str:
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        unavailable("schemathesis is not installed (pip install -e '.[test]')")
    return str(exe)


def test_openapi_describes_the_real_models(server: CdsServer) -> None:
    doc = httpx.get(server.url("/openapi.json")).json()
    call = doc["paths"]["/cds-services/{service_id}"]["post"]
    body = call["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["hook", "hookInstance", "context"]
    assert {"prefetch", "fhirServer", "fhirAuthorization"} <= set(body["properties"])
    ok = call["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/CdsResponse"}
    for status in ("400", "401", "404", "412", "413", "default"):
        schema = call["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OperationOutcome"}, status
    assert "422" not in call["responses"], "the service never answers 422"
    feedback = doc["paths"]["/cds-services/{service_id}/feedback"]["post"]
    assert "feedback" in feedback["requestBody"]["content"]["application/json"]["schema"]["properties"]
    discovery = doc["paths"]["/cds-services"]["get"]["responses"]["200"]
    assert discovery["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DiscoveryResponse"
    }


def test_schemathesis_finds_no_5xx_and_no_schema_violation(server: CdsServer, tmp_path: Path) -> None:
    exe = schemathesis_exe()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        exe,
        "--config-file",
        str(config),
        "run",
        server.url("/openapi.json"),
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, capture_output=True, text=True, timeout=WALL_CLOCK_BOUND, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis did not finish within {WALL_CLOCK_BOUND:.0f} s: {exc.stdout!r}")
    summary = proc.stdout[-6000:]
    print(summary[-1800:])  # the run's figures in the CI log (pytest -s or on failure)
    assert proc.returncode == 0, (
        f"schemathesis failed (exit {proc.returncode}):\n{summary}\n{proc.stderr[-2000:]}"
    )
    assert "generated" in proc.stdout, summary  # it really ran cases
    assert "unhandled error" not in server.logs(), server.logs()[-4000:]


# ---------------------------------------------------------------------------------------- regressions
# Found by the hypothesis tests (tests/unit/test_fuzz_clinical.py): wrong-typed FHIR elements beside a
# fasciculation made the record builder raise, and the whole call answered 500.

TRIGGER = {
    "resourceType": "Condition",
    "id": "c1",
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R25.3"}]},
}


@pytest.mark.parametrize(
    "odd",
    [
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {"coding": [TRIGGER["code"]["coding"][0]]},
            "asserter": "Practitioner/1",
        },
        {"resourceType": "Condition", "id": "c2", "code": {"coding": 5}},
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {"coding": [TRIGGER["code"]["coding"][0]]},
            "note": 3,
        },
    ],
)
def test_wrong_types_in_prefetch_are_not_a_500(server: CdsServer, odd: dict[str, object]) -> None:
    prefetch = {
        "conditions": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": TRIGGER}, {"resource": odd}],
        },
        "labs": {"resourceType": "Bundle", "entry": 7},
        "findings": None,
    }
    body = {
        "hook": "patient-view",
        "hookInstance": "regression-wrong-types",
        "context": {"userId": "Practitioner/dr-1", "patientId": "pt-odd"},
        "prefetch": prefetch,
    }
    resp = httpx.post(server.url(f"/cds-services/{SERVICE_ID}"), json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert checked(resp)["cards"]


def test_errors_match_the_documented_operation_outcome(server: CdsServer) -> None:
    for resp in (
        httpx.post(server.url("/cds-services/nope"), json={}),
        httpx.post(
            server.url(f"/cds-services/{SERVICE_ID}"),
            content=b"[1]",
            headers={"Content-Type": "application/json"},
        ),
        httpx.post(server.url(f"/cds-services/{SERVICE_ID}/feedback"), json={"feedback": []}),
    ):
        assert resp.status_code in (400, 404)
        OperationOutcome.model_validate(checked(resp))
