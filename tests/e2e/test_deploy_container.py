"""The production image, really built and really run: ``deploy/container/build-local.sh`` builds the
repository's Dockerfile with buildah (no Docker engine, no registry here), podman runs it the way a
hospital would (read-only root file system, its own unprivileged user, production profile, two
workers, Postgres and Redis from the environment, a trusted client's key mounted), and the test
plays the EHR: discovery and a patient-view call to the clinical service, with a client JWT.

Slow (about 30 s with the caches of a previous run; about 3 minutes from nothing, most of it
apt-get and debootstrap): marked ``container``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import PG_ADMIN_URL, REDIS_URL, _pg
from tests.support.client import checked
from tests.support.servers import ROOT, free_port, redis_or_unavailable, unavailable
from tests.support.trust_env import PUBLIC_BASE, LocalIssuer

pytestmark = [pytest.mark.container, pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

IMAGE = "localhost/cds-fasciculation:test"
SERVICE = "fasciculation-workup"
TRUST_DIR = "/etc/cds/trust"


def sh(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])}... exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def ensure_podman() -> None:
    """podman (with runc: crun cannot set rlimits in this sandbox) from Debian when missing."""
    if shutil.which("podman") and shutil.which("runc"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable("podman/runc missing and cannot be apt-get installed (need root on Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "podman", "runc"], env=env, capture_output=True, timeout=600, check=False
    )
    if done.returncode != 0:
        unavailable(f"apt-get install podman runc failed: {done.stderr.decode(errors='replace')[-300:]}")


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("bash") is None:
        unavailable("bash is needed for deploy/container/build-local.sh")
    ensure_podman()
    build = subprocess.run(
        ["bash", str(ROOT / "deploy/container/build-local.sh"), IMAGE],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if build.returncode == 3:  # the script's "tools missing and not installable"
        unavailable(build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr[-4000:]
    assert build.stdout.strip().splitlines()[-1] == IMAGE
    return IMAGE


@pytest.fixture(scope="module")
def redis_url() -> str:
    return redis_or_unavailable(REDIS_URL)


def podman_run(image: str, env: dict[str, str], mounts: list[str], *args: str, detach: bool) -> str:
    """podman with what works here (runc, cgroupfs, explicit ulimits: docs/deployment.md) and what
    production demands: read-only root file system (podman puts a tmpfs on /tmp)."""
    cmd = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "run", "--network", "host"]
    cmd += ["--read-only", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    cmd += ["-d", "--name", f"cds-test-{uuid.uuid4().hex[:8]}"] if detach else ["--rm"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    for mount in mounts:
        cmd += ["-v", mount]
    return sh(*cmd, image, *args, timeout=300).stdout.strip()


@pytest.fixture(scope="module")
def client() -> LocalIssuer:
    issuer = LocalIssuer.create(iss="https://ehr.container.test")
    issuer.path.chmod(0o644)  # readable by the container's unprivileged user
    return issuer


@pytest.fixture(scope="module")
def container(image: str, redis_url: str, client: LocalIssuer) -> Iterator[dict[str, Any]]:
    """The service container on a fresh Postgres database, after a one-off ``migrate up`` container."""
    name = f"cds_container_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    host_part = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    port, metrics_port, token = free_port(), free_port(), uuid.uuid4().hex
    issuers = [{"iss": client.iss, "jwks_file": f"{TRUST_DIR}/client-jwks.json"}]
    env = {
        "CDS_DATABASE_URL": f"postgresql+asyncpg://{host_part}/{name}",
        "CDS_REDIS_URL": redis_url,
        "CDS_PATIENT_HASH_KEY": "container-test-hash-key",
        "CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
        "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
        "CDS_PORT": str(port),
        "CDS_METRICS_PORT": str(metrics_port),
        "CDS_ANALYTICS_ENABLED": "true",
        "CDS_ANALYTICS_TOKEN": token,
    }
    mounts = [f"{client.path}:{TRUST_DIR}/client-jwks.json:ro"]
    migrated = podman_run(image, env, mounts, "migrate", "up", detach=False)
    assert "migrated up to head" in migrated
    cid = podman_run(image, env, mounts, detach=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 120, False
        while not ready and time.monotonic() < deadline:
            state = sh("podman", "inspect", "-f", "{{.State.Running}}", cid).stdout.strip()
            assert state == "true", "container exited:\n" + sh("podman", "logs", cid, check=False).stderr
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(base + "/readyz", timeout=2).status_code == 200
            if not ready:
                time.sleep(0.25)
        assert ready, "never ready:\n" + sh("podman", "logs", cid, check=False).stderr[-4000:]
        yield {"id": cid, "base": base, "metrics": f"http://127.0.0.1:{metrics_port}", "token": token}
    finally:
        sh("podman", "rm", "-f", "-t", "30", cid, check=False)
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def hook_request(discovery: dict[str, Any], patient: str) -> dict[str, Any]:
    """Play the EHR: answer the service's own prefetch templates; fasciculations with weakness."""
    svc = next(s for s in discovery["services"] if s["id"] == SERVICE and s["hook"] == "patient-view")
    prefetch: dict[str, Any] = dict.fromkeys(svc["prefetch"])  # null: "the EHR has none of these"

    def condition(i: int, code: str) -> dict[str, Any]:
        return {
            "resource": {
                "resourceType": "Condition",
                "id": f"c{i}",
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
                },
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
                "subject": {"reference": f"Patient/{patient}"},
            }
        }

    prefetch["patient"] = {"resourceType": "Patient", "id": patient, "birthDate": "1968-04-02", "gender": "male"}
    prefetch["conditions"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [condition(1, "R25.3"), condition(2, "M62.81")],
    }
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient},
        "prefetch": prefetch,
    }


