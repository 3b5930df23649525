#!/usr/bin/env python3
"""Build the background patient histories in ``fixtures/background/`` (see its README).

Why: clinical fixtures need realistic noise around the few resources a test is about (hundreds or
thousands of unrelated Observations, everyday Conditions), so that rules are exercised on data shaped
like a real chart and prefetch/paging code sees realistic volumes.

Where the data comes from:

* Real generator output: clinosim 0.6.5 (PyPI) bulk NDJSON. It is NOT a project dependency; run it in a
  throwaway venv, then point this script at its output directory::

      python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install clinosim==0.6.5
      /tmp/gen-venv/bin/clinosim simulate -o /tmp/cs -p 1000 -s 7 --country US \\
          --start 2025-01-01 --end 2026-01-01 --format fhir-r4
      .venv/bin/python scripts/make_background.py --clinosim /tmp/cs/fhir_r4

* Where a file needs more Observations than the chosen clinosim patient has (the "-unrelated" variants
  after first-tier labs are removed, and the 2,000 history), this script adds a deterministic series of
  home-monitoring vital signs (BP panel, heart rate, weight, SpO2, and weekly BMI, temperature and
  respiratory rate), seeded per file and centred on that patient's own clinosim baselines.

Only the standard library is used, so it runs in the project venv. Output is deterministic for the same
clinosim output (ids, order, dates and the generated series do not depend on the clock).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import statistics
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "fixtures" / "background"
ANCHOR = dt.date(2026, 1, 1)
BUNDLE_TIMESTAMP = "2026-01-01T00:00:00Z"
PATIENT_REF = "Patient/BACKGROUND"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# Conditions the fasciculation rules react to (brief from the clinical-rules engineer): never in background.
FORBIDDEN_ICD10_PREFIXES = (
    "R25", "M62", "G12", "G61", "G71", "G51.4", "R29.2", "R13", "R47.1",
    "I60", "I61", "I62", "I63", "R20", "G25.81", "F41", "F32", "F33",
)  # fmt: skip
FORBIDDEN_SNOMED = frozenset({"82470000", "26544005", "88092000"})

# LOINC codes that count as (part of) a first-tier or work-up lab/score in the rules (shared clinical
# catalogue: TSH, B12, B6, folate, HbA1c/glucose, CBC and its members, CMP/BMP and their members,
# electrolytes, Mg, Ca, K, CK, SPEP, ANA, ESR, CRP, ANCA, ferritin, GAD-7, PHQ-9) plus close relatives a
# rule might reasonably treat the same (RBC indices, bicarbonate, eGFR). None of them may appear in an
# "-unrelated" file.
FIRST_TIER_LOINC = frozenset(
    {
        "3016-3", "11580-8", "2132-9", "14685-2", "39786-9", "2284-8", "4548-4", "17856-6", "1558-6",
        "2345-7", "58410-2", "57021-8", "718-7", "6690-2", "26464-8", "777-3", "26515-7", "4544-3",
        "789-8", "787-2", "785-6", "786-4", "788-0", "24323-8", "2951-2", "2823-3", "2075-0", "2028-9",
        "3094-0", "2160-0", "17861-6", "2885-2", "1751-7", "1920-8", "1742-6", "6768-6", "1975-2",
        "24321-2", "51990-0", "24326-1", "55231-5", "19123-9", "2601-3", "2000-8", "6298-4", "2157-6",
        "24351-9", "12851-2", "33358-3", "33647-9", "25700-6", "8061-4", "5048-4", "42254-3", "30341-2",
        "4537-7", "1988-5", "30522-7", "21023-7", "14277-8", "14278-6", "6968-2", "46267-1", "6969-0",
        "46266-3", "2276-4", "70274-6", "69737-5", "44261-6", "44249-1", "1963-8", "48642-3", "98979-8",
        "33914-3", "62238-1",
    }
)  # fmt: skip

# What an "-unrelated" file may hold besides vital signs, social history and nursing scores.
LIPID_LOINC = frozenset({"2093-3", "2085-9", "13457-7", "18262-6", "2571-8"})
UNRELATED_CATEGORIES = frozenset({"vital-signs", "survey", "social-history", "exam"})

_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")
_DROPPED_KEYS = ("meta", "identifier", "encounter", "basedOn", "specimen", "partOf", "context")


@dataclass(frozen=True)
class Spec:
    """One background history: which clinosim patient, how many Observations, which seed for top-up."""

    size: int
    patient: str
    seed: int


SPECS = (
    Spec(size=50, patient="pt-0cbbda1af6a7", seed=50),
    Spec(size=300, patient="pt-ccf7cbf12feb", seed=300),
    Spec(size=2000, patient="pt-ef679fed79cf", seed=2000),
)


# ---------------------------------------------------------------- helpers


def codings(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every Coding anywhere in the resource (code, value, components, categories ...)."""
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "system" in node and "code" in node and isinstance(node.get("code"), str):
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def is_forbidden_coding(coding: dict[str, Any]) -> bool:
    """True for a Condition code the rules react to (see FORBIDDEN_* above)."""
    code = str(coding.get("code", ""))
    if coding.get("system") == ICD10CM:
        # ICD-10-CM categories are 3 characters before the dot, so a prefix match is exact enough.
        return code.startswith(FORBIDDEN_ICD10_PREFIXES)
    if coding.get("system") == SNOMED:
        return code in FORBIDDEN_SNOMED
    return False


