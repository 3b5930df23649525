"""Real parts for the SMART app tests: the SMART App Launcher (../shared/tools/smart-launcher, the
official test harness; started by ``cds_tools.harness.run_launcher``, shared with the other
launcher tests) in front of SEKMET, Debian's Chromium driven by playwright-core
(tools/node/smart-browser.mjs, installed by scripts/node-kit) and launch codes in the launcher's
own format. Each part skips with a clear reason (fails under CDS_TEST_REQUIRE_ALL=1) when absent;
Chromium is apt-get installed when the tests run as root on Debian (as CI does)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cds_tools.harness import Launcher
from tests.support.fhir_validator import KIT_DIR
from tests.support.servers import ROOT, run_launcher, unavailable

__all__ = [
    "ARTEFACTS",
    "Launcher",
    "browse",
    "ensure_chromium",
    "ensure_playwright",
    "launch_code",
    "run_launcher",
    "sim_iss",
]

BROWSER_SCRIPT = KIT_DIR / "smart-browser.mjs"
ARTEFACTS = Path(os.environ.get("CDS_TEST_ARTEFACTS", ROOT / "test-artefacts")) / "smart"
CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """Debian's chromium, apt-get installed when missing (root on Debian only)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable("chromium missing and cannot be apt-get installed (need root on Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900, check=False
    )
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        unavailable(f"apt-get install chromium failed: {done.stderr.decode(errors='replace')[-300:]}")
    return CHROMIUM


def ensure_playwright() -> None:
    """playwright-core and axe-core from the node kit (scripts/node-kit installs the lock file)."""
    if shutil.which("node") is None:
        unavailable("node is not installed (needed for playwright-core in tools/node)")
    wanted = [KIT_DIR / "node_modules" / p / "package.json" for p in ("playwright-core", "axe-core")]
    if not all(p.is_file() for p in wanted):
        subprocess.run([str(ROOT / "scripts" / "node-kit")], capture_output=True, timeout=600, check=False)
    if not all(p.is_file() for p in wanted):
        unavailable("tools/node/node_modules lacks playwright-core/axe-core; run scripts/node-kit")


def launch_code(
    launch_type: int,
    patient: str,
    *,
    client_type: int = 0,
    auth_error: str = "",
    jwks_url: str = "",
    jwks: str = "",
    pkce: int = 2,
) -> str:
    """The launcher's launch code: base64url of its 17-element array (skip login and approval)."""
    arr = [launch_type, patient, "dr-1", "NONE", 1, 1, 0, "", "", "", "", auth_error, jwks_url, jwks, client_type, pkce, ""]
    return base64.urlsafe_b64encode(json.dumps(arr).encode()).decode().rstrip("=")


def sim_iss(launcher: Launcher, code: str) -> str:
    """The launcher's FHIR base for a simulated launch (standalone: the launch code is in the path)."""
    return f"{launcher.base}/v/r4/sim/{code}/fhir"


def browse(steps: list[dict[str, Any]], screenshot: str | None = None, axe: bool = False) -> dict[str, Any]:
    """Run tools/node/smart-browser.mjs once; its JSON report (steps, requests, console, axe)."""
    ensure_playwright()
    chromium = ensure_chromium()
    node = shutil.which("node")
    assert node is not None
    plan: dict[str, Any] = {"chromium": chromium, "steps": steps, "axe": axe}
    if screenshot:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        plan["screenshot"] = str(ARTEFACTS / screenshot)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    try:
        proc = subprocess.run(
            [node, str(BROWSER_SCRIPT), f.name], cwd=KIT_DIR, capture_output=True, text=True, timeout=180, check=False
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"smart-browser.mjs failed ({proc.returncode}): {proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return report
