"""Issue 16, point 8: a published test key (the CDS Hooks Sandbox's) is never trusted in production,
however the configuration spells it. The real ``serve`` process must refuse to start with one clear
line; a key set fetched later that carries such a key is screened too."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from cds_service.trust.jwks import parse_jwks
from cds_service.trust.public_keys import PUBLIC_TEST_JWKS, is_public_test_key
from tests.support.trust_env import production_env, start_fails

SANDBOX_FILE = PUBLIC_TEST_JWKS[0]


def _copied_sandbox_file() -> str:
    """The Sandbox's public key set under an innocent file name (an operator's copy)."""
    target = Path(tempfile.mkdtemp(prefix="jwks-copy-")) / "our-ehr-keys.json"
    shutil.copy(SANDBOX_FILE, target)
    return str(target)


@pytest.mark.parametrize(
    "issuer",
    [
        {"preset": "sandbox", "dev_only": False},
        {"iss": "https://ehr.example.test", "jwks_file": "COPY"},
        {
            "iss": "https://ehr.example.test",
            "jwks_url": "https://sandbox.cds-hooks.org/.well-known/jwks.json",
        },
        {"iss": "https://sandbox.cds-hooks.org", "jwks_url": "https://keys.example.test/jwks.json"},
    ],
    ids=["preset-dev-only-false", "pinned-copy-other-iss", "jwks-url-on-sandbox", "sandbox-iss"],
)
def test_production_refuses_a_published_test_key(issuer: dict[str, object]) -> None:
    if issuer.get("jwks_file") == "COPY":
        issuer = {**issuer, "jwks_file": _copied_sandbox_file()}
    code, output = start_fails(production_env([issuer]))
    assert code != 0
    lines = [line for line in output.splitlines() if "published test key" in line]
    assert lines, output[-2000:]
    assert "refused in the production profile" in lines[0]


def test_fetched_key_set_with_a_published_key_is_screened_in_production() -> None:
    data = json.loads(SANDBOX_FILE.read_text())
    kid = data["keys"][0]["kid"]
    assert is_public_test_key(data["keys"][0])
    assert kid in parse_jwks(data)  # dev: the Sandbox is meant to work
    assert kid not in parse_jwks(data, refuse_public=True)  # production: never
