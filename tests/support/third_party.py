"""Drivers for the third-party CDS Hooks clients of the interoperability tests.

* ``run_medplum``: ``@medplum/core``'s CDS client (``tools/node/cds-client.mjs``, installed from the
  committed lock file by ``scripts/node-kit``) does discovery, resolves the prefetch templates against
  a FHIR server itself and calls the service.
* ``healthchain_python``: HealthChain's ``SandboxClient`` runs in a virtualenv of its own
  (``scripts/healthchain-venv``), because its pinned dependencies (an older httpx and FastAPI) conflict
  with ours; the tests run ``tests/support/healthchain_driver.py`` with that interpreter.

Both skip the calling test (fail under ``CDS_TEST_REQUIRE_ALL=1``) when the client cannot be had.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.client import rule_of
from tests.support.fhir_validator import KIT_DIR
from tests.support.servers import ROOT, unavailable

CDS_CLIENT = KIT_DIR / "cds-client.mjs"
HC_SETUP = ROOT / "scripts" / "healthchain-venv"
HC_VENV = ROOT / ".venv-healthchain"
HC_DRIVER = ROOT / "tests" / "support" / "healthchain_driver.py"


@dataclass
class MedplumRun:
    """One run of cds-client.mjs: exit status (0 answered 2xx, 1 error answer, 3 no call made) and
    its JSON report (``service``, ``request``, and ``response`` or ``error``)."""

    returncode: int
    report: dict[str, Any]
    stderr: str


def medplum_missing() -> str | None:
    """Why the Medplum client cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (needed for @medplum/core's CDS client in tools/node)"
    if not (KIT_DIR / "node_modules" / "@medplum" / "core" / "package.json").is_file():
        return "tools/node/node_modules/@medplum/core is missing; run scripts/node-kit"
    return None


def run_medplum(
    fhir: str,
    discovery: str,
    patient: str,
    hook: str = "patient-view",
    context: dict[str, Any] | None = None,
    user: str | None = None,
    fhir_token: str | None = None,
) -> MedplumRun:
    """Run Medplum's CDS client once; its prefetch goes to ``fhir``, its call to ``discovery``'s host."""
    reason = medplum_missing()
    if reason is not None:
        unavailable(reason)
    node = shutil.which("node")
    assert node is not None
    args = [node, "--experimental-websocket", "--no-warnings", str(CDS_CLIENT)]
    args += ["--fhir", fhir, "--cds", discovery, "--patient", patient, "--hook", hook]
    if user:
        args += ["--user", user]
    if fhir_token:
        args += ["--fhir-token", fhir_token]
    with tempfile.TemporaryDirectory(prefix="medplum-") as tmp:
        if context is not None:
            path = Path(tmp) / "context.json"
            path.write_text(json.dumps(context))
            args += ["--context-file", str(path)]
        proc = subprocess.run(args, cwd=KIT_DIR, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode == 2 or not proc.stdout.strip():
        raise RuntimeError(f"cds-client.mjs failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return MedplumRun(proc.returncode, json.loads(proc.stdout), proc.stderr)


def healthchain_python() -> Path:
    """The interpreter of the HealthChain venv, created on first use by scripts/healthchain-venv."""
    python = HC_VENV / "bin" / "python"
    proc = subprocess.run([str(HC_SETUP)], capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0 or not python.exists():
        unavailable(f"HealthChain could not be installed: {(proc.stdout + proc.stderr)[-1500:]}")
    return python


def card_summary(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A response reduced to what fixtures/expected.yaml and order-cases.yaml state per card:
    rule, indicator, resources a delete suggestion names, and codes of single create suggestions."""
    out = []
    for card in body["cards"]:
        deletes, creates = [], []
        for s in card.get("suggestions", []):
            actions = s.get("actions", [])
            for a in actions:
                if a["type"] == "delete":
                    deletes.append(a["resourceId"])
                elif len(actions) == 1:
                    code = a["resource"]["code"]
                    creates.append(
                        f"{code['coding'][0]['system']}|{code['coding'][0]['code']}"
                        if "coding" in code
                        else f"text:{code['text']}"
                    )
        out.append({"rule": rule_of(card), "indicator": card["indicator"], "delete": deletes, "suggests": creates})
    return out
