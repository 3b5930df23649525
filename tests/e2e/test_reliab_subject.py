"""Issue 16, point 5: resources of another patient never feed a card.

The real service (probe service, which reports how many resources each key delivered) gets a
prefetch or a FHIR answer that mixes patients: a Patient other than ``context.patientId`` refuses the
call naming the key; other resources of a foreign subject are dropped and counted in the audit
record (log line and ``audit_events`` row)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cds_service.data.subject import referenced_patient
from cds_service.storage.db import make_engine
from cds_service.storage.tables import AuditEventRow
from tests.conftest import PROBE_ENV
from tests.support.client import checked, hook_body
from tests.support.loopback import serve_json
from tests.support.servers import CdsServer, run_cds_server
from tests.support.trust_env import log_records

SVC = "/cds-services/probe"
ME, OTHER = "pt-me", "pt-other"


def obs(i: int, patient: str, form: str = "Patient/{}") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{i}-{patient}",
        "status": "final",
        "code": {"text": "TSH"},
        "subject": {"reference": form.format(patient)},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CdsServer]:
    env = {
        **PROBE_ENV,
        "CDS_AUDIT_TO_DATABASE": "true",
        "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/subject.db",
    }
    with run_cds_server(env) as s:
        yield s


def audit_of(server: CdsServer, hook_instance: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for rec in log_records(server):
            if rec.get("logger") == "cds.audit" and rec.get("hookInstance") == hook_instance:
                return rec
        time.sleep(0.05)
    raise AssertionError("no audit record")


def stored_audit(server: CdsServer, hook_instance: str) -> int | None:
    """``foreign_dropped`` of the call's ``audit_events`` row (written just after the response)."""

    async def read() -> list[int | None]:
        engine = make_engine(server.env["CDS_DATABASE_URL"])
        try:
            async with engine.connect() as conn:
                query = select(AuditEventRow.foreign_dropped).where(
                    AuditEventRow.hook_instance == hook_instance
                )
                return list((await conn.execute(query)).scalars())
        finally:
            await engine.dispose()

    deadline = time.monotonic() + 15
    while not (rows := asyncio.run(read())):
        assert time.monotonic() < deadline, "no audit_events row"
        time.sleep(0.1)
    return rows[0]


def test_reference_forms() -> None:
    assert referenced_patient({"subject": {"reference": "Patient/a-1"}}) == "a-1"
    assert (
        referenced_patient({"subject": {"reference": "https://x.test/fhir/Patient/a-1/_history/3"}}) == "a-1"
    )
    assert referenced_patient({"patient": {"reference": "Patient/a.2"}}) == "a.2"
    assert referenced_patient({"subject": {"reference": "Group/g"}}) is None
    assert referenced_patient({"subject": {"reference": "urn:uuid:1234"}}) is None
    assert referenced_patient({"subject": {"identifier": {"value": "x"}}}) is None


def test_remembered_reference_answers_are_the_same() -> None:
    """The per-screen memo (issue 15) gives what the search gives, for every form above and for
    a resource whose ``subject`` names no patient but whose ``patient`` does."""
    forms = [
        {"subject": {"reference": "Patient/a-1"}},
        {"subject": {"reference": " https://x.test/fhir/Patient/a-1/_history/3 "}},
        {"patient": {"reference": "Patient/a.2"}},
        {"subject": {"reference": "Group/g"}, "patient": {"reference": "Patient/b"}},
        {"subject": {"reference": "urn:uuid:1234"}},
        {"subject": {"reference": 7}, "patient": {"reference": "Patient/a-1"}},
    ]
    seen: dict[str, str | None] = {}
    for _ in range(2):
        assert [referenced_patient(r, seen) for r in forms] == [referenced_patient(r) for r in forms]
    assert seen["Group/g"] is None and seen["Patient/a-1"] == "a-1"


def test_prefetched_patient_of_another_subject_is_refused(server: CdsServer) -> None:
    body = hook_body(patient=ME, prefetch={"patient": {"resourceType": "Patient", "id": OTHER}})
    r = httpx.post(server.url(SVC), json=body, timeout=30)
    assert r.status_code == 400, r.text
    diagnostics = checked(r)["issue"][0]["diagnostics"]
    assert "'patient'" in diagnostics and "context.patientId" in diagnostics
    assert OTHER not in r.text and ME not in r.text


def test_foreign_prefetched_entries_are_dropped_and_counted(server: CdsServer) -> None:
    observations = bundle(
        obs(1, ME),
        obs(2, OTHER),
        obs(3, ME, "https://ehr.test/fhir/Patient/{}"),
        obs(4, OTHER, "https://ehr.test/fhir/Patient/{}/_history/2"),
        obs(5, OTHER),
    )
    body = hook_body(
        patient=ME,
        prefetch={"patient": {"resourceType": "Patient", "id": ME}, "observations": observations},
    )
    r = httpx.post(server.url(SVC), json=body, timeout=30)
    detail = checked(r)["cards"][0]["detail"]
    assert "observations=prefetched:2" in detail  # 3 foreign of 5 dropped
    assert audit_of(server, body["hookInstance"])["foreign_dropped"] == 3
    assert stored_audit(server, body["hookInstance"]) == 3
    clean = hook_body(patient=ME, prefetch={"patient": {"resourceType": "Patient", "id": ME}})
    checked(httpx.post(server.url(SVC), json=clean, timeout=30))
    assert audit_of(server, clean["hookInstance"])["foreign_dropped"] == 0


def test_fetched_data_of_another_patient(server: CdsServer) -> None:
    """The FHIR server answers with the wrong Patient (412 naming the key), or with a search
    Bundle that mixes subjects (foreign entries dropped)."""
    with serve_json() as fhir:
        fhir.set(f"/fhir/Patient/{ME}", {"resourceType": "Patient", "id": OTHER})
        fhir.set("/fhir/Observation", bundle(obs(1, ME), obs(2, OTHER)))
        body = hook_body(patient=ME, fhir_server=fhir.url("/fhir"))
        r = httpx.post(server.url(SVC), json=body, timeout=30)
        assert r.status_code == 412, r.text
        assert "'patient'" in checked(r)["issue"][0]["diagnostics"]

        fhir.set(f"/fhir/Patient/{ME}", {"resourceType": "Patient", "id": ME})
        body = hook_body(patient=ME, fhir_server=fhir.url("/fhir"))
        detail = checked(httpx.post(server.url(SVC), json=body, timeout=30))["cards"][0]["detail"]
        assert "observations=fetched:1" in detail
        assert audit_of(server, body["hookInstance"])["foreign_dropped"] == 1
