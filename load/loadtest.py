"""Load and fault test: many simulated EHRs call the service while its FHIR server misbehaves.

What runs (all on 127.0.0.1, all started here, all stopped at the end):

* a SEKMET FHIR R4 server loaded with fixture patients;
* the service (``python -m cds_service serve``, dev profile, response self-check on, a prefetch
  deadline of ``--deadline`` seconds);
* ``faultproxy.py`` in front of SEKMET, in a process of its own: a ``--fault-rate`` fraction of FHIR
  requests is delayed beyond the deadline, answered 500, reset or answered with invalid JSON; some
  more are merely slow; it logs every request with the hook call it served;
* ``--clients`` concurrent EHR clients, each an asyncio task with its own HTTP connection, calling
  ``patient-view``, ``order-select`` and ``order-sign`` across the fixtures in three data modes:
  ``full`` (every key prefetched, resolved against SEKMET by the "EHR" beforehand), ``partial``
  (required keys prefetched, optional keys left to the service, through the proxy) and ``none``
  (everything through the proxy).

Bounded: it stops after ``--duration`` seconds or ``--max-requests`` calls, whichever comes first.

Invariants (any violation: exit status 1, with examples):

1. no 5xx and no transport error from the service, and only 200 or 412;
2. 412 only where required data was unavailable: only on ``none`` calls, and only when a request for a
   required key (conditions, labs, findings) of *that* call was broken by the proxy, never answered,
   or answered too late to meet the deadline (``proxy log``: every FHIR request carries its call's
   tag); conversely, a call whose required key drew a fault must be 412, never a 200 built on
   missing data;
3. every 200 is a conformant CDS Hooks response; when an optional key of the call drew a fault, each
   card says which data could not be obtained; when nothing was broken or late, the cards are exactly
   those fixtures/expected.yaml (order-cases.yaml) pin for the patient (rule and indicator, in order);
4. memory: the service's RSS does not grow over the second half of the run (tolerance
   ``--rss-tolerance-mb``, or 5 %).

Figures printed: calls, calls/s, status counts, latency p50/p95/p99 (overall and per mode), faults
injected by kind, 412s and their causes, RSS at start/middle/end/max. ``--json PATH`` also writes
them as JSON.

Usage, from the repository root: ``python -m load.loadtest --quick`` (about 25 s of load, what CI
runs) or ``python -m load.loadtest`` (3 minutes, 16 clients, every fixture); see docs/testing.md,
section 7. Processes are started by the shared harness (``cds_tools/harness.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import orjson
import yaml

from cds_service.clinical.cards import CARD_EXTENSION
from cds_service.clinical.services import SERVICE_ID, SERVICE_IDS, prefetch_templates
from cds_service.clinical.terminology import terminology
from cds_service.protocol.validate import response_problems
from cds_tools import fixtures, harness
from cds_tools.harness import stop
from load.faultproxy import Entry, base_url, read_log, require_loopback

QUICK_FIXTURES = (
    "r01-weakness",
    "bg300-r01",
    "r03-gbs",
    "r05a-ck",
    "r05c-tsh",
    "r09-abnormal-emg",
    "r13-prednisone",
    "r14-follow-up",
    "r20-reassurance",
    "r10-msk-spasm",
    "neg-refuted",
    "no-trigger",
)
MODES = ("full", "partial", "none")
MISSING_NOTE = "could not be obtained"


# ------------------------------------------------------------------------------------------ processes


@contextlib.contextmanager
def sekmet(work: Path) -> Iterator[str]:
    """A fresh SEKMET FHIR server; yields its FHIR base URL."""
    if harness.sekmet_binary() is None:
        raise SystemExit("SEKMET is not installed (pip install -e '.[test]' installs sekmet-fhir)")
    work.mkdir(parents=True)
    cmd, base = harness.sekmet_command(work, harness.free_port())
    with (work / "sekmet.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(base + "/metadata", proc)
        yield base
    finally:
        stop(proc, grace=15)


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    try:
        harness.wait_http(url, proc, timeout=60.0, interval=0.2)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


@contextlib.contextmanager
def service(work: Path, deadline: float, pool: int | None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The CDS service under test; yields its base URL and process."""
    port = harness.free_port()
    work.mkdir(parents=True)
    extra = {
        "CDS_PREFETCH_DEADLINE_SECONDS": str(deadline),
        "CDS_VALIDATE_RESPONSES": "true",
        "CDS_LOG_LEVEL": "warning",
    }
    if pool is not None:
        extra["CDS_FHIR_MAX_CONNECTIONS"] = str(pool)
    env = harness.service_env(port, work, extra)
    with (work / "service.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cds_service", "serve"],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + "/healthz", proc)
        yield base, proc
    finally:
        stop(proc, grace=15)


