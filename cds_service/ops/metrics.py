"""Prometheus metrics: what hospital IT needs to run the service, and never PHI in a label.

Every label value comes from a closed or server-defined set (endpoint kinds, HTTP methods and
status codes, registered service ids and hooks, rule ids, prefetch keys declared by services), so
nothing a caller sends can create a new time series.

The metrics live in prometheus_client's default registry, where the trust layer also registers its
``cds_auth_failures_total{reason}`` (JWT failures by reason), so one exposition carries both. With
several uvicorn workers every worker is its own process: ``cds-fasciculation serve`` then sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus_client, each worker writes its
values to files there, and :func:`exposition` adds up all workers' files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# EHRs give a CDS service about 5 s; the interesting part of the curve is 10 ms to 2.5 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "cds_http_requests", "HTTP requests by endpoint kind, method and status", ["endpoint", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "cds_http_request_duration_seconds",
    "Time from request to the last byte of the response, by endpoint kind and method",
    ["endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)
HOOK_REQUESTS = Counter(
    "cds_hook_requests", "CDS service calls by service id, hook and HTTP status", ["service", "hook", "status"]
)
HOOK_LATENCY = Histogram(
    "cds_hook_request_duration_seconds",
    "Latency of CDS service calls by service id, hook and HTTP status",
    ["service", "hook", "status"],
    buckets=LATENCY_BUCKETS,
)
PREFETCH_KEYS = Counter(
    "cds_prefetch_keys",
    "Prefetch keys per call: given (usable data from the client), missing (not usable from the "
    "client), fetched (then obtained from fhirServer), failed (fetch attempted, data not obtained)",
    ["key", "outcome"],
)
PREFETCH_FETCH_LATENCY = Histogram(
    "cds_prefetch_fetch_duration_seconds",
    "Time spent fetching missing prefetch data from the FHIR server, per call that fetched",
    buckets=LATENCY_BUCKETS,
)
CARDS_ISSUED = Counter(
    "cds_cards_issued", "Cards returned to EHRs by service, rule and indicator", ["service", "rule", "indicator"]
)
FEEDBACK_ITEMS = Counter(
    "cds_feedback_items", "Feedback items received (repeats included) by service and outcome", ["service", "outcome"]
)

class Observed(Protocol):
    """What the metrics read from a request's ``CallRecord`` (``cds_service/ops/record.py``)."""

    method: str
    endpoint: str
    status: int | None
    served: tuple[str, str] | None
    issued: list[Any]

    def elapsed(self) -> float: ...


def observe(record: Observed) -> None:
    """Count and time one finished HTTP request (and, when the call named a registered (id, hook),
    the CDS call and the cards of its answer). The endpoint kind and method come from closed sets
    (the record classified them), so nothing a caller sends creates a new time series."""
    elapsed = record.elapsed()
    status = str(record.status if record.status is not None else 500)
    HTTP_REQUESTS.labels(record.endpoint, record.method, status).inc()
    HTTP_LATENCY.labels(record.endpoint, record.method).observe(elapsed)
    if record.served is None:
        return
    service, hook = record.served
    HOOK_REQUESTS.labels(service, hook, status).inc()
    HOOK_LATENCY.labels(service, hook, status).observe(elapsed)
    if status == "200":  # cards withheld by the self-check (500) were never issued
        for card in record.issued:
            CARDS_ISSUED.labels(service, card.rule_id, card.indicator).inc()


def prefetch_observed(results: Iterable[Any]) -> None:
    """Count each prefetch key of one call by how its data was had (``KeyResult`` objects from the
    prefetch engine), and observe the fetch time once for the call."""
    slowest: float | None = None
    for r in results:
        state = str(r.state)
        if state in ("prefetched", "null"):
            PREFETCH_KEYS.labels(r.key, "given").inc()
            continue
        PREFETCH_KEYS.labels(r.key, "missing").inc()
        if r.fetch_ms is not None:
            PREFETCH_KEYS.labels(r.key, "fetched" if state == "fetched" else "failed").inc()
            slowest = max(slowest or 0.0, r.fetch_ms)
    if slowest is not None:
        PREFETCH_FETCH_LATENCY.observe(slowest / 1000)


def feedback_received(service_id: str, items: Iterable[Any]) -> None:
    """Count feedback items by outcome (the model admits only 'accepted' and 'overridden')."""
    for item in items:
        FEEDBACK_ITEMS.labels(service_id, str(item.outcome)).inc()


def multiprocess_dir() -> str | None:
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


def collecting_registry() -> CollectorRegistry:
    """The registry to expose: all workers' files in multiprocess mode, else this process's."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def exposition() -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(collecting_registry()), CONTENT_TYPE_LATEST