def primary_loinc(obs: dict[str, Any]) -> str | None:
    for c in obs.get("code", {}).get("coding", []):
        if c.get("system") == LOINC:
            return str(c.get("code"))
    return None


def category_codes(obs: dict[str, Any]) -> set[str]:
    return {str(c.get("code")) for cat in obs.get("category", []) for c in cat.get("coding", [])}


def is_unrelated(obs: dict[str, Any]) -> bool:
    """Allow-list for "-unrelated" files: vitals, nursing scores, social history, lipids; never first-tier."""
    code = primary_loinc(obs)
    if code is not None and code in FIRST_TIER_LOINC:
        return False
    if any(c.get("system") == LOINC and c.get("code") in FIRST_TIER_LOINC for c in codings(obs)):
        return False
    return bool(category_codes(obs) & UNRELATED_CATEGORIES) or code in LIPID_LOINC


def iter_dates(node: Any) -> Iterator[str]:
    """Every date/dateTime/instant string in a resource."""
    if isinstance(node, dict):
        for v in node.values():
            yield from iter_dates(v)
    elif isinstance(node, list):
        for v in node:
            yield from iter_dates(v)
    elif isinstance(node, str) and _DATE_RE.match(node):
        yield node


def shift_dates(node: Any, days: int) -> Any:
    """Move every date by whole days, keeping time of day, precision and zone exactly as written."""
    if isinstance(node, dict):
        return {k: shift_dates(v, days) for k, v in node.items()}
    if isinstance(node, list):
        return [shift_dates(v, days) for v in node]
    if isinstance(node, str):
        m = _DATE_RE.match(node)
        if m:
            day = dt.date.fromisoformat(m.group(1)) + dt.timedelta(days=days)
            return day.isoformat() + (m.group(2) or "")
    return node


def strip_reference(ref: dict[str, Any]) -> dict[str, Any] | None:
    """Keep only a display for references to resources that are not in the background file."""
    return {"display": ref["display"]} if ref.get("display") else None


def clean(resource: dict[str, Any]) -> dict[str, Any]:
    """Drop server/generator bookkeeping and every reference except the patient one."""
    out = {k: v for k, v in resource.items() if k not in _DROPPED_KEYS}
    out["subject"] = {"reference": PATIENT_REF}
    for key in ("recorder", "asserter"):
        if key in out:
            kept = strip_reference(out[key])
            if kept is None:
                del out[key]
            else:
                out[key] = kept
    if "performer" in out:
        performers = [p for p in (strip_reference(r) for r in out["performer"]) if p is not None]
        if performers:
            out["performer"] = performers
        else:
            del out["performer"]
    leftovers = [r for r in _references(out) if r != PATIENT_REF]
    if leftovers:
        raise ValueError(f"{resource.get('resourceType')}/{resource.get('id')} keeps references {leftovers}")
    return out


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for v in node.values():
            yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


def _effective(obs: dict[str, Any]) -> str:
    return str(
        obs.get("effectiveDateTime") or obs.get("effectivePeriod", {}).get("start") or obs.get("issued") or ""
    )


# ---------------------------------------------------------------- home-monitoring series


@dataclass(frozen=True)
class Baseline:
    """A patient's typical values, taken from their own clinosim record so the series fits them."""

    systolic: float
    diastolic: float
    heart_rate: float
    weight_kg: float
    height_cm: float
    spo2: float


def _values(observations: Iterable[dict[str, Any]], code: str, component: str | None = None) -> list[float]:
    out: list[float] = []
    for obs in observations:
        if primary_loinc(obs) != code:
            continue
        if component is None:
            v = obs.get("valueQuantity", {}).get("value")
            if isinstance(v, int | float):
                out.append(float(v))
            continue
        for comp in obs.get("component", []):
            if any(c.get("code") == component for c in comp.get("code", {}).get("coding", [])):
                v = comp.get("valueQuantity", {}).get("value")
                if isinstance(v, int | float):
                    out.append(float(v))
    return out