@contextlib.contextmanager
def fault_proxy(work: Path, upstream: str, args: argparse.Namespace) -> Iterator[tuple[int, Path]]:
    """faultproxy.py in a process of its own (so the load generator cannot starve it); yields its
    port and the JSONL log it writes."""
    work.mkdir(parents=True)
    log = work / "requests.jsonl"
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "faultproxy.py"), "--upstream", upstream]
    cmd += ["--fault-rate", str(args.fault_rate), "--slow-rate", str(args.slow_rate)]
    cmd += ["--delay", str(args.deadline + 1.0), "--slow-max", str(args.deadline * 0.15)]
    cmd += ["--seed", str(args.seed), "--log", str(log), "--report-every", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()
    if not first.startswith("READY "):
        stop(proc, grace=15)
        raise SystemExit(f"fault proxy did not start: {first}{proc.stdout.read().decode()[-2000:]}")
    try:
        yield int(first.split()[1]), log
    finally:
        stop(proc, grace=15)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its children (uvicorn may fork workers)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


# ------------------------------------------------------------------------------------------ workload


@dataclass
class Case:
    """One kind of call a simulated EHR makes: a patient, a hook, draft orders, the cards it expects."""

    name: str
    fixture: fixtures.Fixture
    hook: str
    context: dict[str, Any]
    expected: list[tuple[str, str]]  # (rule, indicator) in order, for an unbroken call
    prefetch: dict[str, Any] = field(default_factory=dict)  # full prefetch, resolved against SEKMET
    encoded: dict[str, bytes] = field(default_factory=dict)  # per mode: the prefetch member, as JSON


@dataclass
class Call:
    case: str
    hook: str
    mode: str
    tag: str
    started: float
    latency: float = 0.0
    status: int | None = None  # None: transport error
    error: str = ""
    body: Any = None


def build_cases(names: list[str]) -> list[Case]:
    expected = fixtures.expectations()
    cases = []
    loaded: dict[str, fixtures.Fixture] = {}

    def fixture(name: str) -> fixtures.Fixture:
        if name not in loaded:
            loaded[name] = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
        return loaded[name]

    for name in names:
        cards = [(c["rule"], c["indicator"]) for c in expected[name]["cards"]]
        cases.append(Case(f"pv:{name}", fixture(name), "patient-view", {}, cards))
    for oc in yaml.safe_load((fixtures.ROOT / "order-cases.yaml").read_text()):
        if oc["patient"] not in names:
            continue
        context: dict[str, Any] = {
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": d} for d in oc["drafts"]],
            }
        }
        if oc["hook"] == "order-select":
            ids = [f"{d['resourceType']}/{d.get('id')}" for d in oc["drafts"] if isinstance(d, dict)]
            context["selections"] = oc.get("selections", ids)
        cards = [(c["rule"], c["indicator"]) for c in oc["expect"]]
        cases.append(Case(f"{oc['hook']}:{oc['name']}", fixture(oc["patient"]), oc["hook"], context, cards))
    return cases


def render(template: str, patient: str) -> str:
    return template.replace("{{context.patientId}}", patient)


async def resolve_prefetch(cases: list[Case], fhir: str, templates: dict[str, str]) -> None:
    """The EHR's side of full prefetch: every template read or searched on SEKMET, once per patient."""
    cache: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        for case in cases:
            pid = case.fixture.patient_id
            if pid not in cache:
                prefetch: dict[str, Any] = {}
                for key, template in templates.items():
                    resp = await client.get(f"{fhir}/{render(template, pid)}")
                    resp.raise_for_status()
                    prefetch[key] = resp.json()
                cache[pid] = prefetch
            case.prefetch = cache[pid]


def target_key(target: str, patient: str, templates: dict[str, str]) -> str | None:
    """Which prefetch key a proxied FHIR request serves (None: e.g. a next page)."""
    path, _, query = target.partition("?")
    got = (unquote(path), sorted(parse_qsl(query, keep_blank_values=True)))
    for key, template in templates.items():
        t_path, _, t_query = render(template, patient).partition("?")
        if (t_path, sorted(parse_qsl(t_query, keep_blank_values=True))) == got:
            return key
    return None


