"""The background histories in fixtures/background/ keep the promises the fixture loader relies on.

The loader merges one of these Bundles into a clinical fixture: it rewrites ``Patient/BACKGROUND`` to the
fixture's patient and shifts every date by (today - 2026-01-01). If a file broke one of the rules below
(a dangling reference, a duplicate id, a date after the anchor, a code the rules react to, invalid FHIR),
clinical tests would fail, or worse pass, for reasons unrelated to the rule under test.

The code lists here are written out independently of scripts/make_background.py on purpose: this test
checks that script's output, so it must not borrow its filters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.fhir_validator import ValidationResult, validate_resources

BACKGROUND_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "background"
NAMES = [f"bg-{size}-{variant}" for size in (50, 300, 2000) for variant in ("all", "unrelated")]
TARGET = {"50": (45, 60), "300": (280, 330), "2000": (1900, 2100)}
PATIENT_REF = "Patient/BACKGROUND"
ANCHOR = "2026-01-01"
MAX_TOTAL_BYTES = 8 * 1024 * 1024
SAMPLE_MIN = 50

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# Condition codes the fasciculation rules react to (from the clinical-rules engineer's brief).
FORBIDDEN_ICD10 = re.compile(
    r"^(R25|M62|G12|G61|G71|G51\.4|R29\.2|R13|R47\.1|I6[0-3]|R20|G25\.81|F41|F32|F33)(\.|$|\d)"
)
FORBIDDEN_SNOMED = {"82470000", "26544005", "88092000"}
# First-tier labs (shared clinical catalogue): panels and the members that make a test count as done.
FIRST_TIER_LOINC = {
    "3016-3", "11580-8", "2132-9", "14685-2", "39786-9", "2284-8", "4548-4", "17856-6", "1558-6",
    "2345-7", "58410-2", "57021-8", "718-7", "6690-2", "26464-8", "777-3", "26515-7", "4544-3",
    "789-8", "24323-8", "2951-2", "2823-3", "2075-0", "2028-9", "3094-0", "2160-0", "17861-6",
    "2885-2", "1751-7", "1920-8", "1742-6", "6768-6", "1975-2", "24321-2", "51990-0", "24326-1",
    "55231-5", "19123-9", "2601-3", "2000-8", "6298-4", "2157-6", "24351-9", "8061-4", "30341-2",
    "1988-5", "21023-7", "2276-4", "70274-6", "44261-6",
}  # fmt: skip
CMP_CBC_MEMBERS = {"2951-2", "2823-3", "2160-0", "2345-7", "17861-6", "1920-8", "1742-6", "718-7", "6690-2"}
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")
FHIR_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@cache
def load(name: str) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads((BACKGROUND_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return bundle


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BACKGROUND_DIR / "manifest.json").read_text(encoding="utf-8"))
    return data


def resources(name: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in load(name)["entry"]]


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside a JSON value."""
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def codings(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for node in walk(resource):
        if isinstance(node, dict) and "system" in node and isinstance(node.get("code"), str):
            yield node


def observations(name: str) -> list[dict[str, Any]]:
    return [r for r in resources(name) if r["resourceType"] == "Observation"]


def test_expected_files_present_and_small() -> None:
    present = {p.stem for p in BACKGROUND_DIR.glob("bg-*.json")}
    assert present == set(NAMES)
    total = sum(p.stat().st_size for p in BACKGROUND_DIR.iterdir() if p.is_file())
    assert total < MAX_TOTAL_BYTES, f"fixtures/background is {total} bytes"
    assert set(manifest()["files"]) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bundle_shape(name: str) -> None:
    bundle = load(name)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    assert bundle["timestamp"] == "2026-01-01T00:00:00Z"
    kinds = {r["resourceType"] for r in resources(name)}
    assert kinds == {"Observation", "Condition"}, kinds
    assert "Patient" not in kinds


@pytest.mark.parametrize("name", NAMES)
def test_ids_unique_and_prefixed(name: str) -> None:
    ids = [r.get("id") for r in resources(name)]
    assert all(isinstance(i, str) and FHIR_ID_RE.match(i) for i in ids)
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert all(i.startswith(f"{name}-") for i in ids if isinstance(i, str))


@pytest.mark.parametrize("name", NAMES)
def test_only_the_background_patient_is_referenced(name: str) -> None:
    for res in resources(name):
        assert res["subject"] == {"reference": PATIENT_REF}, res["id"]
        refs = [n["reference"] for n in walk(res) if isinstance(n, dict) and "reference" in n]
        assert refs == [PATIENT_REF], (res["id"], refs)


@pytest.mark.parametrize("name", NAMES)
def test_dates_anchored_at_2026_01_01(name: str) -> None:
    days = [n[:10] for n in walk(load(name)["entry"]) if isinstance(n, str) and DATE_RE.match(n)]
    assert days, "no dates at all"
    assert max(days) == ANCHOR
    newest_obs = max(
        (o.get("effectiveDateTime") or o["effectivePeriod"]["start"])[:10] for o in observations(name)
    )
    assert newest_obs == ANCHOR


@pytest.mark.parametrize("name", NAMES)
def test_no_codes_the_rules_react_to(name: str) -> None:
    bad = [
        (r["id"], c["system"], c["code"])
        for r in resources(name)
        for c in codings(r)
        if (c["system"] == ICD10CM and FORBIDDEN_ICD10.match(c["code"]))
        or (c["system"] == SNOMED and c["code"] in FORBIDDEN_SNOMED)
    ]
    assert not bad


@pytest.mark.parametrize("name", NAMES)
def test_counts_and_manifest(name: str) -> None:
    obs = observations(name)
    conditions = [r for r in resources(name) if r["resourceType"] == "Condition"]
    low, high = TARGET[name.split("-")[1]]
    assert low <= len(obs) <= high
    assert conditions, "every history has some everyday Conditions"
    entry = manifest()["files"][name]
    assert entry["observations"] == len(obs)
    assert entry["conditions"] == len(conditions)
    assert entry["observations_from_clinosim"] + entry["observations_generated"] == len(obs)


@pytest.mark.parametrize("name", NAMES)
def test_observations_final_with_ucum_quantities(name: str) -> None:
    for obs in observations(name):
        assert obs["status"] == "final", obs["id"]
        quantities = [n["valueQuantity"] for n in walk(obs) if isinstance(n, dict) and "valueQuantity" in n]
        for q in quantities:
            assert q.get("system") == UCUM and q.get("code"), (obs["id"], q)
            assert isinstance(q.get("value"), int | float), (obs["id"], q)


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("-unrelated")])
def test_unrelated_variants_hold_no_first_tier_lab(name: str) -> None:
    hits = sorted(
        {c["code"] for r in resources(name) for c in codings(r) if c["system"] == LOINC} & FIRST_TIER_LOINC
    )
    assert not hits, hits
    assert manifest()["files"][name]["first_tier_loinc_newest"] == {}


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("-all")])
def test_all_variants_keep_realistic_labs_and_say_so(name: str) -> None:
    """The "-all" files do contain CMP/CBC members (so CMP/CBC may count as done); the manifest lists them."""
    present = {c["code"] for o in observations(name) for c in o["code"]["coding"] if c["system"] == LOINC}
    assert present & CMP_CBC_MEMBERS
    listed = set(manifest()["files"][name]["first_tier_loinc_newest"])
    assert present & FIRST_TIER_LOINC <= listed


