"""The load and fault script (load/loadtest.py, ``python -m load.loadtest``) in its quick mode, and its verdict logic.

The quick run starts SEKMET, the service and the fault proxy on loopback, and drives about 25 s of
concurrent patient-view / order-select / order-sign calls in all three data modes while a fraction
of FHIR requests is delayed past the deadline, answered 500, reset or cut. The script itself checks
its invariants (no 5xx, 412 exactly where required data was unavailable, conformant cards stating
missing data, expected cards when nothing broke, flat memory) and exits 1 on any violation; this
test runs it and reads its figures. The long mode (3 minutes, every fixture) is documented in
docs/testing.md (section 7) and not run in CI.

The verdict logic gets unit tests of its own: a checker that cannot fail proves nothing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cds_service.clinical.cards import CARD_EXTENSION
from cds_tools import fixtures
from tests.support.servers import ROOT, sekmet_binary, unavailable


def loadtest() -> ModuleType:
    return importlib.import_module("load.loadtest")


@pytest.mark.e2e
def test_quick_load_and_fault_run(tmp_path: Path) -> None:
    if sekmet_binary() is None:
        unavailable("SEKMET FHIR server not installed (pip install sekmet-fhir==0.1.1)")
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "load.loadtest", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    print(proc.stdout[-4000:])  # the figures, in the CI log
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    figures = json.loads(out.read_text())
    assert figures["violations"] == 0 and figures["five_xx"] == 0
    assert figures["calls"] >= 50, "the quick run must exercise the service"
    assert set(figures["statuses"]) <= {"200", "412"}
    assert set(figures["faults"]) == {"delay", "http500", "reset", "badjson"}, "every fault kind injected"
    assert set(figures["hooks"]) == {"patient-view", "order-select", "order-sign"}
    assert all(figures["per_mode"][m]["calls"] > 0 for m in ("full", "partial", "none"))


# ---------------------------------------------------------------------------------------- verdict logic

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&_count=200",
    "labs": "Observation?patient={{context.patientId}}&code=http://loinc.org|2157-6",
    "findings": "Observation?patient={{context.patientId}}&code=http://snomed.info/sct|82470000",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold",
}
DEADLINE = 2.0


@pytest.fixture(scope="module")
def lt() -> ModuleType:
    return loadtest()


def scenario(
    lt: ModuleType,
    mode: str,
    status: int,
    faults: dict[str, str | None],
    body: Any = None,
    late: bool = False,
) -> list[str]:
    """Judge one call of ``mode`` answered ``status``; ``faults`` maps each key the service fetched
    to the fault the proxy drew for it (None: delivered)."""
    case = lt.Case("pv:x", fixtures.Fixture("x", "pt-x", {}), "patient-view", {}, [])
    call = lt.Call("pv:x", "patient-view", mode, "tag1", started=100.0, status=status)
    call.body = {"cards": []} if body is None else body
    log = []
    for key, fault in faults.items():
        target = lt.render(TEMPLATES[key], "pt-x").replace("|", "%7C")
        done = None if fault else 100.0 + (DEADLINE if late else 0.3)
        log.append(lt.Entry("tag1", target, fault, 0.0, 100.1, done))
    violations, _ = lt.judge([call], {"pv:x": case}, log, TEMPLATES, DEADLINE)
    return list(violations)


def test_412_with_a_broken_required_key_is_justified(lt: ModuleType) -> None:
    assert scenario(lt, "none", 412, {"conditions": None, "labs": "http500", "findings": None}) == []


def test_412_with_every_required_key_delivered_is_a_violation(lt: ModuleType) -> None:
    [v] = scenario(lt, "none", 412, {"conditions": None, "labs": None, "findings": None})
    assert "delivered in time" in v


def test_412_with_a_late_answer_is_justified(lt: ModuleType) -> None:
    assert scenario(lt, "none", 412, {"conditions": None, "labs": None, "findings": None}, late=True) == []


def test_200_built_on_a_broken_required_key_is_a_violation(lt: ModuleType) -> None:
    [v] = scenario(lt, "none", 200, {"conditions": "reset", "labs": None, "findings": None})
    assert "required keys drew faults" in v


def test_412_when_required_keys_were_prefetched_is_a_violation(lt: ModuleType) -> None:
    [v] = scenario(lt, "partial", 412, {"medications": "delay"})
    assert "prefetched" in v


def test_fhir_traffic_on_a_full_prefetch_call_is_a_violation(lt: ModuleType) -> None:
    [v] = scenario(lt, "full", 200, {"medications": None})
    assert "full prefetch" in v


def test_5xx_is_a_violation(lt: ModuleType) -> None:
    [v] = scenario(lt, "full", 500, {}, body={"resourceType": "OperationOutcome"})
    assert "500" in v


def test_card_must_state_missing_optional_data(lt: ModuleType) -> None:
    card = {
        "summary": "s",
        "indicator": "info",
        "source": {"label": "x"},
        "detail": "Something.\n\n_Rule R04; evidence and codes: see the linked page._",
        "extension": {CARD_EXTENSION: {"rule": "R04", "card": "lab-gaps"}},
    }
    [v] = scenario(lt, "partial", 200, {"medications": "badjson"}, body={"cards": [card]})
    assert "does not say so" in v
    stated = {
        **card,
        "detail": "_Data that could not be obtained, so not considered: x._\n\n" + card["detail"],
    }
    assert scenario(lt, "partial", 200, {"medications": "badjson"}, body={"cards": [stated]}) == []


def test_unexpected_cards_when_nothing_broke_is_a_violation(lt: ModuleType) -> None:
    card = {
        "summary": "s",
        "indicator": "critical",
        "source": {"label": "x"},
        "detail": "_Rule R01; evidence and codes: see the linked page._",
        "extension": {CARD_EXTENSION: {"rule": "R01", "card": "red-flag-motor"}},
    }
    [v] = scenario(lt, "full", 200, {}, body={"cards": [card]})
    assert "!= expected" in v


def test_memory_growth_in_the_second_half_is_a_violation(lt: ModuleType) -> None:
    mb = 1024 * 1024
    flat = [(float(t), 120 * mb + (t % 3) * mb // 10) for t in range(40)]
    assert lt.rss_verdict(flat, 10.0)[1] is None
    growing = [(float(t), 100 * mb + t * 2 * mb) for t in range(40)]
    assert "grew" in lt.rss_verdict(growing, 10.0)[1]


def test_other_cards_are_fine_when_optional_data_never_arrived(lt: ModuleType) -> None:
    """Partial prefetch whose optional fetches were never answered in time (load): the service
    worked from less data, so other cards than the golden ones are no violation."""
    card = {
        "summary": "s",
        "indicator": "critical",
        "source": {"label": "x"},
        "detail": "_Rule R01; evidence and codes: see the linked page._",
        "extension": {CARD_EXTENSION: {"rule": "R01", "card": "red-flag-motor"}},
    }
    assert scenario(lt, "partial", 200, {}, body={"cards": [card]}) == []
    assert scenario(lt, "partial", 200, {"medications": None}, body={"cards": [card]}, late=True) == []


def test_a_service_that_stops_fetching_is_caught(lt: ModuleType) -> None:
    """Every call a 412 with nothing sent to the FHIR server (a lost connection pool) looks "correct"
    call by call; the liveness count catches it."""
    case = lt.Case("pv:x", fixtures.Fixture("x", "pt-x", {}), "patient-view", {}, [])
    calls = [lt.Call("pv:x", "patient-view", "none", f"t{i}", started=100.0, status=412) for i in range(10)]
    for call in calls:
        call.body = {"resourceType": "OperationOutcome"}
    violations, causes = lt.judge(calls, {"pv:x": case}, [], TEMPLATES, DEADLINE)
    assert any("never reached the FHIR server" in v for v in violations)
    assert causes["fetching calls that never reached the FHIR server"] == 10
