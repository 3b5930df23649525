"""The benchmark suite (issue 8): one command, one machine, one load generator, one table.

    .venv/bin/python -m bench            # full run, a few minutes
    .venv/bin/python -m bench --quick    # every row, short slices (CI)

Rows: our service on patient-view with full prefetch for patients with 50, 300 and 2,000
Observations (plus a 2,000-Observation patient without fasciculation, the common case), order-sign
and order-select with 5 draft orders, patient-view without prefetch against a real FHIR server
(SEKMET) on loopback, the floor (bench/floor.py) on the same bodies, and HealthChain 0.16.1 on the
300- and 2,000-Observation bodies.
Each row is measured twice: latency with 1 connection (what one clinician waits) and throughput
with 8 connections (what one worker can carry). Slices of all rows are interleaved round by round,
so a change in machine load during the run hits every row alike. Then the memory run: 10,000 calls,
resident memory sampled as they go. The targets are ratios of figures from this same run.

Benchmarks print figures; nothing here asserts on time (tests/tools/test_bench_quick.py only checks that
the quick mode completes and prints every row).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import loadgen, procs
from cds_service.clinical.services import SERVICE_ID, SERVICE_IDS, prefetch_templates
from cds_service.clinical.terminology import terminology
from cds_service.data.gather import FHIR_ACCEPT
from cds_service.data.templates import render, token_values
from cds_service.protocol.models import Hook
from cds_tools import fixtures, harness

ROOT = Path(__file__).resolve().parents[1]
HC_VENV = ROOT / "bench" / ".venv-healthchain"
HC_VERSION = "0.16.1"
HC_MARKER = HC_VENV / ".bench-installed"
SERVICE_PATH = f"/cds-services/{SERVICE_ID}"
SIGN_PATH = f"/cds-services/{SERVICE_IDS[Hook.ORDER_SIGN]}"  # one id per hook
SELECT_PATH = f"/cds-services/{SERVICE_IDS[Hook.ORDER_SELECT]}"
HC_PATH = f"/cds/cds-services/{SERVICE_ID}"
HOOK_INSTANCE = "5b5d5c3a-6f0e-4b53-9c3d-2f1f3a1b7e01"
USER = "Practitioner/bench-dr-1"
LOAD_CONNECTIONS = 8


@dataclass(frozen=True)
class Mode:
    """How long each measurement runs."""

    rounds: int  # interleaved rounds over all rows
    latency_s: float  # per row and round, 1 connection
    throughput_s: float  # per row and round, LOAD_CONNECTIONS connections
    warmup_s: float  # before the first slice of each row
    query_s: float  # per direct FHIR query and round
    memory_requests: int
    memory_sample_every: int


FULL = Mode(rounds=3, latency_s=1.5, throughput_s=2.0, warmup_s=1.0, query_s=0.7,
            memory_requests=10_000, memory_sample_every=500)
QUICK = Mode(rounds=1, latency_s=0.3, throughput_s=0.4, warmup_s=0.15, query_s=0.15,
             memory_requests=300, memory_sample_every=50)


# ----------------------------------------------------------------------------- request bodies


def discovery_templates() -> dict[str, str]:
    """The prefetch templates discovery advertises (one set for all three hooks)."""
    return {spec.key: spec.template for spec in prefetch_templates(terminology())}


def load_fixture(name: str) -> fixtures.Fixture:
    return fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")


def hook_body(hook: str, patient_id: str, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": USER, "patientId": patient_id}
    context.update(extra.pop("context", {}))
    return {"hook": hook, "hookInstance": HOOK_INSTANCE, "context": context, **extra}


def draft_orders(patient_id: str) -> dict[str, Any]:
    """Five R4 draft orders a clinician might sign for this patient: a drug our rules know
    (cyclobenzaprine), EMG, TSH, lumbar MRI and head CT."""
    subject = {"reference": f"Patient/{patient_id}"}

    def service_request(rid: str, system: str, code: str, text: str) -> dict[str, Any]:
        return {"resourceType": "ServiceRequest", "id": rid, "status": "draft", "intent": "order",
                "subject": subject, "code": {"coding": [{"system": system, "code": code}], "text": text}}

    drafts = [
        {"resourceType": "MedicationRequest", "id": "bench-mr-1", "status": "draft", "intent": "order",
         "subject": subject,
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "828348",
                                                   "display": "cyclobenzaprine hydrochloride 10 MG Oral Tablet"}]}},
        service_request("bench-sr-1", "http://snomed.info/sct", "42803009", "EMG"),
        service_request("bench-sr-2", "http://loinc.org", "3016-3", "TSH"),
        service_request("bench-sr-3", "http://www.ama-assn.org/go/cpt", "72148", "MRI lumbar spine"),
        service_request("bench-sr-4", "http://snomed.info/sct", "303653007", "CT head"),
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}


# The fixtures whose prefetch bodies the rows send (pv50, pv300, pv2000, pv2000none).
PREFETCH_FIXTURES = ("bg50-r04", "bg300-r01", "bg2000-r01", "bg2000-no-trigger")


def request_bodies(
    templates: dict[str, str], loaded: dict[str, fixtures.Fixture] | None = None
) -> dict[str, bytes]:
    """Every request body the benchmark sends with a full prefetch: patient-view per fixture name
    (``PREFETCH_FIXTURES``), and ``sign5``/``select5`` (the 300-Observation patient with five draft
    orders, order-select selecting the cyclobenzaprine order). Shared by the rows and by
    ``bench/call_profile.py``, so both measure the same bytes."""
    loaded = loaded or {name: load_fixture(name) for name in PREFETCH_FIXTURES}
    out = {
        name: orjson.dumps(hook_body("patient-view", fx.patient_id, prefetch=fixtures.prefetch_for(fx, templates)))
        for name, fx in loaded.items()
    }
    fx300 = loaded["bg300-r01"]
    prefetch = fixtures.prefetch_for(fx300, templates)
    drafts = draft_orders(fx300.patient_id)
    out["sign5"] = orjson.dumps(hook_body("order-sign", fx300.patient_id, prefetch=prefetch,
                                          context={"draftOrders": drafts}))
    out["select5"] = orjson.dumps(hook_body("order-select", fx300.patient_id, prefetch=prefetch,
                                            context={"draftOrders": drafts,
                                                     "selections": ["MedicationRequest/bench-mr-1"]}))
    return out


# ----------------------------------------------------------------------------- rows and results


@dataclass
class Row:
    """One line of the table: a server, a request (bytes, replayed) and the figures measured."""

    key: str
    label: str
    server: str  # key into the running servers
    path: str
    body: bytes | None  # POST body; None for a GET (the direct FHIR queries)
    note: str = ""
    skipped: str = ""  # reason the row could not be measured
    latency: loadgen.LoadResult = field(default_factory=loadgen.LoadResult)
    load: loadgen.LoadResult = field(default_factory=loadgen.LoadResult)
    cpu_s: float = 0.0  # server CPU seconds spent during the throughput slices
    client_cpu_s: float = 0.0  # the load generator's own CPU seconds during those slices
    warmed: bool = False

    def request(self, port: int) -> bytes:
        if self.body is None:
            return loadgen.get_request("127.0.0.1", port, self.path, FHIR_ACCEPT)
        return loadgen.post_request("127.0.0.1", port, self.path, self.body)

    def merge(self, into: loadgen.LoadResult, part: loadgen.LoadResult) -> None:
        into.latencies += part.latencies
        into.errors += part.errors
        into.elapsed += part.elapsed
        into.first_error = into.first_error or part.first_error

    def figures(self) -> dict[str, Any]:
        if self.skipped:
            return {"row": self.label, "skipped": self.skipped}
        return {
            "row": self.label,
            "body_kb": round(len(self.body) / 1024) if self.body else 0,
            "p50_ms": round(self.latency.percentile(50), 2),
            "p95_ms": round(self.latency.percentile(95), 2),
            "p99_ms": round(self.latency.percentile(99), 2),
            "latency_requests": self.latency.count,
            "rps": round(self.load.throughput, 1),
            "load_p50_ms": round(self.load.percentile(50), 2),
            "load_p99_ms": round(self.load.percentile(99), 2),
            "load_requests": self.load.count,
            "server_cpu_ms_per_request": round(self.cpu_s * 1000 / self.load.count, 2) if self.load.count else None,
            "client_cpu_ms_per_request": (
                round(self.client_cpu_s * 1000 / self.load.count, 3) if self.load.count else None
            ),
            "errors": self.latency.errors + self.load.errors,
            "first_error": self.latency.first_error or self.load.first_error,
            "note": self.note,
        }


def run_async(coro: Any) -> Any:
    loop = loadgen.new_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def measure(row: Row, server: procs.Server, seconds: float, connections: int, warmup: float) -> None:
    """One slice of one row, merged into its latency (1 connection) or throughput figures.
    The first slice of a row is preceded by an unmeasured warm-up (caches, first-call costs)."""
    request = row.request(server.port)
    if not row.warmed:
        run_async(loadgen.run_load("127.0.0.1", server.port, [request], connections, warmup))
        row.warmed = True
    cpu_before, client_before = server.cpu_seconds(), _own_cpu_seconds()
    part = run_async(loadgen.run_load("127.0.0.1", server.port, [request], connections, seconds))
    if connections == 1:
        row.merge(row.latency, part)
    else:
        row.cpu_s += server.cpu_seconds() - cpu_before
        row.client_cpu_s += _own_cpu_seconds() - client_before
        row.merge(row.load, part)


def _own_cpu_seconds() -> float:
    """CPU time of this process (the load generator) so far, at nanosecond resolution."""
    return time.process_time()


# ----------------------------------------------------------------------------- HealthChain venv


def ensure_healthchain(install: bool, log: Callable[[str], None]) -> str | None:
    """The interpreter of bench/.venv-healthchain, creating it on demand; None plus a logged reason
    when it cannot be had (no network, no venv module, ...)."""
    python = HC_VENV / "bin" / "python"
    if HC_MARKER.exists() and python.exists():
        return str(python)
    if not install:
        log(f"HealthChain venv missing ({HC_VENV.relative_to(ROOT)}); run once without --no-install")
        return None
    log(f"installing HealthChain {HC_VERSION} into {HC_VENV.relative_to(ROOT)} (once) ...")
    shutil.rmtree(HC_VENV, ignore_errors=True)
    # the same event loop and HTTP parser versions as our service, so the process model matches
    same = [f"{name}=={metadata.version(name)}" for name in ("uvloop", "httptools") if _installed(name)]
    steps = [
        [sys.executable, "-m", "venv", str(HC_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"healthchain=={HC_VERSION}", *same],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log(f"HealthChain install failed: {exc}")
            return None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            log(f"HealthChain install failed: {last[0] if last else 'exit ' + str(done.returncode)}")
            return None
    HC_MARKER.write_text(f"healthchain=={HC_VERSION} {' '.join(same)}\n")
    return str(python)


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


# ----------------------------------------------------------------------------- the run


@dataclass
class Bench:
    mode: Mode
    install: bool
    out: Callable[[str], None] = print
    cpus: procs.Cpus = field(default_factory=procs.Cpus.plan)
    servers: dict[str, procs.Server] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    queries: list[Row] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    burst: loadgen.LoadResult = field(default_factory=loadgen.LoadResult)  # all queries at once

    def log(self, message: str) -> None:
        self.out(f"# {message}")

    # -- servers

    def start_servers(self, work: Path) -> None:
        """Start every server at once (they start in parallel), then wait for each."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env["PYTHONPATH"] = str(ROOT)
        pin = self.cpus.preexec(self.cpus.server)
        db_url = f"sqlite+aiosqlite:///{work}/cds.db"
        service_env = {
            **env,
            "CDS_HOST": "127.0.0.1",
            "CDS_WORKERS": "1",
            "CDS_DATABASE_URL": db_url,
            # as in production: the schema is migrated before the workers start ...
            "CDS_AUTO_MIGRATE": "false",
            # ... and responses are not re-checked (the dev profile's default would)
            "CDS_VALIDATE_RESPONSES": "false",
        }
        subprocess.run([sys.executable, "-m", "cds_service", "migrate", "up"], env=service_env, cwd=work,
                       check=True, capture_output=True, timeout=120)
        health: dict[str, str] = {}
        port = procs.free_port()
        self.servers["service"] = procs.spawn(
            "service", [sys.executable, "-m", "cds_service", "serve"], {**service_env, "CDS_PORT": str(port)},
            work, port, work, pin,
        )
        health["service"] = "/healthz"
        port = procs.free_port()
        self.servers["floor"] = procs.spawn(
            "floor", procs.uvicorn_cmd(sys.executable, "bench.floor:app", port), env, ROOT, port, work, pin
        )
        health["floor"] = "/healthz"
        if harness.sekmet_binary() is not None:
            port = procs.free_port()
            sek_dir = work / "sekmet"
            sek_dir.mkdir()
            sek_cmd, _ = harness.sekmet_command(sek_dir, port)
            self.servers["sekmet"] = procs.spawn(
                "sekmet", sek_cmd, env, sek_dir, port, work, self.cpus.preexec(self.cpus.client),
            )
            health["sekmet"] = "/fhir/metadata"
        else:
            self.log("SEKMET not installed (pip install sekmet-fhir==0.1.1; it is in the test extra)")
        hc_python = ensure_healthchain(self.install, self.log)
        if hc_python is not None:
            port = procs.free_port()
            self.servers["healthchain"] = procs.spawn(
                "healthchain", procs.uvicorn_cmd(hc_python, "bench.healthchain_app:app", port), env, ROOT, port,
                work, pin,
            )
            health["healthchain"] = "/health"
        for name, path in health.items():
            try:
                procs.wait_healthy(self.servers[name], path)
            except RuntimeError as exc:
                if name in ("service", "floor"):
                    raise
                self.log(f"{name} did not start: {str(exc).splitlines()[0]}")
                del self.servers[name]

    def stop_servers(self) -> None:
        for server in self.servers.values():
            server.stop()

    # -- rows

    def build_rows(self) -> None:
        templates = discovery_templates()
        fixtures_used = {name: load_fixture(name) for name in PREFETCH_FIXTURES}
        bodies = request_bodies(templates, fixtures_used)
        sign, select = bodies["sign5"], bodies["select5"]
        fx300 = fixtures_used["bg300-r01"]
        counts = {name: sum(r["resourceType"] == "Observation" for r in fx.resources())
                  for name, fx in fixtures_used.items()}

        def pv(key: str, name: str, label: str, note: str) -> Row:
            return Row(key, label, "service", SERVICE_PATH, bodies[name], note=f"{name}, {counts[name]} Observations; {note}")

        self.rows = [
            pv("pv50", "bg50-r04", "patient-view, 50 Obs, prefetch", "4 cards"),
            pv("pv300", "bg300-r01", "patient-view, 300 Obs, prefetch", "4 cards"),
            pv("pv2000", "bg2000-r01", "patient-view, 2,000 Obs, prefetch", "4 cards"),
            pv("pv2000none", "bg2000-no-trigger", "patient-view, 2,000 Obs, no fasciculation",
               "no cards (most patients)"),
            Row("sign5", "order-sign, 5 drafts, 300 Obs, prefetch", "service", SIGN_PATH, sign,
                note="bg300-r01 + 5 draft orders"),
            Row("select5", "order-select, 5 drafts (1 selected), 300 Obs, prefetch", "service", SELECT_PATH,
                select, note="bg300-r01 + 5 draft orders, cyclobenzaprine selected"),
        ]
        if "sekmet" in self.servers:
            sek = self.servers["sekmet"]
            result = httpx.post(f"{sek.base}/fhir", content=orjson.dumps(fx300.bundle), timeout=120,
                                headers={"Content-Type": "application/fhir+json"})
            result.raise_for_status()
            body = orjson.dumps(hook_body("patient-view", fx300.patient_id, fhirServer=f"{sek.base}/fhir"))
            self.rows.append(Row("nopf", "patient-view, 300 Obs, no prefetch (fetches from SEKMET)", "service",
                                 SERVICE_PATH, body, note=f"{len(templates)} queries in parallel"))
            values = token_values({"userId": USER, "patientId": fx300.patient_id})
            for key, template in templates.items():
                rendered = render(template, values)
                if rendered is not None:
                    self.queries.append(Row(f"q:{key}", f"GET {key}", "sekmet", "/fhir/" + rendered.lstrip("/"),
                                            None, note=rendered[:60]))
        else:
            self.rows.append(Row("nopf", "patient-view, 300 Obs, no prefetch (fetches from SEKMET)", "service",
                                 SERVICE_PATH, None, skipped="SEKMET not available"))
        self.rows += [
            Row("floor300", "floor, 300-Obs body", "floor", "/cds-services/floor", bodies["bg300-r01"]),
            Row("floor2000", "floor, 2,000-Obs body", "floor", "/cds-services/floor", bodies["bg2000-r01"]),
            Row("floor2000none", "floor, 2,000-Obs no-fasciculation body", "floor", "/cds-services/floor",
                bodies["bg2000-no-trigger"]),
            Row("floor50", "floor, 50-Obs body", "floor", "/cds-services/floor", bodies["bg50-r04"]),
            Row("recv300", "receive only (floor without the parse), 300-Obs body", "floor", "/receive-only/floor",
                bodies["bg300-r01"], note="the HTTP server's share of every call"),
            Row("recv2000none", "receive only, 2,000-Obs no-fasciculation body", "floor", "/receive-only/floor",
                bodies["bg2000-no-trigger"], note="the HTTP server's share of every call"),
        ]
        for key, name, size in (("hc300", "bg300-r01", "300"), ("hc2000", "bg2000-r01", "2,000")):
            self.rows.append(Row(key, f"HealthChain {HC_VERSION}, {size}-Obs body", "healthchain", HC_PATH,
                                 bodies[name], note="trivial handler, one fixed card",
                                 skipped="" if "healthchain" in self.servers
                                 else "HealthChain could not be installed or started"))
        self.check_answers()

    def check_answers(self) -> None:
        """One call per row before measuring: every row must answer 200 (a row measuring errors
        would be meaningless), and the service's rows must give the cards their note says."""
        for row in [*self.rows, *self.queries]:
            if row.skipped:
                continue
            url = self.servers[row.server].base + row.path
            if row.body is None:
                resp = httpx.get(url, headers={"Accept": FHIR_ACCEPT}, timeout=60)
            else:
                resp = httpx.post(url, content=row.body, headers={"Content-Type": "application/json"}, timeout=60)
            if resp.status_code != 200:
                row.skipped = f"answered HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if row.server == "service":
                cards = resp.json().get("cards", [])
                row.note += f"; answer: {len(cards)} card(s)"

    # -- measuring

    def measure_rows(self) -> None:
        """Round by round, every row: a latency slice, then a throughput slice; then the direct
        FHIR queries, also interleaved."""
        m = self.mode
        live = [r for r in self.rows if not r.skipped]
        for rnd in range(m.rounds):
            self.log(f"round {rnd + 1}/{m.rounds}: {len(live)} rows, latency then throughput")
            for row in live:
                server = self.servers[row.server]
                measure(row, server, m.latency_s, 1, m.warmup_s)
                measure(row, server, m.throughput_s, LOAD_CONNECTIONS, m.warmup_s)
        queries = [q for q in self.queries if not q.skipped]
        for _ in range(m.rounds):
            for q in queries:
                measure(q, self.servers[q.server], m.query_s, 1, m.warmup_s / 2)
            if queries:
                sek = self.servers["sekmet"]
                burst = run_async(loadgen.run_bursts("127.0.0.1", sek.port, [q.request(sek.port) for q in queries],
                                                     m.query_s * 2))
                self.burst.latencies += burst.latencies
                self.burst.errors += burst.errors
                self.burst.elapsed += burst.elapsed

    def measure_memory(self) -> None:
        """10,000 calls (full mode) over a mix of the service's prefetch rows, 8 connections,
        RSS of the worker sampled every few hundred calls."""
        server = self.servers["service"]
        by_key = {r.key: r for r in self.rows}
        mix_keys = ["pv50", "pv300", "sign5", "pv300", "pv50", "pv2000none", "pv300", "sign5",
                    "pv50", "pv300", "pv2000", "pv300", "pv50", "select5", "pv300", "pv50"]
        mix = [by_key[k].request(server.port) for k in mix_keys if k in by_key and not by_key[k].skipped]
        total, every = self.mode.memory_requests, self.mode.memory_sample_every
        samples: list[tuple[int, float]] = [(0, server.rss_mb())]
        done = 0
        errors = 0
        started = time.perf_counter()
        while done < total:
            chunk = min(every, total - done)
            res = run_async(loadgen.run_load("127.0.0.1", server.port, mix, LOAD_CONNECTIONS, 3600.0, total=chunk))
            done += chunk
            errors += res.errors
            samples.append((done, server.rss_mb()))
        half = [s for s in samples if s[0] >= total / 2]
        slope = _slope(half)  # MB per request over the last half
        at_half = min(half, key=lambda s: s[0])[1]
        self.memory = {
            "requests": total,
            "seconds": round(time.perf_counter() - started, 1),
            "errors": errors,
            "rss_start_mb": round(samples[0][1], 1),
            "rss_half_mb": round(at_half, 1),
            "rss_end_mb": round(samples[-1][1], 1),
            "rss_max_mb": round(max(s[1] for s in samples), 1),
            "last_half_growth_mb": round(samples[-1][1] - at_half, 2),
            "last_half_trend_mb": round(slope * (total / 2), 2),
            "samples": [(n, round(mb, 1)) for n, mb in samples],
        }

    # -- report

    def targets(self) -> list[dict[str, Any]]:
        """The targets of issue 15, each a figure or ratio of figures from this same run."""
        rows = {r.key: r for r in self.rows}
        out: list[dict[str, Any]] = []

        def ratio(name: str, a: str, b: str, goal: float, why: str) -> None:
            ra, rb = rows.get(a), rows.get(b)
            if ra is None or rb is None or ra.skipped or rb.skipped or not rb.load.throughput:
                missing = ", ".join(r.label for r in (ra, rb) if r is not None and r.skipped)
                out.append({"target": name, "goal": f">= {goal:g}", "value": None, "met": None,
                            "why": f"not measured ({missing or 'row missing'})"})
                return
            value = ra.load.throughput / rb.load.throughput
            out.append({"target": name, "goal": f">= {goal:g}", "value": round(value, 2), "met": value >= goal,
                        "why": why})

        ratio("patient-view 300 Obs throughput / floor", "pv300", "floor300", 1.0,
              "req/s ratio, 8 connections; stretch 1.3")
        ratio("patient-view 300 Obs throughput / HealthChain", "pv300", "hc300", 3.0, "req/s ratio, 8 connections")
        ratio("patient-view 2,000 Obs throughput / floor", "pv2000", "floor2000", 1.5, "req/s ratio, 8 connections")
        ratio("no-fasciculation 2,000 Obs throughput / floor", "pv2000none", "floor2000none", 3.0,
              "req/s ratio, 8 connections, floor on the same body")
        # Ceilings: receive-only over the floor is the most any service that reads its body could
        # reach against the floor (its own work costing nothing); a goal above it cannot be met.
        for key, floor, label in (("recv300", "floor300", "300 Obs"), ("recv2000none", "floor2000none",
                                                                        "2,000 Obs no fasciculation")):
            rr, rf = rows.get(key), rows.get(floor)
            if rr and rf and not rr.skipped and not rf.skipped and rf.load.throughput:
                value = rr.load.throughput / rf.load.throughput
                out.append({"target": f"ceiling: receive-only / floor, {label}", "goal": "bound",
                            "value": round(value, 2), "met": None,
                            "why": "the highest ratio to the floor a service reading this body over HTTP can reach"})
        for row in self.rows:
            if row.server != "service" or row.skipped or not row.latency.count:
                continue
            p50, p99 = row.latency.percentile(50), row.latency.percentile(99)
            value = p99 / p50 if p50 else float("inf")
            out.append({"target": f"p99 / p50, 1 connection: {row.key}", "goal": "<= 2", "value": round(value, 2),
                        "met": value <= 2.0, "why": f"{row.label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms"})
        nopf = rows.get("nopf")
        measured = [q for q in self.queries if not q.skipped and q.latency.count]
        name = "no-prefetch p50 minus all-queries-at-once p50 (ms)"
        if nopf is None or nopf.skipped or not measured or not self.burst.count:
            out.append({"target": name, "goal": "<= 5", "value": None, "met": None,
                        "why": "not measured (SEKMET unavailable)"})
        else:
            slowest = max(measured, key=lambda q: q.latency.percentile(50))
            burst = self.burst.percentile(50)
            value = nopf.latency.percentile(50) - burst
            out.append({"target": name, "goal": "<= 5", "value": round(value, 2), "met": value <= 5.0,
                        "why": f"no-prefetch p50 {nopf.latency.percentile(50):.2f} ms; all {len(measured)} queries "
                               f"at once: p50 {burst:.2f} ms; slowest single query: {slowest.label} "
                               f"p50 {slowest.latency.percentile(50):.2f} ms"})
        if self.memory:
            end, growth = self.memory["rss_end_mb"], self.memory["last_half_trend_mb"]
            out.append({"target": f"worker RSS after {self.memory['requests']:,} calls", "goal": "<= 150 MB",
                        "value": end, "met": end <= 150, "why": "VmRSS of the worker process"})
            out.append({"target": "RSS growth over the last half (fitted)", "goal": "< 1 MB",
                        "value": growth, "met": growth < 1.0,
                        "why": f"end minus half-way: {self.memory['last_half_growth_mb']} MB"})
        return out

    def report(self) -> dict[str, Any]:
        return {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "pinning": {"server_cpus": sorted(self.cpus.server), "client_cpus": sorted(self.cpus.client)},
            "mode": self.mode.__dict__,
            "rows": [r.figures() for r in self.rows],
            "fhir_queries": [q.figures() for q in self.queries],
            "fhir_burst": {"p50_ms": round(self.burst.percentile(50), 2), "p95_ms": round(self.burst.percentile(95), 2),
                           "p99_ms": round(self.burst.percentile(99), 2), "bursts": self.burst.count,
                           "errors": self.burst.errors},
            "memory": self.memory,
            "targets": self.targets(),
            "notes": self.notes,
        }