def sample(name: str) -> list[dict[str, Any]]:
    """One resource of every distinct code (all Conditions included), then every k-th, at least 60."""
    res = resources(name)
    picked: dict[str, dict[str, Any]] = {}
    for r in res:
        key = r["resourceType"] + "|" + "|".join(c["code"] for c in r["code"]["coding"])
        picked.setdefault(key if r["resourceType"] == "Observation" else r["id"], r)
    step = max(1, len(res) // 60)
    for r in res[::step]:
        picked.setdefault(r["id"], r)
    return list(picked.values())


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[tuple[str, ValidationResult]]]:
    """One Node run for every file's sample, plus each Bundle itself cut to a few entries."""
    batch: list[tuple[str, dict[str, Any]]] = []
    for name in NAMES:
        batch += [(name, r) for r in sample(name)]
        batch.append((name, {**load(name), "entry": load(name)["entry"][:3]}))
    results = validate_resources([r for _, r in batch])
    out: dict[str, list[tuple[str, ValidationResult]]] = {name: [] for name in NAMES}
    for (name, res), result in zip(batch, results, strict=True):
        out[name].append((f"{res['resourceType']}/{res['id']}", result))
    return out


@pytest.mark.node
@pytest.mark.parametrize("name", NAMES)
def test_sample_is_valid_fhir_r4(verdicts: dict[str, list[tuple[str, ValidationResult]]], name: str) -> None:
    checked = verdicts[name]
    assert len(checked) >= SAMPLE_MIN
    invalid = [(rid, r.errors) for rid, r in checked if not r.valid]
    assert not invalid