def encode_body(case: Case, mode: str, tag: str, proxy_port: int) -> bytes:
    """The hook request as bytes. The (large) prefetch is encoded once per case and mode and spliced
    in, so that serialising it does not make the load generator the bottleneck."""
    head: dict[str, Any] = {
        "hook": case.hook,
        "hookInstance": str(uuid.UUID(tag)),
        "context": {"userId": "Practitioner/dr-1", "patientId": case.fixture.patient_id, **case.context},
    }
    if mode != "full":
        head["fhirServer"] = base_url(proxy_port, tag)
    if mode == "none":
        return orjson.dumps(head)
    if mode not in case.encoded:
        keys = case.prefetch if mode == "full" else REQUIRED_KEYS
        case.encoded[mode] = orjson.dumps({k: case.prefetch[k] for k in keys})
    return orjson.dumps(head)[:-1] + b',"prefetch":' + case.encoded[mode] + b"}"


async def ehr_client(
    cds: str,
    proxy_port: int,
    cases: list[Case],
    rng: random.Random,
    stop_at: float,
    budget: list[int],
    calls: list[Call],
) -> None:
    """One simulated EHR: calls back to back until the time or request budget is spent."""
    urls = {str(hook): f"{cds}/cds-services/{sid}" for hook, sid in SERVICE_IDS.items()}  # one id per hook
    views = [c for c in cases if c.hook == "patient-view"]
    orders = [c for c in cases if c.hook != "patient-view"] or views
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(timeout=30.0, trust_env=False, limits=limits) as client:
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            # charts are opened more often than orders are signed
            case = rng.choice(views if rng.random() < 0.6 else orders)
            mode = rng.choices(MODES, weights=(3, 2, 4))[0]
            tag = uuid.uuid4().hex
            content = encode_body(case, mode, tag, proxy_port)
            call = Call(case.name, case.hook, mode, tag, time.monotonic())
            try:
                resp = await client.post(urls[case.hook], content=content, headers=headers)
                call.status = resp.status_code
                call.body = orjson.loads(resp.content)
            except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                call.error = f"{type(exc).__name__}: {exc}"
            call.latency = time.monotonic() - call.started
            calls.append(call)


REQUIRED_KEYS: list[str] = [s.key for s in prefetch_templates(terminology()) if s.required]


