"""A population on disk -> one patient's resources at a time, as a FHIR server would hold them.

Accepted input (a directory, searched recursively):

* ``*.json`` FHIR Bundles of any type (Synthea and carebundle write transaction Bundles). A Bundle
  may hold several patients; resources are assigned to a patient by ``subject``/``patient``/
  ``beneficiary``. Bundles without a Patient (Synthea's hospital and practitioner files) are skipped.
* ``*.ndjson`` (or ``.ndjson.gz``) FHIR Bulk Data files, one resource per line, any split by type.
  Bulk output is grouped by patient here, in memory: fine for thousands of patients; the
  hospital-scale plan (a shuffle by patient on a distributed engine) is in docs/alert-burden.md.

References are rewritten as a server would after a transaction (``urn:uuid:...`` -> ``Type/id``),
so what the service sees matches what it would get from the EHR.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

PATIENT_REF_FIELDS = ("subject", "patient", "beneficiary")
FASCICULATION = {
    "system": "http://snomed.info/sct",
    "code": "82470000",
    "display": "Muscle fasciculation (finding)",
}
FASCICULATION_ICD = {
    "system": "http://hl7.org/fhir/sid/icd-10-cm",
    "code": "R25.3",
    "display": "Fasciculation",
}
INJECTED_PREFIX = "burden-fasciculation-"


@dataclass
class Patient:
    """One patient's resources (Patient first), with where they came from."""

    source: str  # generator / sub-directory label, for the per-source figures
    patient_id: str
    resources: list[dict[str, Any]]


@dataclass(frozen=True)
class WorkItem:
    """What a worker process is given: a Bundle file to read itself, or a patient already grouped."""

    source: str
    path: Path | None = None
    patient: Patient | None = None


def source_label(root: Path, path: Path) -> str:
    """The first directory below ``root`` (e.g. ``synthea``), or the file's own stem."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def discover(root: Path) -> tuple[list[Path], list[Path]]:
    """(Bundle files, NDJSON files) below ``root``, sorted for a stable order."""
    bundles = sorted(p for p in root.rglob("*.json") if p.is_file())
    ndjson = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".ndjson", ".ndjson.gz")))
    return bundles, ndjson


def _ref_of(resource: dict[str, Any]) -> str | None:
    for name in PATIENT_REF_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return str(value["reference"])
    return None


def _rewrite_refs(value: Any, urls: dict[str, str]) -> Any:
    """Replace ``reference`` values found in ``urls`` (fullUrl -> Type/id), in place."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref in urls:
            value["reference"] = urls[ref]
        for v in value.values():
            if isinstance(v, dict | list):
                _rewrite_refs(v, urls)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                _rewrite_refs(v, urls)
    return value


def group_resources(
    resources: list[dict[str, Any]], source: str, urls: dict[str, str] | None = None
) -> list[Patient]:
    """Resources (any order) -> patients, each with its Patient resource first."""
    urls = urls or {}
    patients: dict[str, Patient] = {}
    for res in resources:
        if res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
            patients[res["id"]] = Patient(source, res["id"], [res])
    for res in resources:
        if res.get("resourceType") == "Patient":
            continue
        ref = _ref_of(res)
        if ref is None:
            continue
        ref = urls.get(ref, ref)
        pid = ref.rpartition("/")[2] if ref.startswith("Patient/") or "/Patient/" in ref else None
        if pid in patients:
            patients[pid].resources.append(res)
    return list(patients.values())


def read_bundle(path: Path, source: str) -> list[Patient]:
    """The patients of one Bundle file (none when it holds no Patient or is not a Bundle)."""
    try:
        bundle = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return []
    resources: list[dict[str, Any]] = []
    urls: dict[str, str] = {}
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            continue
        full_url = entry.get("fullUrl")
        if (
            not isinstance(res.get("id"), str)
            and isinstance(full_url, str)
            and full_url.startswith("urn:uuid:")
        ):
            res["id"] = full_url.removeprefix("urn:uuid:")  # a POST entry: the server would assign an id
        if isinstance(res.get("id"), str) and isinstance(entry.get("fullUrl"), str):
            urls[entry["fullUrl"]] = f"{res['resourceType']}/{res['id']}"
        resources.append(res)
    if not any(r["resourceType"] == "Patient" for r in resources):
        return []
    if urls:
        for res in resources:
            _rewrite_refs(res, urls)
    return group_resources(resources, source)


def read_ndjson(paths: list[Path], root: Path) -> Iterator[Patient]:
    """Patients of Bulk NDJSON files, grouped per source directory (one read of every file)."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            lines = by_source.setdefault(source_label(root, path), [])
            for line in fh:
                if line.strip():
                    try:
                        res = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
                        lines.append(res)
    for source, resources in by_source.items():
        yield from group_resources(resources, source)


def work_items(root: Path) -> list[WorkItem]:
    """Bundle files are read by the workers (parsing spreads over the pool); Bulk NDJSON must be
    grouped by patient first, which happens here."""
    bundles, ndjson = discover(root)
    items = [WorkItem(source_label(root, p), path=p) for p in bundles]
    items += [WorkItem(p.source, patient=p) for p in read_ndjson(ndjson, root)]
    return items


def inject_fasciculation(patient: Patient, now: datetime) -> None:
    """Add an active, confirmed fasciculation Condition (onset 60 days ago) as the patient's LAST
    resource, so in a paged Condition search it is on the last page (the issue's worst case)."""
    onset = (now - timedelta(days=60)).date().isoformat()
    patient.resources.append(
        {
            "resourceType": "Condition",
            "id": INJECTED_PREFIX + patient.patient_id[:40],
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "problem-list-item",
                        }
                    ]
                }
            ],
            "code": {"coding": [FASCICULATION, FASCICULATION_ICD], "text": "Muscle fasciculation"},
            "subject": {"reference": f"Patient/{patient.patient_id}"},
            "onsetDateTime": onset,
            "recordedDate": onset,
        }
    )
