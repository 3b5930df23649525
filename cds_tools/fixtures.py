"""Synthetic patients that never go stale.

A fixture is a valid FHIR R4 transaction Bundle whose ``timestamp`` is its anchor date; loading it
shifts every date and dateTime in it by (now - anchor), so "10 days ago" stays 10 days ago forever.
A fixture may name a background history (``fixtures/background/<name>.json``: a collection Bundle
whose patient references read ``Patient/BACKGROUND``) that is merged in under the fixture's patient.
Used by the golden tests, the offline ``evaluate`` command, the EHR simulator and the benchmark.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
ANCHOR_EXT = "https://cds-fasciculation.example/fhir/StructureDefinition/background-history"
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")


def shift_dates(value: Any, delta: timedelta) -> Any:
    """Every FHIR date/dateTime/instant string moved by ``delta`` (whole days for plain dates)."""
    if isinstance(value, dict):
        return {k: shift_dates(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, delta) for v in value]
    if isinstance(value, str):
        m = _DATETIME.match(value)
        if m is None:
            return value
        if m.group(2) is None:
            return (date.fromisoformat(m.group(1)) + timedelta(days=delta.days)).isoformat()
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return (dt + delta).isoformat(timespec="seconds")
    return value


def _retarget(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _retarget(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_retarget(v, old, new) for v in value]
    return new if value == old else value


@dataclass
class Fixture:
    name: str
    patient_id: str
    bundle: dict[str, Any]  # transaction Bundle with current dates

    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.bundle.get("entry", ())]

    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.resources():
            out.setdefault(r["resourceType"], []).append(r)
        return out

    def prefetch_bundle(self, resource_type: str) -> dict[str, Any]:
        """A searchset Bundle of one type (what an EHR would prefetch)."""
        found = self.by_type().get(resource_type, [])
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"fullUrl": f"{resource_type}/{r['id']}", "resource": r} for r in found],
        }


def load(path: Path, now: datetime | None = None, root: Path = ROOT) -> Fixture:
    raw = json.loads(path.read_text())
    now = now or datetime.now(UTC)
    anchor = datetime.fromisoformat(raw.get("timestamp", "2026-01-01T00:00:00+00:00").replace("Z", "+00:00"))
    delta = timedelta(days=(now.date() - anchor.date()).days)
    bundle = copy.deepcopy(raw)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    for ext in raw.get("meta", {}).get("extension", ()):
        if ext.get("url") == ANCHOR_EXT:
            background = json.loads((root / "background" / f"{ext['valueString']}.json").read_text())
            for entry in background.get("entry", ()):
                res = _retarget(entry["resource"], "Patient/BACKGROUND", f"Patient/{patient['id']}")
                bundle["entry"].append(
                    {
                        "resource": res,
                        "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"},
                    }
                )
    bundle = shift_dates(bundle, delta)
    bundle.pop("meta", None)
    bundle["timestamp"] = now.isoformat(timespec="seconds")
    return Fixture(path.stem, patient["id"], bundle)


def matches_template(resource: dict[str, Any], template: str) -> bool:
    """Would a FHIR server return ``resource`` for this prefetch template (one patient's data)?

    Same resource type, the ``code`` filter (any coding's ``system|code`` in the list) and the
    ``status`` filter; a ``Type/{{...}}`` read matches every resource of that type. This is the
    filter the golden tests and the benchmark apply when they play the EHR, so both send what a
    real EHR would prefetch for our discovery templates.
    """
    path, _, query = template.partition("?")
    if path.startswith(resource["resourceType"] + "/"):
        return True
    if path != resource["resourceType"]:
        return False
    params = parse_qs(urlsplit("?" + query).query)
    if "code" in params:
        wanted = set(params["code"][0].split(","))
        codings = (resource.get("code") or {}).get("coding") or []
        if not any(f"{c.get('system')}|{c.get('code')}" in wanted for c in codings):
            return False
    return "status" not in params or resource.get("status") in params["status"][0].split(",")


def prefetch_for(fixture: Fixture, templates: Mapping[str, str]) -> dict[str, Any]:
    """The full prefetch an EHR would send for ``templates`` (discovery's ``prefetch``): the
    Patient for the read template and a searchset Bundle per search template.

    Shared by the golden tests (tests/e2e/test_golden.py, tests/e2e/test_order_hooks.py) and the benchmark
    (bench/), so the benchmark measures exactly the payloads whose clinical output the tests pin.
    """
    resources = fixture.resources()
    out: dict[str, Any] = {}
    for key, template in templates.items():
        if template.startswith("Patient/"):
            out[key] = next(r for r in resources if r["resourceType"] == "Patient")
            continue
        found = [r for r in resources if matches_template(r, template)]
        out[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in found],
        }
    return out


def all_fixtures(root: Path = ROOT) -> list[Path]:
    return sorted((root / "patients").glob("*.json"))


def expectations(root: Path = ROOT) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((root / "expected.yaml").read_text())
    return data
