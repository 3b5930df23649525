"""Server environments for the trust tests, and helpers to read what the server logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.jwt_client import SigningKey, bearer, claims_for, jwks, mint, new_key
from tests.support.servers import ROOT, CdsServer, free_port

PUBLIC_BASE = "https://cds.example.test/prefix/"  # trailing slash on purpose: it must not matter


def public_url(path: str) -> str:
    return PUBLIC_BASE.rstrip("/") + path


def production_env(issuers: list[dict[str, Any]], **extra: str) -> dict[str, str]:
    env = {
        "CDS_SERVICE_MODULES": '["tests.support.probe_service"]',
        "CDS_PROFILE": "production",
        "CDS_PATIENT_HASH_KEY": "trust-test-hash-key",
        "CDS_AUTO_MIGRATE": "true",
        "CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
        "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
    }
    env.update(extra)
    return env


def jwks_file(*keys: SigningKey) -> Path:
    """Write the public JWK Set of the keys to a fresh temporary file."""
    fd, name = tempfile.mkstemp(prefix="jwks-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(jwks(*keys), f)
    return Path(name)


def log_records(server: CdsServer) -> list[dict[str, Any]]:
    out = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def refusals(server: CdsServer) -> list[str]:
    """Reasons of every refused client authentication so far, in order."""
    return [r["reason"] for r in log_records(server) if r.get("message") == "client authentication refused"]


def wait_for_audit(server: CdsServer, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The audit records, once at least ``count`` were written (they follow the response)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in log_records(server) if r.get("logger") == "cds.audit"]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def start_fails(env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run ``serve`` expecting it to refuse to start; (exit code, output)."""
    tmp = Path(tempfile.mkdtemp(prefix="cds-nostart-"))
    full = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    full.update(
        {
            "CDS_PORT": str(free_port()),
            "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/x.db",
            "PYTHONPATH": str(ROOT),
        }
    )
    full.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve"],
        cwd=tmp,
        env=full,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


@dataclass
class LocalIssuer:
    """A trusted client whose public key the service reads from a file (no key server needed)."""

    key: SigningKey
    iss: str
    path: Path

    @classmethod
    def create(cls, iss: str = "https://ehr.local.test") -> LocalIssuer:
        key = new_key("ES384")
        return cls(key, iss, jwks_file(key))

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"iss": self.iss, "jwks_file": str(self.path), **extra}

    def env(self) -> dict[str, str]:
        """What a production-profile server needs to trust this client."""
        return {"CDS_PUBLIC_BASE_URL": PUBLIC_BASE, "CDS_TRUSTED_ISSUERS": json.dumps([self.config()])}

    def token(self, path: str, **claims: Any) -> str:
        """A valid token for ``path``; ``claims`` override (``None`` drops one)."""
        base = claims_for(self.iss, public_url(path))
        base.update(claims)
        return mint(self.key, {k: v for k, v in base.items() if v is not None})

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        return bearer(self.token(path, **claims))
