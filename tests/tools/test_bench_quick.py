"""CI runs the benchmark's quick mode: it must complete and print every row, every FHIR query and
every target. No figure is checked (benchmarks print figures; tests never assert on time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import ROOT

pytestmark = pytest.mark.e2e

ROWS = [
    "patient-view, 50 Obs, prefetch",
    "patient-view, 300 Obs, prefetch",
    "patient-view, 2,000 Obs, prefetch",
    "patient-view, 2,000 Obs, no fasciculation",
    "order-sign, 5 drafts, 300 Obs, prefetch",
    "order-select, 5 drafts (1 selected), 300 Obs, prefetch",
    "patient-view, 300 Obs, no prefetch (fetches from SEKMET)",
    "floor, 300-Obs body",
    "floor, 2,000-Obs body",
    "floor, 2,000-Obs no-fasciculation body",
    "floor, 50-Obs body",
    "receive only (floor without the parse), 300-Obs body",
    "receive only, 2,000-Obs no-fasciculation body",
    "HealthChain 0.16.1, 300-Obs body",
    "HealthChain 0.16.1, 2,000-Obs body",
]
TARGETS = [
    "patient-view 300 Obs throughput / floor",
    "patient-view 300 Obs throughput / HealthChain",
    "patient-view 2,000 Obs throughput / floor",
    "no-fasciculation 2,000 Obs throughput / floor",
    "p99 / p50, 1 connection: pv300",
    "p99 / p50, 1 connection: select5",
    "no-prefetch p50 minus all-queries-at-once p50",
    "ceiling: receive-only / floor, 300 Obs",
    "ceiling: receive-only / floor, 2,000 Obs no fasciculation",
    "worker RSS after",
    "RSS growth over the last half",
]


def test_quick_mode_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for row in ROWS:
        line = next((ln for ln in text.splitlines() if ln.startswith(row)), None)
        assert line is not None, f"row missing: {row}\n{text}"
        assert "ERRORS" not in line, line
    for target in TARGETS:
        line = next((ln for ln in text.splitlines() if ln.startswith(target)), None)
        assert line is not None, f"target missing: {target}\n{text}"
        if target.startswith("ceiling"):  # a bound the run measures, not a goal
            assert " n/a " in line, line
        else:
            assert " MET " in line or " MISSED " in line, f"target without a verdict: {line}"
    report = json.loads(out.read_text())
    assert [r["row"] for r in report["rows"]] == ROWS
    measured = [r for r in report["rows"] if "skipped" not in r]
    assert all(r["latency_requests"] > 0 and r["load_requests"] > 0 for r in measured), measured
    # One row per prefetch key (the Patient read included): the plan grows with the templates.
    from cds_service.clinical.services import prefetch_templates
    from cds_service.clinical.terminology import terminology

    assert (
        len(report["fhir_queries"]) == len(prefetch_templates(terminology()))
        and report["memory"]["requests"] > 0
    )
