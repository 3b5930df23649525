"""Prometheus metrics from the real server: after real calls the series are there with the right
counts, across two uvicorn workers (multiprocess mode), and no label carries caller input."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PROBE_ENV
from tests.support.client import hook_body
from tests.support.servers import CdsServer, FhirServer, free_port, run_cds_server
from tests.support.trust_env import LocalIssuer, production_env

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Delta:
    """Counters only grow; compare before and after an action so tests sharing a server don't
    depend on each other's order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.before = scrape(url)

    def __call__(self, name: str, **labels: str) -> float:
        return value(scrape(self.url), name, **labels) - value(self.before, name, **labels)


@pytest.fixture(scope="module")
def multiproc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prom")


@pytest.fixture(scope="module")
def two_workers(multiproc_dir: Path) -> Iterator[CdsServer]:
    env = dict(PROBE_ENV, CDS_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir))
    with run_cds_server(env) as s:
        for _ in range(300):  # wait until both workers are up: each writes its own files on import
            if len(worker_pids(multiproc_dir)) >= 2:
                break
            time.sleep(0.1)
        yield s


def worker_pids(directory: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[1] for p in directory.glob("histogram_*.db")}


def test_two_workers_write_to_the_shared_directory(two_workers: CdsServer, multiproc_dir: Path) -> None:
    assert len(worker_pids(multiproc_dir)) == 2


def test_hook_calls_cards_and_prefetch_counted_across_workers(two_workers: CdsServer) -> None:
    delta = Delta(two_workers.url("/metrics"))
    secret_patient = f"pt-{uuid.uuid4().hex}"
    prefetch = {"patient": {"resourceType": "Patient", "id": secret_patient}, "observations": None}
    for _ in range(6):  # new connection each time: the kernel spreads them over the workers
        body = hook_body(patient=secret_patient, prefetch=prefetch)
        assert httpx.post(two_workers.url("/cds-services/probe"), json=body).status_code == 200
    assert httpx.post(two_workers.url("/cds-services/probe"), json=hook_body("order-select")).status_code == 400
    assert httpx.post(two_workers.url(f"/cds-services/{secret_patient}"), json=hook_body()).status_code == 404

    labels = {"service": "probe", "hook": "patient-view", "status": "200"}
    assert delta("cds_hook_requests_total", **labels) == 6
    assert delta("cds_hook_request_duration_seconds_count", **labels) == 6
    assert delta("cds_cards_issued_total", service="probe", rule="PROBE", indicator="info") == 6
    assert delta("cds_prefetch_keys_total", key="patient", outcome="given") == 6
    assert delta("cds_prefetch_keys_total", key="observations", outcome="given") == 6
    assert delta("cds_prefetch_keys_total", key="practitioner", outcome="missing") == 6  # no fhirServer
    assert delta("cds_prefetch_keys_total", key="practitioner", outcome="failed") == 0
    assert delta("cds_http_requests_total", endpoint="service", method="POST", status="200") == 6
    assert delta("cds_http_requests_total", endpoint="service", method="POST", status="400") == 1
    assert delta("cds_http_requests_total", endpoint="service", method="POST", status="404") == 1
    # an unserved hook or an unknown id never becomes a label; patient ids appear nowhere
    text = httpx.get(two_workers.url("/metrics")).text
    assert "order-select" not in text and secret_patient not in text


def test_feedback_outcomes_counted(two_workers: CdsServer) -> None:
    delta = Delta(two_workers.url("/metrics"))
    now = "2026-11-01T10:00:00Z"
    items = [
        {"card": str(uuid.uuid4()), "outcome": "accepted", "acceptedSuggestions": [{"id": "s1"}],
         "outcomeTimestamp": now},
        {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": now},
        {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": now},
    ]
    r = httpx.post(two_workers.url("/cds-services/probe/feedback"), json={"feedback": items})
    assert r.status_code == 200
    assert delta("cds_feedback_items_total", service="probe", outcome="accepted") == 1
    assert delta("cds_feedback_items_total", service="probe", outcome="overridden") == 2


def test_prefetch_fetched_and_failed(two_workers: CdsServer, fhir_open: FhirServer) -> None:
    patient = f"pt-{uuid.uuid4().hex[:12]}"
    fhir_open.load(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "id": patient},
                    "request": {"method": "PUT", "url": f"Patient/{patient}"},
                }
            ],
        }
    )
    delta = Delta(two_workers.url("/metrics"))
    body = hook_body(patient=patient, fhir_server=fhir_open.base)
    assert httpx.post(two_workers.url("/cds-services/probe"), json=body).status_code == 200
    assert delta("cds_prefetch_keys_total", key="patient", outcome="missing") == 1
    assert delta("cds_prefetch_keys_total", key="patient", outcome="fetched") == 1
    assert delta("cds_prefetch_fetch_duration_seconds_count") == 1

    delta = Delta(two_workers.url("/metrics"))
    dead = f"http://127.0.0.1:{free_port()}/fhir"
    body = hook_body(patient=patient, fhir_server=dead)
    assert httpx.post(two_workers.url("/cds-services/probe"), json=body).status_code == 412
    assert delta("cds_prefetch_keys_total", key="patient", outcome="failed") == 1
    assert delta("cds_prefetch_keys_total", key="observations", outcome="failed") == 1
    assert delta("cds_hook_requests_total", service="probe", hook="patient-view", status="412") == 1


def test_separate_metrics_port_and_switch_off() -> None:
    port = free_port()
    with run_cds_server(dict(PROBE_ENV, CDS_METRICS_PORT=str(port))) as s:
        assert httpx.get(s.url("/metrics")).status_code == 404
        httpx.get(s.url("/cds-services"))
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(samples, "cds_http_requests_total", endpoint="discovery", method="GET", status="200") >= 1
    with run_cds_server(dict(PROBE_ENV, CDS_METRICS_ENABLED="false")) as s:
        assert httpx.get(s.url("/metrics")).status_code == 404


def test_jwt_failures_by_reason_in_production() -> None:
    client = LocalIssuer.create()
    with run_cds_server(production_env([client.config()])) as s:
        delta = Delta(s.url("/metrics"))
        assert httpx.get(s.url("/cds-services")).status_code == 401
        bad = {"Authorization": "Bearer not-a-jwt"}
        assert httpx.get(s.url("/cds-services"), headers=bad).status_code == 401
        assert httpx.get(s.url("/cds-services"), headers=client.headers("/cds-services")).status_code == 200
        assert delta("cds_auth_failures_total", reason="no_token") == 1
        assert delta("cds_auth_failures_total", reason="malformed_token") == 1
        assert delta("cds_http_requests_total", endpoint="discovery", method="GET", status="401") == 2