def _slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope of (x, y); 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else 0.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {name: _version(name) for name in ("uvicorn", "fastapi", "starlette", "orjson", "pydantic",
                                                  "uvloop", "httptools", "sekmet-fhir")}
    mem_total = 0
    try:
        mem_total = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_mb": mem_total,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


# ----------------------------------------------------------------------------- printing


def print_table(report: dict[str, Any], out: Callable[[str], None]) -> None:
    m = report["machine"]
    out("")
    out(f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_mb']} MB; Python {m['python']}; "
        f"load average at end {m['load_average']}")
    pin = report["pinning"]
    out("Servers pinned to CPU " + ",".join(map(str, pin["server_cpus"])) + ", load generator to CPU "
        + ",".join(map(str, pin["client_cpus"])) if pin["server_cpus"] else "CPU pinning unavailable")
    out("Latency: 1 connection; throughput: 8 connections; all servers 1 uvicorn worker. cpu ms: server CPU per")
    out("call during the throughput slices; gen ms: the load generator's own CPU per call (its core is idle")
    out("whenever gen ms is below the server's cpu ms: the generator is not what limits a row).")
    out("")
    head = (f"{'row':<58} {'body':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8} {'cpu ms':>7} "
            f"{'gen ms':>7}")
    out(head)
    out("-" * len(head))
    for r in report["rows"]:
        if "skipped" in r:
            out(f"{r['row']:<58} skipped: {r['skipped']}")
            continue
        cpu = f"{r['server_cpu_ms_per_request']:.2f}" if r["server_cpu_ms_per_request"] is not None else "-"
        gen = f"{r['client_cpu_ms_per_request']:.3f}" if r["client_cpu_ms_per_request"] is not None else "-"
        out(f"{r['row']:<58} {r['body_kb']:>5}KB {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['rps']:>8.1f} {cpu:>7} {gen:>7}"
            + (f"  ERRORS {r['errors']}: {r['first_error']}" if r["errors"] else ""))
    if report["fhir_queries"]:
        out("")
        out("Single FHIR queries the service makes (the same rendered URLs), straight to SEKMET, 1 connection:")
        for q in report["fhir_queries"]:
            if "skipped" in q:
                out(f"  {q['row']:<28} skipped: {q['skipped']}")
            else:
                out(f"  {q['row']:<28} p50 {q['p50_ms']:>7.2f} ms   p95 {q['p95_ms']:>7.2f} ms   p99 {q['p99_ms']:>7.2f} ms")
        b = report["fhir_burst"]
        out(f"  {'all at once (parallel)':<28} p50 {b['p50_ms']:>7.2f} ms   p95 {b['p95_ms']:>7.2f} ms   "
            f"p99 {b['p99_ms']:>7.2f} ms   (one connection per query, as the service's pool)")
    mem = report["memory"]
    if mem:
        out("")
        out(f"Memory: {mem['requests']:,} calls in {mem['seconds']} s ({mem['errors']} errors); worker RSS "
            f"start {mem['rss_start_mb']} MB, half-way {mem['rss_half_mb']} MB, end {mem['rss_end_mb']} MB, "
            f"max {mem['rss_max_mb']} MB")
    out("")
    out(f"{'target':<52} {'goal':>10} {'value':>8}  result")
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']}"
        result = "n/a" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        out(f"{t['target']:<52} {t['goal']:>10} {value:>8}  {result}  ({t['why']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every row with short slices (CI, < 1 min)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not create bench/.venv-healthchain; skip the HealthChain row if it is missing")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    bench = Bench(mode, install=not args.no_install)
    bench.cpus.pin_client()
    if not bench.cpus.pinned:
        bench.log("fewer than 2 CPUs (or not Linux): servers and load generator are not pinned")
    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    started = time.perf_counter()
    try:
        bench.log(f"{'quick' if args.quick else 'full'} run; work directory {work}")
        bench.start_servers(work)
        bench.build_rows()
        bench.measure_rows()
        bench.log("memory run")
        bench.measure_memory()
        report = bench.report()
    finally:
        bench.stop_servers()
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_table(report, print)
    print(f"\n({report['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
