"""Real parts for the SMART app tests: the SMART App Launcher (../shared/tools/smart-launcher, the
official test harness) in front of SEKMET, Debian's Chromium driven by playwright-core
(tools/node/smart-browser.mjs, installed by scripts/node-kit) and launch codes in the launcher's
own format. Each part skips with a clear reason (fails under CDS_TEST_REQUIRE_ALL=1) when absent;
Chromium is apt-get installed when the tests run as root on Debian (as CI does)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fhir_validator import KIT_DIR
from tests.support.servers import ROOT, free_port, stop, unavailable, wait_http

LAUNCHER = Path(os.environ.get("CDS_SMART_LAUNCHER", ROOT.parent / "shared" / "tools" / "smart-launcher" / "run"))
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


@dataclass
class Launcher:
    base: str
    proc: subprocess.Popen[bytes]

    @property
    def iss(self) -> str:
        return f"{self.base}/v/r4/fhir"

    def sim_iss(self, code: str) -> str:
        return f"{self.base}/v/r4/sim/{code}/fhir"


@contextlib.contextmanager
def run_launcher(fhir_base: str, token_minutes: float | None = None) -> Iterator[Launcher]:
    if not LAUNCHER.is_file():
        unavailable(f"SMART App Launcher not found at {LAUNCHER}")
    if shutil.which("node") is None or shutil.which("openssl") is None:
        unavailable("the SMART App Launcher needs node and openssl")
    port = free_port()
    args = [str(LAUNCHER), "--fhir", fhir_base, "--port", str(port)]
    if token_minutes is not None:
        args += ["--token-minutes", str(token_minutes)]
    work = Path(tempfile.mkdtemp(prefix="smart-launcher-"))
    log = (work / "launcher.log").open("wb")
    proc = subprocess.Popen(args, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{base}/v/r4/fhir/.well-known/smart-configuration", proc, timeout=180)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{(work / 'launcher.log').read_text(errors='replace')[-3000:]}") from None
        yield Launcher(base, proc)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


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
