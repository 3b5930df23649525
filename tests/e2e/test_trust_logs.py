"""Nothing secret or identifying reaches the logs: a whole run with client JWTs, a FHIR access token,
a patient's name and id in the input (good calls, refused calls, bad bodies), at debug level, and
then every byte the server logged is searched. The audit trail is checked on the same run, in the
log stream and in the database copy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from cds_service.ops.observability import hash_patient
from cds_service.storage.db import make_engine
from tests.support.client import hook_body
from tests.support.jwt_client import bearer, claims_for, unsigned
from tests.support.loopback import JsonServer, serve_json
from tests.support.servers import CdsServer, run_cds_server
from tests.support.trust_env import LocalIssuer, production_env, public_url, wait_for_audit

pytestmark = pytest.mark.e2e

NAME_GIVEN, NAME_FAMILY = "Quenby", "Oxtobyworth"
PATIENT_ID = "patient-zq-7781"
FHIR_TOKEN = "fhir-at-Q7xLr0-very-secret"
TENANT = "tenant-logs"
SVC = "/cds-services/probe"
HASH_KEY = "logs-test-hash-key"


class Run:
    """Everything sent, to be searched for in the logs afterwards."""

    def __init__(self, server: CdsServer, client: LocalIssuer, fhir: JsonServer) -> None:
        self.server, self.client, self.fhir = server, client, fhir
        self.tokens: list[str] = []
        self.calls = 0

    def send(self, path: str, token: str | None, body: Any = None, raw: str | None = None) -> httpx.Response:
        headers = {}
        if raw is not None:
            headers["Authorization"] = raw
        elif token is not None:
            self.tokens.append(token)
            headers = bearer(token)
        self.calls += 1
        if body is None:
            return httpx.get(self.server.url(path), headers=headers, timeout=30)
        return httpx.post(self.server.url(path), json=body, headers=headers, timeout=30)

    def good(self, path: str = SVC, **claims: Any) -> str:
        return self.client.token(path, **dict({"tenant": TENANT}, **claims))


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "name": [{"given": [NAME_GIVEN], "family": NAME_FAMILY}],
        "birthDate": "1961-02-03",
    }


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    client = LocalIssuer.create()
    with serve_json() as fhir:
        fhir.set(f"/fhir/Patient/{PATIENT_ID}", patient())
        fhir.set("/fhir/Observation", {"resourceType": "Bundle", "type": "searchset", "entry": []})
        issuer = client.config(tenants=[TENANT], fhir_server_origins=[fhir.base])
        env = production_env(
            [issuer],
            CDS_LOG_LEVEL="debug",
            CDS_AUDIT_TO_DATABASE="true",
            CDS_FHIR_SERVER_REQUIRE_HTTPS="false",
            CDS_PATIENT_HASH_KEY=HASH_KEY,
        )
        with run_cds_server(env) as server:
            yield exercise(Run(server, client, fhir))


def exercise(r: Run) -> Run:
    """A varied run; each status is asserted so the run really went down each path."""
    fetch = hook_body(patient=PATIENT_ID, prefetch={}, fhir_server=r.fhir.base + "/fhir", token=FHIR_TOKEN)
    assert r.send(SVC, r.good(), fetch).status_code == 200
    full = hook_body(patient=PATIENT_ID, prefetch={"patient": patient()})
    assert r.send(SVC, r.good(), full).status_code == 200
    assert r.send("/cds-services", r.good("/cds-services")).status_code == 200
    replayed = r.good()
    assert r.send(SVC, replayed, full).status_code == 200
    assert r.send(SVC, replayed, full).status_code == 401
    assert r.send(SVC, r.good(exp=1, iat=0), full).status_code == 401
    assert r.send(SVC, r.good(aud=public_url("/cds-services/silent")), full).status_code == 401
    assert r.send(SVC, r.good(tenant=f"{NAME_GIVEN} {NAME_FAMILY}"), full).status_code == 401
    assert r.send(SVC, r.good(iss=f"{NAME_GIVEN} {NAME_FAMILY}"), full).status_code == 401
    none_token = unsigned(claims_for(r.client.iss, public_url(SVC), tenant=TENANT), r.client.key.kid)
    assert r.send(SVC, none_token, full).status_code == 401
    assert r.send(SVC, None, full, raw=f"Bearer {NAME_GIVEN}.{NAME_FAMILY}.{PATIENT_ID}").status_code == 401
    assert r.send(SVC, None, full, raw=f"Basic {FHIR_TOKEN}").status_code == 401
    bad_ctx = hook_body(patient=PATIENT_ID, prefetch={"patient": patient()})
    bad_ctx["context"]["patientId"] = {"name": f"{NAME_GIVEN} {NAME_FAMILY}"}
    assert r.send(SVC, r.good(), bad_ctx).status_code == 400
    elsewhere = hook_body(patient=PATIENT_ID, fhir_server="http://127.0.0.1:9/fhir", token=FHIR_TOKEN)
    assert r.send(SVC, r.good(), elsewhere).status_code == 412
    deep: Any = {"name": NAME_FAMILY}
    for _ in range(80):
        deep = {"d": deep}
    assert r.send(SVC, r.good(), dict(full, deep=deep)).status_code == 400
    comment = {"reason": {"code": "x", "system": "urn:x"}, "userComment": f"{NAME_GIVEN} said no"}
    item = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": comment,
        "outcomeTimestamp": "2026-11-20T10:00:00Z",
    }
    assert r.send(SVC + "/feedback", r.good(SVC + "/feedback"), {"feedback": [item]}).status_code == 200
    return r


def test_no_token_or_phi_in_any_log_line(run: Run) -> None:
    wait_for_audit(run.server, run.calls)
    logs = run.server.logs()
    assert "client authentication refused" in logs and "cds call" in logs  # the run did log
    forbidden = [NAME_GIVEN, NAME_FAMILY, PATIENT_ID, FHIR_TOKEN, "1961-02-03"]
    for token in run.tokens:
        forbidden.append(token)
        forbidden.extend(part for part in token.split(".") if len(part) > 16)  # header, payload, signature
    leaked = [f for f in forbidden if f in logs]
    assert leaked == [], f"{len(leaked)} secret/PHI strings found in the server log"
    # the FHIR server did get the access token (so it was in play during the run)
    assert any(h.authorization == f"Bearer {FHIR_TOKEN}" for h in run.fhir.all_hits())


def test_one_audit_record_per_call(run: Run) -> None:
    records = wait_for_audit(run.server, run.calls)
    assert len(records) == run.calls
    wanted = {"endpoint", "service", "hook", "hookInstance", "iss", "tenant", "jti", "patient", "status"}
    for rec in records:
        assert wanted | {"cards", "rules", "latency_ms", "reason", "time"} <= set(rec)
    statuses = sorted(rec["status"] for rec in records)
    assert statuses.count(401) == 8 and statuses.count(200) == 5
    ok = [rec for rec in records if rec["status"] == 200 and rec["endpoint"] == "service"]
    expected_hash = hash_patient(HASH_KEY.encode(), PATIENT_ID)
    for rec in ok:
        assert rec["iss"] == run.client.iss and rec["tenant"] == TENANT and rec["jti"]
        assert rec["patient"] == expected_hash and rec["hook"] == "patient-view"
        assert rec["cards"] == 1 and rec["rules"] == ["PROBE"]
    refused = [rec for rec in records if rec["status"] == 401]
    assert {rec["reason"] for rec in refused} >= {"replayed_jti", "expired", "wrong_aud", "alg_none"}
    assert all(rec["jti"] is None and rec["iss"] is None for rec in refused)  # nothing unverified recorded
    kinds = {rec["endpoint"] for rec in records}
    assert kinds == {"service", "discovery", "feedback"}


async def _audit_rows(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT * FROM audit_events ORDER BY id"))).mappings())
    finally:
        await engine.dispose()


def test_audit_copy_in_database(run: Run) -> None:
    wait_for_audit(run.server, run.calls)
    rows = asyncio.run(_audit_rows(run.server.env["CDS_DATABASE_URL"]))
    assert len(rows) == run.calls
    dump = repr(rows)
    assert NAME_FAMILY not in dump and PATIENT_ID not in dump
    assert all(token not in dump for token in run.tokens)
    assert {row["status"] for row in rows} >= {200, 400, 401, 412}
