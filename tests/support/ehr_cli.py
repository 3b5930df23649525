"""Run ``cds-fasciculation`` commands as a user would (a separate process), and start our service
trusting the EHR simulator's key: what the simulator and conformance tests, and docs/testing.md,
have in common."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import ROOT, CdsServer, free_port, run_cds_server


def cds_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``cds-fasciculation ARGS...`` (the installed entry point, else ``python -m cds_service``),
    with no CDS_* settings of the test environment leaking in and colour off."""
    exe = Path(sys.executable).parent / "cds-fasciculation"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cds_service"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(PYTHONPATH=str(ROOT), NO_COLOR="1")
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    """stdout of a command that must have succeeded (with its output in the assertion message)."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc.stdout


@contextlib.contextmanager
def jwt_server(key_dir: Path, **env: str) -> Iterator[tuple[CdsServer, int]]:
    """Our service (dev profile) that demands client JWTs and trusts the simulator's ES384 key,
    fetched from the simulator's loopback JWK Set (jku). Yields the server and the JWKS port."""
    port = free_port()
    issuers = json.loads(
        ok(cds_cli("ehr", "keys", "--key-dir", str(key_dir), "--jwks-port", str(port), "--issuer-json"))
    )
    settings = {"CDS_TRUSTED_ISSUERS": json.dumps(issuers), "CDS_REQUIRE_CLIENT_JWT": "true", **env}
    with run_cds_server(settings) as server:
        yield server, port