# ------------------------------------------------------------------------------------------ verdict


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def card_rules(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(rule, indicator) of each card; the rule from the card's machine-readable extension."""
    return [(c["extension"][CARD_EXTENSION]["rule"], c["indicator"]) for c in body["cards"]]


def judge(
    calls: list[Call],
    cases: dict[str, Case],
    log: list[Entry],
    templates: dict[str, str],
    deadline: float,
) -> tuple[list[str], Counter[str]]:
    """Every violation of invariants 1-3, and the causes of the 412s."""
    by_tag: dict[str, list[Entry]] = {}
    for entry in log:
        by_tag.setdefault(entry.tag, []).append(entry)
    tags = {c.tag for c in calls}
    violations: list[str] = []
    causes: Counter[str] = Counter()
    stray = [e for e in log if e.tag not in tags]
    if stray:
        violations.append(f"{len(stray)} FHIR requests the proxy cannot attribute to a call")
    margin = max(0.5, 0.25 * deadline)
    unreached = 0  # calls that had to fetch, yet not one of their requests reached the FHIR server
    fetching = 0
    for call in calls:
        where = f"{call.case} [{call.mode}] {call.tag[:8]}"
        if call.status is None:
            violations.append(f"{where}: transport error {call.error}")
            continue
        if call.status >= 500:
            violations.append(f"{where}: {call.status} {str(call.body)[:200]}")
            continue
        if call.status not in (200, 412):
            violations.append(f"{where}: unexpected {call.status} {str(call.body)[:200]}")
            continue
        patient = cases[call.case].fixture.patient_id
        entries = by_tag.get(call.tag, [])
        if call.mode == "full" and entries:
            violations.append(f"{where}: full prefetch, yet {len(entries)} FHIR requests")
        if call.mode != "full":
            fetching += 1
            unreached += not entries
        keyed: dict[str | None, list[Entry]] = {}
        for e in entries:
            keyed.setdefault(target_key(e.target, patient, templates), []).append(e)
        required_faults = [e.fault for k in REQUIRED_KEYS for e in keyed.get(k, []) if e.fault]
        optional_faults = [
            e.fault for k, es in keyed.items() if k not in REQUIRED_KEYS for e in es if e.fault
        ]

        def in_time(e: Entry, started: float = call.started) -> bool:
            return e.fault is None and e.done is not None and e.done <= started + deadline - margin

        unavailable = [k for k in REQUIRED_KEYS if not keyed.get(k) or not all(in_time(e) for e in keyed[k])]
        if call.status == 412:
            if call.mode != "none":
                violations.append(f"{where}: 412 although the required keys were prefetched")
            elif not unavailable:
                violations.append(f"{where}: 412 although every required key was delivered in time")
            else:
                causes["injected fault" if required_faults else "no answer in time (load)"] += 1
            continue
        if required_faults:
            violations.append(f"{where}: 200 although required keys drew faults {required_faults}")
            continue
        problems = response_problems(call.body)
        if problems:
            violations.append(f"{where}: non-conformant response {problems[:3]}")
            continue
        if optional_faults and any(MISSING_NOTE not in c.get("detail", "") for c in call.body["cards"]):
            violations.append(f"{where}: optional data broke ({optional_faults}) but a card does not say so")
        # Nothing broken or late: every key the service had to fetch (all of them without prefetch,
        # the optional ones with the required prefetched) arrived in time, so the cards are the
        # golden ones.
        to_fetch = [k for k in templates if call.mode == "none" or k not in REQUIRED_KEYS]
        complete = call.mode == "full" or all(
            keyed.get(k) and all(in_time(e) for e in keyed[k]) for k in to_fetch
        )
        if (
            complete
            and not any(e.fault for e in entries)
            and card_rules(call.body) != cases[call.case].expected
        ):
            violations.append(
                f"{where}: cards {card_rules(call.body)} != expected {cases[call.case].expected}"
            )
    # Liveness: a service that stops sending FHIR requests (its connection pool lost, say) answers
    # every call "correctly" with a 412; only this count shows it.
    causes["fetching calls that never reached the FHIR server"] = unreached
    if fetching and unreached > max(3, 0.1 * fetching):
        violations.append(f"{unreached} of {fetching} calls that had to fetch never reached the FHIR server")
    return violations, causes


def rss_verdict(samples: list[tuple[float, int]], tolerance_mb: float) -> tuple[dict[str, float], str | None]:
    """RSS figures, and a violation when the second half of the run grew beyond the tolerance."""
    if len(samples) < 8:
        return {}, "too few RSS samples"
    values = [v for _, v in samples]
    n = len(values)
    mid = statistics.median(values[int(n * 0.4) : int(n * 0.6) + 1])
    end = statistics.median(values[int(n * 0.9) :])
    mb = 1024 * 1024
    figures = {
        "start_mb": values[0] / mb,
        "mid_mb": mid / mb,
        "end_mb": end / mb,
        "max_mb": max(values) / mb,
    }
    allowed = max(tolerance_mb * mb, 0.05 * mid)
    if end - mid > allowed:
        return (
            figures,
            f"RSS grew {(end - mid) / mb:.1f} MB over the second half (allowed {allowed / mb:.1f} MB)",
        )
    return figures, None


# ------------------------------------------------------------------------------------------ main


async def drive(
    args: argparse.Namespace, cds: str, proxy_port: int, pid: int, cases: list[Case]
) -> tuple[list[Call], list[tuple[float, int]], float]:
    """The load itself: the EHR clients and, beside them, the service's RSS every half second."""
    rng = random.Random(args.seed)  # noqa: S311 - a reproducible workload, not cryptography
    calls: list[Call] = []
    samples: list[tuple[float, int]] = []
    budget = [args.max_requests]
    started = time.monotonic()
    stop_at = started + args.duration

    async def sample_rss() -> None:
        while time.monotonic() < stop_at and budget[0] > 0:
            samples.append((time.monotonic() - started, rss_bytes(pid)))
            await asyncio.sleep(0.5)

    clients = [
        ehr_client(cds, proxy_port, cases, random.Random(rng.random()), stop_at, budget, calls)  # noqa: S311
        for _ in range(args.clients)
    ]
    await asyncio.gather(sample_rss(), *clients)
    return calls, samples, time.monotonic() - started


async def run(args: argparse.Namespace, work: Path) -> int:
    names = list(QUICK_FIXTURES) if args.quick else [p.stem for p in fixtures.all_fixtures()]
    cases = build_cases(names)
    with (
        sekmet(work / "sekmet") as fhir,
        service(work / "service", args.deadline, args.fhir_pool) as (cds, proc),
    ):
        require_loopback(fhir)
        require_loopback(cds)
        t_load = time.monotonic()
        for fx in {c.fixture.name: c.fixture for c in cases}.values():
            httpx.post(
                fhir, json=fx.bundle, timeout=120, headers={"Content-Type": "application/fhir+json"}
            ).raise_for_status()
        discovery = httpx.get(f"{cds}/cds-services", timeout=30).json()
        templates: dict[str, str] = next(
            s["prefetch"]
            for s in discovery["services"]
            if s["id"] == SERVICE_ID and s["hook"] == "patient-view"
        )
        await resolve_prefetch(cases, fhir, templates)
        print(
            f"set-up: {len(names)} patients, {len(cases)} call kinds loaded in {time.monotonic() - t_load:.1f} s",
            flush=True,
        )

        with fault_proxy(work / "proxy", fhir, args) as (proxy_port, proxy_log):
            calls, samples, elapsed = await drive(args, cds, proxy_port, proc.pid, cases)
        log = read_log(proxy_log)
        service_log = (work / "service" / "service.log").read_text(errors="replace")

    by_name = {c.name: c for c in cases}
    violations, causes = judge(calls, by_name, log, templates, args.deadline)
    rss, rss_problem = rss_verdict(samples, args.rss_tolerance_mb)
    if rss_problem:
        violations.append(rss_problem)
    if "unhandled error" in service_log or "Traceback" in service_log:
        violations.append("the service logged an unhandled error (see its log)")

    statuses = Counter(str(c.status) if c.status is not None else "transport-error" for c in calls)
    latencies = [c.latency for c in calls]
    per_mode = {
        m: {
            "calls": len(ls := [c.latency for c in calls if c.mode == m]),
            "p50_ms": round(percentile(ls, 50) * 1000, 1),
            "p95_ms": round(percentile(ls, 95) * 1000, 1),
            "p99_ms": round(percentile(ls, 99) * 1000, 1),
        }
        for m in MODES
    }
    summary: dict[str, Any] = {
        "mode": "quick" if args.quick else "long",
        "duration_s": round(elapsed, 1),
        "clients": args.clients,
        "patients": len(names),
        "calls": len(calls),
        "calls_per_s": round(len(calls) / elapsed, 1) if elapsed else 0.0,
        "statuses": dict(sorted(statuses.items())),
        "hooks": dict(Counter(c.hook for c in calls)),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p95": round(percentile(latencies, 95) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "max": round(max(latencies, default=0.0) * 1000, 1),
        },
        "per_mode": per_mode,
        "fhir_requests": len(log),
        "faults": dict(Counter(e.fault for e in log if e.fault)),
        "slow_requests": sum(1 for e in log if e.slow),
        "calls_that_never_reached_fhir": causes.pop("fetching calls that never reached the FHIR server", 0),
        "status_412_causes": dict(causes),
        "five_xx": sum(1 for c in calls if c.status is not None and c.status >= 500),
        "rss": {k: round(v, 1) for k, v in rss.items()},
        "violations": len(violations),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        timeline = [(round(t, 1), round(v / 2**20, 1)) for t, v in samples[::10]]  # every 5 s
        extra = {"violation_examples": violations[:50], "rss_timeline_s_mb": timeline}
        Path(args.json).write_text(json.dumps({**summary, **extra}, indent=2))
    if violations:
        print(f"\n{len(violations)} invariant violation(s); first ones:", file=sys.stderr)
        for v in violations[:20]:
            print(f"  - {v}", file=sys.stderr)
        return 1
    if not calls:
        print("no calls were made", file=sys.stderr)
        return 1
    print("\nall invariants held")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Load and fault test of the CDS service (loopback only)")
    parser.add_argument("--quick", action="store_true", help="CI mode: ~25 s, 12 clients, 12 patients")
    parser.add_argument("--duration", type=float, help="seconds of load (default 180; quick 25)")
    parser.add_argument("--clients", type=int, help="concurrent simulated EHRs (default 16; quick 12)")
    parser.add_argument("--max-requests", type=int, help="upper bound on calls (default 50000; quick 5000)")
    parser.add_argument("--fault-rate", type=float, default=0.15, help="fraction of FHIR requests broken")
    parser.add_argument(
        "--slow-rate", type=float, default=0.1, help="fraction merely slowed (within deadline)"
    )
    parser.add_argument("--deadline", type=float, default=2.0, help="the service's prefetch deadline (s)")
    parser.add_argument(
        "--fhir-pool", type=int, help="the service's FHIR connection pool (default: the service's default)"
    )
    parser.add_argument("--rss-tolerance-mb", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures (and violations) to this file")
    parser.add_argument("--keep", help="keep logs and data in this directory (default: a temp dir, removed)")
    args = parser.parse_args()
    args.duration = args.duration or (25.0 if args.quick else 180.0)
    args.clients = args.clients or (12 if args.quick else 16)
    args.max_requests = args.max_requests or (5000 if args.quick else 50000)
    if args.keep:
        work = Path(args.keep)
        if work.exists():
            shutil.rmtree(work)
        return asyncio.run(run(args, work))
    with tempfile.TemporaryDirectory(prefix="cds-load-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