def baseline_of(observations: list[dict[str, Any]]) -> Baseline:
    """Median of the patient's clinic values; population defaults where the record has none."""

    def med(values: list[float], default: float) -> float:
        return statistics.median(values) if values else default

    return Baseline(
        systolic=med(_values(observations, "85354-9", "8480-6"), 128.0),
        diastolic=med(_values(observations, "85354-9", "8462-4"), 79.0),
        heart_rate=med(_values(observations, "8867-4"), 74.0),
        weight_kg=med(_values(observations, "29463-7"), 78.0),
        height_cm=med(_values(observations, "8302-2"), 168.0),
        spo2=min(99.0, med(_values(observations, "2708-6") + _values(observations, "59408-5"), 97.0)),
    )


def _quantity(value: float | int, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _vital(code: str, display: str, when: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
                "text": "Vital Signs",
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": PATIENT_REF},
        "effectiveDateTime": when,
        **value,
    }


def home_series(count: int, base: Baseline, seed: int, last_day: dt.date) -> list[dict[str, Any]]:
    """``count`` home-monitoring Observations, one morning set per day going back from ``last_day``.

    Daily: BP panel (85354-9 with 8480-6/8462-4), heart rate (8867-4), body weight (29463-7), SpO2
    (59408-5 + 2708-6). Weekly: BMI (39156-5), body temperature (8310-5), respiratory rate (9279-1).
    Values wander slowly (weight) or scatter around the baseline like real cuff/scale/oximeter readings.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography
    out: list[dict[str, Any]] = []
    weight = base.weight_kg
    day = last_day
    height_m = base.height_cm / 100.0
    while len(out) < count:
        minute = rng.randint(0, 75)
        when = f"{day.isoformat()}T{6 + (30 + minute) // 60:02d}:{(30 + minute) % 60:02d}:00Z"
        weight = min(base.weight_kg * 1.04, max(base.weight_kg * 0.96, weight + rng.gauss(0.0, 0.15)))
        sbp = round(base.systolic + rng.gauss(0.0, 7.0))
        dbp = round(min(sbp - 25, base.diastolic + rng.gauss(0.0, 5.0)))
        day_set = [
            _vital(
                "85354-9",
                "Blood pressure panel with all children optional",
                when,
                component=[
                    {
                        "code": {
                            "coding": [
                                {"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}
                            ]
                        },
                        "valueQuantity": _quantity(sbp, "mmHg", "mm[Hg]"),
                    },
                    {
                        "code": {
                            "coding": [
                                {"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}
                            ]
                        },
                        "valueQuantity": _quantity(dbp, "mmHg", "mm[Hg]"),
                    },
                ],
            ),
            _vital(
                "8867-4",
                "Heart rate",
                when,
                valueQuantity=_quantity(round(base.heart_rate + rng.gauss(0, 6)), "/min", "/min"),
            ),
            _vital("29463-7", "Body weight", when, valueQuantity=_quantity(round(weight, 1), "kg", "kg")),
        ]
        spo2 = _vital(
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            when,
            valueQuantity=_quantity(min(100, max(85, round(base.spo2 + rng.gauss(0, 1.2)))), "%", "%"),
        )
        spo2["code"]["coding"].append(
            {"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"}
        )
        day_set.append(spo2)
        if (last_day - day).days % 7 == 0:
            day_set += [
                _vital(
                    "39156-5",
                    "Body mass index (BMI) [Ratio]",
                    when,
                    valueQuantity=_quantity(round(weight / height_m**2, 1), "kg/m2", "kg/m2"),
                ),
                _vital(
                    "8310-5",
                    "Body temperature",
                    when,
                    valueQuantity=_quantity(round(36.6 + rng.gauss(0, 0.25), 1), "Cel", "Cel"),
                ),
                _vital(
                    "9279-1",
                    "Respiratory rate",
                    when,
                    valueQuantity=_quantity(min(22, max(12, round(16 + rng.gauss(0, 1.8)))), "/min", "/min"),
                ),
            ]
        out.extend(day_set[: count - len(out)])
        day -= dt.timedelta(days=1)
    return out


# ---------------------------------------------------------------- assembly


def load_patient(ndjson_dir: Path, patient: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The patient's Observations and Conditions from clinosim's bulk NDJSON."""
    ref = f"Patient/{patient}"

    def read(kind: str) -> list[dict[str, Any]]:
        with (ndjson_dir / f"{kind}.ndjson").open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return [r for r in rows if r.get("subject", {}).get("reference") == ref]

    observations, conditions = read("Observation"), read("Condition")
    if not observations:
        raise SystemExit(
            f"{patient} not found in {ndjson_dir}: was clinosim run with the documented command?"
        )
    return observations, conditions


def bundle(name: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": name,
        "type": "collection",
        "timestamp": BUNDLE_TIMESTAMP,
        "entry": [{"resource": r} for r in resources],
    }


def assign_ids(
    name: str, observations: list[dict[str, Any]], conditions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Stable ids prefixed with the file name, Observations in time order, then Conditions."""
    out: list[dict[str, Any]] = []
    for i, cond in enumerate(conditions, 1):
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{name}-cond-{i:02d}",
                **{k: v for k, v in cond.items() if k not in ("resourceType", "id")},
            }
        )
    for i, obs in enumerate(
        sorted(
            observations, key=lambda o: (_effective(o), primary_loinc(o) or "", json.dumps(o, sort_keys=True))
        ),
        1,
    ):
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{name}-obs-{i:04d}",
                **{k: v for k, v in obs.items() if k not in ("resourceType", "id")},
            }
        )
    return out


def first_tier_summary(resources: list[dict[str, Any]]) -> dict[str, str]:
    """First-tier LOINC codes present and the newest date of each (tells fixture authors what is 'done')."""
    seen: dict[str, str] = {}
    for r in resources:
        if r["resourceType"] != "Observation":
            continue
        code = primary_loinc(r)
        if code in FIRST_TIER_LOINC:
            day = _effective(r)[:10]
            seen[code] = max(seen.get(code, ""), day)
    return dict(sorted(seen.items()))


def build(spec: Spec, ndjson_dir: Path) -> dict[str, dict[str, Any]]:
    """Both variants ("-all" and "-unrelated") for one size; returns {file stem: manifest entry + bundle}."""
    raw_obs, raw_cond = load_patient(ndjson_dir, spec.patient)
    conditions = [clean(c) for c in raw_cond if not any(is_forbidden_coding(x) for x in codings(c))]
    dropped_conditions = len(raw_cond) - len(conditions)
    observations = [clean(o) for o in raw_obs if not any(is_forbidden_coding(x) for x in codings(o))]
    newest = max(dt.date.fromisoformat(d[:10]) for r in raw_obs + raw_cond for d in iter_dates(r))
    shift = (ANCHOR - newest).days
    conditions = [shift_dates(c, shift) for c in conditions]
    observations = [shift_dates(o, shift) for o in observations]
    base = baseline_of(observations)

    results: dict[str, dict[str, Any]] = {}
    for variant, picked in (
        ("all", observations),
        ("unrelated", [o for o in observations if is_unrelated(o)]),
    ):
        name = f"bg-{spec.size}-{variant}"
        topup = home_series(max(0, spec.size - len(picked)), base, spec.seed, ANCHOR)
        resources = assign_ids(name, picked + topup, conditions)
        results[name] = {
            "manifest": {
                "observations": len(picked) + len(topup),
                "observations_from_clinosim": len(picked),
                "observations_generated": len(topup),
                "conditions": len(conditions),
                "conditions_dropped_forbidden": dropped_conditions,
                "clinosim_patient": spec.patient,
                "date_shift_days": shift,
                "topup_seed": spec.seed,
                "condition_codes": sorted({c["code"] for r in conditions for c in r["code"]["coding"]}),
                "first_tier_loinc_newest": first_tier_summary(resources),
            },
            "bundle": bundle(name, resources),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--clinosim", type=Path, required=True, help="clinosim's fhir_r4 NDJSON output directory"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output directory (default {OUT_DIR})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "generator": (
            "clinosim 0.6.5: simulate -p 1000 -s 7 --country US --start 2025-01-01 --end 2026-01-01 "
            "--format fhir-r4; then scripts/make_background.py (home-monitoring top-up)"
        ),
        "anchor": ANCHOR.isoformat(),
        "files": {},
    }
    for spec in SPECS:
        for name, built in build(spec, args.clinosim).items():
            path = args.out / f"{name}.json"
            path.write_text(
                json.dumps(built["bundle"], separators=(",", ":"), ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            manifest["files"][name] = built["manifest"]
            m = built["manifest"]
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            print(
                f"{shown}: {m['observations']} Observations ({m['observations_generated']} generated), "
                f"{m['conditions']} Conditions, {path.stat().st_size // 1024} KiB"
            )
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
