"""Put a patient's data where a CDS service can read it: a transaction into a real FHIR server.

A bundle argument is a file, or the name of one of our synthetic patients (``fixtures/patients/
<name>.json``). Fixture patients are loaded with ``cds_tools.fixtures.load``, which shifts their
dates so that "ten days ago" is ten days before today (and merges a background history when the
fixture names one); any other Bundle is loaded as written. A transaction or batch Bundle is posted
as is; a collection or searchset Bundle, or a single resource, is turned into a transaction of
``PUT Type/id`` (``POST`` for resources without an id), so ids stay what the file says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cds_tools import fixtures


@dataclass(frozen=True)
class LoadedBundle:
    bundle: dict[str, Any]  # the transaction Bundle to post
    patient_id: str | None  # the (first) Patient in it
    source: Path
    shifted: bool


def resolve_path(ref: str) -> Path:
    """A file path, or a fixture name such as ``r01-weakness``."""
    path = Path(ref)
    if path.is_file():
        return path
    candidate = fixtures.ROOT / "patients" / f"{ref.removesuffix('.json')}.json"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"{ref}: no such file, and no fixture patient of that name in {fixtures.ROOT / 'patients'}"
    )


def is_fixture(path: Path) -> bool:
    return path.resolve().parent == (fixtures.ROOT / "patients").resolve()


def to_transaction(data: dict[str, Any]) -> dict[str, Any]:
    """A Bundle of any type, or one resource, as a transaction Bundle."""
    if data.get("resourceType") == "Bundle":
        if data.get("type") in ("transaction", "batch"):
            return data
        resources = [
            e["resource"]
            for e in data.get("entry") or ()
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    elif isinstance(data.get("resourceType"), str):
        resources = [data]
    else:
        raise ValueError("not a FHIR resource or Bundle")
    entries = []
    for r in resources:
        if r.get("id"):
            entries.append(
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            )
        else:
            entries.append({"resource": r, "request": {"method": "POST", "url": r["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _first_patient(bundle: dict[str, Any]) -> str | None:
    for e in bundle.get("entry") or ():
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient" and res.get("id"):
            return str(res["id"])
    return None


def read_bundle(ref: str, shift: bool | None = None) -> LoadedBundle:
    """The transaction for ``ref``; ``shift`` None = shift dates for fixture patients only."""
    path = resolve_path(ref)
    do_shift = is_fixture(path) if shift is None else shift
    if do_shift:
        fx = fixtures.load(path)
        return LoadedBundle(to_transaction(fx.bundle), fx.patient_id, path, True)
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a FHIR resource or Bundle")
    bundle = to_transaction(data)
    return LoadedBundle(bundle, _first_patient(bundle), path, False)


@dataclass(frozen=True)
class LoadResult:
    entries: int
    failed: list[str]  # "Type/id: status" of every entry that did not succeed


def post_transaction(
    fhir_base: str, bundle: dict[str, Any], http: httpx.Client, token: str | None = None
) -> LoadResult:
    """POST the transaction to the FHIR base; raises ``httpx.HTTPStatusError`` if it is refused."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = http.post(fhir_base.rstrip("/"), content=json.dumps(bundle).encode(), headers=headers)
    resp.raise_for_status()
    body = resp.json()
    failed = []
    requests = [e.get("request", {}).get("url", "?") for e in bundle.get("entry") or ()]
    for i, entry in enumerate(body.get("entry") or ()):
        status = str((entry.get("response") or {}).get("status", ""))
        if not status.startswith("2"):
            failed.append(f"{requests[i] if i < len(requests) else '?'}: {status or 'no status'}")
    return LoadResult(len(bundle.get("entry") or ()), failed)
