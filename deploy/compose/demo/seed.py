"""Load the project's synthetic patients (fixtures/patients) into a FHIR server, dates moved to today.

Runs in the service image (compose profile ``demo``) or from a checkout:

    python3 deploy/compose/demo/seed.py http://127.0.0.1:8080/fhir fixtures

It uses the project's own fixture loader, so the demo patients are exactly the ones the tests use:
each a transaction Bundle whose dates are shifted so "10 days ago" is 10 days before today, with its
background history merged in. Exits non-zero if the server rejects any Bundle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from cds_tools.fixtures import all_fixtures, load


def seed(base: str, root: Path) -> int:
    """POST every fixture as a transaction; returns how many patients were loaded."""
    paths = all_fixtures(root)
    if not paths:
        raise SystemExit(f"no fixtures under {root / 'patients'}")
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    with httpx.Client(timeout=120) as client:
        for path in paths:
            fixture = load(path, root=root)
            resp = client.post(base.rstrip("/"), json=fixture.bundle, headers=headers)
            if resp.status_code >= 300:
                raise SystemExit(f"{path.name}: FHIR server answered HTTP {resp.status_code}")
            print(f"loaded {fixture.patient_id} ({path.name})", flush=True)
    return len(paths)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: seed.py FHIR_BASE_URL FIXTURES_DIR")
    count = seed(sys.argv[1], Path(sys.argv[2]))
    print(f"{count} demo patients loaded into {sys.argv[1]}")
