"""Run a population through the pipeline in a process pool, with a progress bar, and aggregate.

Each worker process builds the service once (terminology, card catalogue, one pipeline with the
configured card budget and one without a budget) and its own event loop; Bundle files are read by
the workers so parsing spreads over the pool, Bulk NDJSON is grouped by patient up front.
Settings come from the ``CDS_*`` environment like the service's (card budget, look-backs).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cds_service.burden.adapter import Pipeline
from cds_service.burden.measure import PatientResult, assess_patient
from cds_service.burden.population import WorkItem, inject_fasciculation, read_bundle, work_items
from cds_service.clinical.settings import TopicSettings
from cds_service.settings import Settings

SERVICE_ID = "fasciculation-workup"
UNLIMITED_BUDGET = 20  # the settings' maximum: every card the rules produce
WIDESPREAD = 0.60  # a card shown to more than this share of in-scope patients (issue 17 target)
TARGET_MEAN_CARDS = 2.0


@dataclass(frozen=True)
class Options:
    inject: bool = False
    page_size: int | None = None
    hook: str = "patient-view"


class _Worker:
    """Per-process state, built by ``_init`` (a process pool initializer)."""

    def __init__(self, options: Options) -> None:
        from cds_service.clinical.rules.base import DEFAULT_LOOKBACKS
        from cds_service.clinical.terminology import terminology

        settings = Settings()
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.shown = Pipeline(settings, SERVICE_ID, options.hook)
        topic = TopicSettings()
        self.full = Pipeline(
            settings, SERVICE_ID, options.hook, topic.model_copy(update={"card_budget": UNLIMITED_BUDGET})
        )
        self.t = terminology()
        self.lookbacks = {**DEFAULT_LOOKBACKS, **topic.lab_lookback_days}

    def run(self, item: WorkItem) -> list[PatientResult]:
        patients = read_bundle(item.path, item.source) if item.path is not None else []
        if item.patient is not None:
            patients.append(item.patient)
        now = datetime.now(UTC)
        out = []
        for p in patients:
            if self.options.inject:
                inject_fasciculation(p, now)
            out.append(
                self.loop.run_until_complete(
                    assess_patient(
                        p, self.shown, self.full, self.t, self.lookbacks, self.options.page_size, now
                    )
                )
            )
        return out


_WORKER: _Worker | None = None


def _init(options: Options) -> None:
    global _WORKER
    _WORKER = _Worker(options)


def _work(item: WorkItem) -> list[PatientResult]:
    assert _WORKER is not None
    return _WORKER.run(item)


class Progress:
    """A one-line progress bar on a terminal (plain periodic lines otherwise)."""

    def __init__(self, total: int, out: TextIO = sys.stderr, width: int = 30) -> None:
        self.total, self.out, self.width = total, out, width
        self.done = self.patients = 0
        self.started = time.monotonic()
        self.tty = out.isatty()
        self._last = 0.0

    def step(self, patients: int) -> None:
        self.done += 1
        self.patients += patients
        now = time.monotonic()
        if not self.tty and now - self._last < 5 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * self.width)
        rate = self.patients / max(now - self.started, 1e-9)
        line = f"[{bar:<{self.width}}] {self.done}/{self.total} files/groups, {self.patients} patients, {rate:.1f}/s"
        self.out.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and self.done >= self.total:
            self.out.write("\n")
        self.out.flush()


def run_population(
    root: Path,
    options: Options,
    workers: int | None = None,
    out: TextIO = sys.stderr,
) -> list[PatientResult]:
    """Every patient below ``root`` through the pipeline; ``workers=1`` runs in this process."""
    items = work_items(root)
    bar = Progress(len(items), out)
    results: list[PatientResult] = []
    n = workers or min(os.cpu_count() or 1, 8)
    if n <= 1:
        worker = _Worker(options)
        for item in items:
            got = worker.run(item)
            results += got
            bar.step(len(got))
        return results
    with ProcessPoolExecutor(max_workers=n, initializer=_init, initargs=(options,)) as pool:
        futures = [pool.submit(_work, item) for item in items]
        for fut in as_completed(futures):
            got = fut.result()
            results += got
            bar.step(len(got))
    results.sort(key=lambda r: (r.source, r.patient_hash))
    return results


def _rate(n: int, d: int) -> float:
    return round(n / d, 4) if d else 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(results: Iterable[PatientResult], options: Options, budget: int) -> dict[str, Any]:
    """The figures the report shows (JSON-ready); the targets of issue 17 included."""
    rows = list(results)
    scoped = [r for r in rows if r.in_scope]
    answered = [r for r in scoped if r.status == 200]
    n_scope = len(scoped)
    shown_per_rule: Counter[str] = Counter()
    fired_per_rule: Counter[str] = Counter()
    hidden_per_rule: Counter[str] = Counter()
    indicator_shown: Counter[str] = Counter()
    indicator_of: dict[str, str] = {}
    for r in scoped:
        for _, ind in r.shown:
            indicator_shown[ind] += 1
        for rule in {rule for rule, _ in r.shown}:
            shown_per_rule[rule] += 1
        for rule, ind in r.fired:
            indicator_of.setdefault(rule, ind)
        for rule in {rule for rule, _ in r.fired}:
            fired_per_rule[rule] += 1
        for rule in set(r.hidden):
            hidden_per_rule[rule] += 1
    total_shown = sum(len(r.shown) for r in scoped)
    per_rule: list[dict[str, Any]] = [
        {
            "rule": rule,
            "indicator": indicator_of.get(rule, ""),
            "fired": fired_per_rule[rule],
            "shown": shown_per_rule[rule],
            "hidden": hidden_per_rule[rule],
            "fired_rate": _rate(fired_per_rule[rule], n_scope),
            "shown_rate": _rate(shown_per_rule[rule], n_scope),
            "share_of_cards": _rate(shown_per_rule[rule], total_shown),
        }
        for rule in sorted(fired_per_rule, key=lambda k: (-fired_per_rule[k], k))
    ]
    counts = [len(r.shown) for r in answered]
    histogram = Counter(counts)
    incomplete = [r for r in scoped if r.incomplete]
    seconds = [r.seconds for r in rows]
    labs = {test: Counter(getattr(r, test) for r in scoped) for test in ("hba1c", "cmp")}
    widespread = [str(p["rule"]) for p in per_rule if p["shown_rate"] > WIDESPREAD]
    mean_cards = round(statistics.fmean(counts), 3) if counts else 0.0
    silent = sum(1 for r in rows if r.silent_incomplete)
    critical_bad = sum(r.critical_without_new_deficit for r in scoped)
    by_source: dict[str, dict[str, Any]] = {}
    for src in sorted({r.source for r in rows}):
        mine = [r for r in answered if r.source == src]
        by_source[src] = {
            "patients": sum(1 for r in rows if r.source == src),
            "in_scope": sum(1 for r in scoped if r.source == src),
            "mean_cards": round(statistics.fmean([len(r.shown) for r in mine]), 3) if mine else 0.0,
            "resources": sum(r.resources for r in rows if r.source == src),
            "max_conditions": max((r.conditions for r in rows if r.source == src), default=0),
        }
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": asdict(options),
        "card_budget": budget,
        "patients": len(rows),
        "resources": sum(r.resources for r in rows),
        "in_scope": n_scope,
        "status": dict(sorted(Counter(r.status for r in rows).items())),
        "out_of_scope_with_cards": sum(1 for r in rows if not r.in_scope and r.shown),
        "errors": [r.error for r in rows if r.error][:20],
        "mean_cards_per_in_scope_patient": mean_cards,
        "cards_histogram": {str(k): histogram[k] for k in sorted(histogram)},
        "at_budget": sum(1 for c in counts if c >= budget),
        "per_rule": per_rule,
        "per_indicator": dict(sorted(indicator_shown.items())),
        "hidden_by_budget": sum(len(r.hidden) for r in scoped),
        "patients_with_hidden": sum(1 for r in scoped if r.hidden),
        "completeness": {
            "in_scope_with_incomplete_required": len(incomplete),
            "answered_412": sum(1 for r in incomplete if r.status == 412),
            "answered_cards_naming_missing": sum(1 for r in incomplete if r.status == 200 and r.shown),
            "silent": silent,
            "keys": dict(Counter(k for r in incomplete for k in r.incomplete)),
        },
        "labs": {test: dict(sorted(c.items())) for test, c in labs.items()},
        "time": {
            "mean_ms": round(statistics.fmean(seconds) * 1000, 2) if seconds else 0.0,
            "p50_ms": round(_pct(seconds, 0.5) * 1000, 2),
            "p95_ms": round(_pct(seconds, 0.95) * 1000, 2),
            "max_ms": round(max(seconds, default=0.0) * 1000, 2),
            "per_patient_ms": [round(s * 1000, 2) for s in seconds],
        },
        "by_source": by_source,
        "targets": [
            _target("mean cards per in-scope patient <= 2.0", mean_cards, mean_cards <= TARGET_MEAN_CARDS),
            _target(
                "no card shown to > 60 % of in-scope patients (unless specific)",
                ", ".join(widespread) or "none",
                not widespread,
            ),
            _target("0 HbA1c false done/missing", _lab_bad(labs["hba1c"]), _lab_bad(labs["hba1c"]) == 0),
            _target("0 CMP false done/missing", _lab_bad(labs["cmp"]), _lab_bad(labs["cmp"]) == 0),
            _target("0 silent answers on incomplete data", silent, silent == 0),
            _target("0 critical cards without a new objective deficit", critical_bad, critical_bad == 0),
        ],
    }


def _lab_bad(c: Counter[str]) -> int:
    return c["false-done"] + c["false-missing"]


def _target(name: str, value: Any, met: bool) -> dict[str, Any]:
    return {"target": name, "value": value, "met": met}