def test_image_serves_discovery_and_the_clinical_hook(container: dict[str, Any], client: LocalIssuer) -> None:
    base = container["base"]
    assert httpx.get(base + "/cds-services").status_code == 401  # production: client JWT required
    discovery = checked(httpx.get(base + "/cds-services", headers=client.headers("/cds-services")))
    assert any(s["id"] == SERVICE for s in discovery["services"])

    patient = f"pt-container-{uuid.uuid4().hex[:8]}"
    path = f"/cds-services/{SERVICE}"
    answer = checked(httpx.post(base + path, json=hook_request(discovery, patient), headers=client.headers(path)))
    assert "critical" in {c["indicator"] for c in answer["cards"]}

    ready = httpx.get(base + "/readyz").json()
    assert ready == {"status": "ok", "database": "up", "migrations": "current", "redis": "up"}

    metrics = httpx.get(container["metrics"] + "/metrics").text  # its own port, both workers
    assert f'cds_hook_requests_total{{hook="patient-view",service="{SERVICE}",status="200"}} 1.0' in metrics
    assert 'cds_auth_failures_total{reason="no_token"} 1.0' in metrics
    assert httpx.get(base + "/metrics").status_code == 404

    # issued-card rows are written just after the answer, by whichever worker served the call
    auth = {"Authorization": f"Bearer {container['token']}"}
    issued, deadline = -1, time.monotonic() + 30
    while issued != len(answer["cards"]) and time.monotonic() < deadline:
        report = httpx.get(base + "/analytics/feedback", headers=auth)
        assert report.status_code == 200
        issued = report.json()["totals"]["issued"]
        time.sleep(0 if issued == len(answer["cards"]) else 0.2)
    assert issued == len(answer["cards"])

    logs = sh("podman", "logs", container["id"]).stderr
    assert patient not in logs and "eyJ" not in logs and container["token"] not in logs


def test_container_is_hardened_and_healthy(container: dict[str, Any]) -> None:
    cid = container["id"]
    uid = sh("podman", "exec", cid, "python3", "-c", "import os; print(os.getuid(), os.getgid())").stdout
    assert uid.split() == ["10001", "10001"]
    write = sh("podman", "exec", cid, "sh", "-c", "touch /opt/cds/x", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    assert sh("podman", "healthcheck", "run", cid, check=False).returncode == 0  # the image's HEALTHCHECK
    config = json.loads(sh("podman", "image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert "CDS_PROFILE=production" in config["Env"]


def test_stop_drains_and_exits_cleanly(container: dict[str, Any]) -> None:
    """Last in the module: SIGTERM (podman stop) ends the server by itself, well before the kill."""
    cid = container["id"]
    sh("podman", "stop", "-t", "30", cid, timeout=60)
    code = int(sh("podman", "inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip())
    assert code in (0, 143), code  # 143: uvicorn re-raises SIGTERM after draining
    assert "Application shutdown complete" in sh("podman", "logs", cid).stderr
