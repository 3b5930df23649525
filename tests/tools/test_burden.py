"""The alert-burden report (issue 17, section 4): population reading, the EHR prefetch player, the
independent lab and deficit checks, and whole runs of the tool on a small population built from
the project's fixtures (Bundles and Bulk NDJSON), in process and as the CLI with a process pool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.burden.ehr import UNREACHABLE_FHIR, prefetch_for
from cds_service.burden.measure import has_new_deficit, lab_truth, verdict
from cds_service.burden.population import (
    INJECTED_PREFIX,
    Patient,
    inject_fasciculation,
    read_bundle,
    work_items,
)
from cds_service.burden.report import html_report
from cds_service.burden.run import Options, run_population, summarise
from cds_service.clinical.terminology import terminology
from cds_service.data.prefetch import PrefetchSpec

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "patients"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
LOOKBACKS = {"hba1c": 365, "fasting_glucose": 365, "cmp": 90, "bmp": 90}


def obs(oid: str, code: str, days_ago: int, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
    }


def cond(cid: str, system: str, code: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": onset,
    }


# ------------------------------------------------------------------ population


def test_bundle_references_become_type_id_and_patients_split(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "id": "pa"}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Patient", "id": "pb"}},
            {
                "fullUrl": "urn:uuid:n",
                "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:b"}},
            },
            {
                "fullUrl": "urn:uuid:c",
                "resource": {"resourceType": "Condition", "id": "c", "subject": {"reference": "urn:uuid:b"}},
            },
            {"fullUrl": "urn:uuid:o", "resource": {"resourceType": "Organization", "id": "o"}},
        ],
    }
    path = tmp_path / "two.json"
    path.write_text(json.dumps(bundle))
    patients = {p.patient_id: p for p in read_bundle(path, "x")}
    assert set(patients) == {"pa", "pb"}
    assert [r["id"] for r in patients["pb"].resources] == ["pb", "n", "c"]  # POST entry: id from fullUrl
    assert patients["pb"].resources[1]["subject"]["reference"] == "Patient/pb"
    hospital = tmp_path / "hospital.json"
    hospital.write_text(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": bundle["entry"][3:]}))
    assert read_bundle(hospital, "x") == []


def test_ndjson_is_grouped_by_patient(tmp_path: Path) -> None:
    (tmp_path / "bulk").mkdir()
    (tmp_path / "bulk" / "Patient.ndjson").write_text(
        '{"resourceType":"Patient","id":"p1"}\n{"resourceType":"Patient","id":"p2"}\n'
    )
    (tmp_path / "bulk" / "Observation.ndjson").write_text(
        json.dumps(obs("o1", "4548-4", 1))
        + "\n\nnot json\n"
        + json.dumps({**obs("o2", "4548-4", 1), "subject": {"reference": "Patient/p2"}})
        + "\n"
    )
    items = work_items(tmp_path)
    got = {i.patient.patient_id: [r["id"] for r in i.patient.resources] for i in items if i.patient}
    assert got == {"p1": ["p1", "o1"], "p2": ["p2", "o2"]}
    assert {i.source for i in items} == {"bulk"}


def test_injected_fasciculation_is_the_last_resource() -> None:
    p = Patient(
        "x",
        "p1",
        [{"resourceType": "Patient", "id": "p1"}, cond("c1", "http://snomed.info/sct", "1", "2020")],
    )
    inject_fasciculation(p, NOW)
    last = p.resources[-1]
    assert last["id"] == INJECTED_PREFIX + "p1" and last["code"]["coding"][0]["code"] == "82470000"
    assert last["subject"] == {"reference": "Patient/p1"}


# ------------------------------------------------------------------ the EHR player


def test_prefetch_matches_code_status_category_and_cuts_pages() -> None:
    specs = (
        PrefetchSpec("patient", "Patient/{{context.patientId}}"),
        PrefetchSpec(
            "labs", "Observation?patient={{context.patientId}}&code=http://loinc.org|4548-4&_sort=-date"
        ),
        PrefetchSpec("exams", "Observation?patient={{context.patientId}}&category=exam"),
        PrefetchSpec("meds", "MedicationRequest?patient={{context.patientId}}&status=active"),
        PrefetchSpec("conditions", "Condition?patient={{context.patientId}}&_count=200"),
    )
    old, new = obs("old", "4548-4", 300), obs("new", "4548-4", 3)
    exam = {**obs("e", "8310-5", 1), "category": [{"coding": [{"code": "exam"}]}]}
    meds = [
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active"},
        {"resourceType": "MedicationRequest", "id": "m2", "status": "stopped"},
    ]
    conds = [cond(f"c{i}", "http://snomed.info/sct", "1", "2020") for i in range(3)]
    resources = [{"resourceType": "Patient", "id": "p1"}, old, new, exam, *meds, *conds]
    full = prefetch_for(resources, specs, "p1", None)
    assert full["patient"]["id"] == "p1"
    assert [e["resource"]["id"] for e in full["labs"]["entry"]] == ["new", "old"]
    assert [e["resource"]["id"] for e in full["exams"]["entry"]] == ["e"]
    assert [e["resource"]["id"] for e in full["meds"]["entry"]] == ["m1"]
    assert "link" not in full["conditions"] and full["conditions"]["total"] == 3
    cut = prefetch_for(resources, specs, "p1", 2)
    assert len(cut["conditions"]["entry"]) == 2 and cut["conditions"]["total"] == 3
    assert cut["conditions"]["link"][0]["url"].startswith(UNREACHABLE_FHIR)
    assert "patient" not in prefetch_for(resources[1:], specs, "p1", None)


# ------------------------------------------------------------------ independent checks


def test_random_glucose_is_not_an_hba1c_screen_but_fasting_glucose_is() -> None:
    assert lab_truth([obs("g", "2345-7", 5)], NOW, LOOKBACKS)["hba1c"] is False
    assert lab_truth([obs("g", "1558-6", 5)], NOW, LOOKBACKS)["hba1c"] is True
    assert lab_truth([obs("a", "4548-4", 400)], NOW, LOOKBACKS)["hba1c"] is False  # outside the look-back
    assert lab_truth([obs("a", "4548-4", 5, status="entered-in-error")], NOW, LOOKBACKS)["hba1c"] is False


def test_whole_blood_metabolic_panel_counts_as_cmp() -> None:
    parts = [obs("na", "2947-0", 5), obs("cl", "2069-3", 5), obs("cr", "38483-4", 5)]
    assert lab_truth(parts, NOW, LOOKBACKS)["cmp"] is True
    assert lab_truth(parts[:2], NOW, LOOKBACKS)["cmp"] is False
    same_analyte = [obs("na1", "2947-0", 5), obs("na2", "2951-2", 5), obs("cl", "2069-3", 5)]
    assert lab_truth(same_analyte, NOW, LOOKBACKS)["cmp"] is False
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "51990-0"}]},
        "effectiveDateTime": (NOW - timedelta(days=5)).isoformat(),
        "result": [{"reference": "Observation/na"}],
    }
    assert lab_truth([report, parts[0]], NOW, LOOKBACKS)["cmp"] is True
    assert lab_truth([report], NOW, LOOKBACKS)["cmp"] is False  # its results are not present


def test_verdicts() -> None:
    assert verdict(truth=True, named=True) == "false-missing"
    assert verdict(truth=False, named=False) == "false-done"
    assert verdict(truth=True, named=False) == verdict(truth=False, named=True) == "ok"


def test_new_deficit_needs_a_recent_red_flag() -> None:
    t = terminology()
    code = next(c for c in t.concept("spasticity").codes if c.system == "http://snomed.info/sct")
    old = cond("s", code.system, code.code, "1993-05-01")
    assert not has_new_deficit(t, [old], NOW)
    assert has_new_deficit(t, [{**old, "onsetDateTime": "2026-10-01"}], NOW)
    refuted = {**old, "onsetDateTime": "2026-10-01", "verificationStatus": {"coding": [{"code": "refuted"}]}}
    assert not has_new_deficit(t, [refuted], NOW)


# ------------------------------------------------------------------ whole runs


@pytest.fixture
def population(tmp_path: Path) -> Path:
    """Fixture patients as Bundles, plus one as Bulk NDJSON, plus a patient with 250 Conditions."""
    pop = tmp_path / "pop"
    (pop / "bundles").mkdir(parents=True)
    for name in ("no-trigger", "r01-weakness", "r04-gaps", "bg300-r01", "neg-resolved"):
        shutil.copy(FIXTURES / f"{name}.json", pop / "bundles")
    bulk = pop / "bulk"
    bulk.mkdir()
    b = json.loads((FIXTURES / "r04-cmp-components.json").read_text())
    by_type: dict[str, list[str]] = {}
    for e in b["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(json.dumps(e["resource"]))
    for kind, lines in by_type.items():
        (bulk / f"{kind}.ndjson").write_text("\n".join(lines) + "\n")
    many = [{"resourceType": "Patient", "id": "big"}] + [
        {
            **cond(f"big-c{i}", "http://snomed.info/sct", "38341003", "2015-01-01"),
            "subject": {"reference": "Patient/big"},
        }
        for i in range(250)
    ]
    (pop / "bundles" / "big.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in many]})
    )
    return pop


def test_run_without_injection_is_silent_out_of_scope(population: Path) -> None:
    results = run_population(population, Options(), workers=1)
    s = summarise(results, Options(), 4)
    assert s["patients"] == 7 and s["status"] == {200: 7}
    assert s["out_of_scope_with_cards"] == 0
    # in scope = the service's cheap code check: neg-resolved's resolved fasciculation passes it
    assert s["in_scope"] == 5
    assert sum(1 for r in results if r.in_scope and r.shown) == 4  # neg-resolved gets none


def test_injected_run_on_cut_pages_is_never_silent(population: Path) -> None:
    options = Options(inject=True, page_size=200)
    results = run_population(population, options, workers=1)
    s = summarise(results, options, 4)
    assert s["in_scope"] == 7
    big = next(r for r in results if r.conditions == 251)
    assert big.status == 412 and big.incomplete == ["conditions"] and not big.silent_incomplete
    assert s["completeness"]["answered_412"] == 1 and s["completeness"]["silent"] == 0
    assert s["status"] == {200: 6, 412: 1}
    assert 0 < s["mean_cards_per_in_scope_patient"] <= 4
    r04 = next(p for p in s["per_rule"] if p["rule"] == "R04")
    assert r04["fired"] >= 1 and r04["shown"] + r04["hidden"] == r04["fired"]
    page = html_report(s)
    assert "<svg" in page and "<script" not in page and "http://" not in page and "https://" not in page


def test_cli_with_a_process_pool_writes_the_reports(population: Path, tmp_path: Path) -> None:
    html_path, json_path = tmp_path / "r.html", tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cds_service",
            "burden",
            str(population),
            "--inject-fasciculation",
            "--workers",
            "2",
            "--html",
            str(html_path),
            "--json",
            str(json_path),
            "--fail-on-target",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    figures = json.loads(json_path.read_text())
    assert figures["patients"] == 7 and figures["in_scope"] == 7
    assert (proc.returncode == 0) == all(t["met"] for t in figures["targets"])
    assert "Mean cards per in-scope patient" in proc.stdout and "7/7" in proc.stderr
    assert html_path.read_text().startswith("<!doctype html>")


def test_cli_usage_errors(tmp_path: Path) -> None:
    for args in ([str(tmp_path / "nope")], [str(tmp_path), "--page-size", "0"], [str(tmp_path)]):
        proc = subprocess.run(
            [sys.executable, "-m", "cds_service", "burden", *args, "--html", str(tmp_path / "x.html")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
