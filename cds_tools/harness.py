"""Real processes on free ports, for the tests, the benchmark and the load test alike.

One way to find a free port, to wait until a process answers HTTP and to stop it (SIGTERM, then
SIGKILL), and one way each to start the three programs those harnesses need: the CDS service
(``python -m cds_service serve``), a SEKMET FHIR R4 server, and the SMART App Launcher that the team
keeps beside the repository. Failures raise; a missing program raises :class:`Unavailable`, which
the test harness turns into a skip (or a failure under ``CDS_TEST_REQUIRE_ALL=1``) and the command
line tools into an exit message. Nothing here imports the service: it is started as a process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

LAUNCHER_ENV = "CDS_SMART_LAUNCHER"
# The team's shared tools sit beside the repository (``../shared``), in a checkout and a worktree alike.
DEFAULT_LAUNCHER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "smart-launcher" / "run"


class Unavailable(RuntimeError):
    """A program the caller asked for is not installed on this machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(
    url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0, interval: float = 0.1
) -> None:
    """Return once ``url`` answers below 500; raise RuntimeError when ``proc`` exits first or time
    runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(interval)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (a graceful shutdown: the service drains its writers), SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ----------------------------------------------------------------------------------------- service


@dataclass
class CdsServer:
    """A running ``cds-fasciculation serve`` process."""

    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    signalled: bool = False  # a test signalled it on purpose: its stopping is not trouble

    def url(self, path: str = "") -> str:
        return self.base + path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        """Signal the server on purpose (drills of SIGTERM, SIGKILL)."""
        self.signalled = True
        self.proc.send_signal(sig)


def service_env(port: int, work: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its ``CDS_*`` settings (``CDS_TEST_REQUIRE_ALL`` kept),
    then the service on ``127.0.0.1:port`` with a SQLite database in ``work``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") or k == "CDS_TEST_REQUIRE_ALL"}
    env.update(
        {
            "CDS_PORT": str(port),
            "CDS_HOST": "127.0.0.1",
            "CDS_DATABASE_URL": f"sqlite+aiosqlite:///{work}/cds.db",
        }
    )
    env.update(extra or {})
    return env


@contextlib.contextmanager
def run_cds_server(
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    timeout: float = 30.0,
    port: int | None = None,
) -> Iterator[CdsServer]:
    """The real service on a free port (or ``port``, when the caller must know the URL in advance,
    e.g. for ``CDS_PUBLIC_BASE_URL``) with the given ``CDS_*`` settings (its log in a temp dir)."""
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="cds-e2e-"))
    full_env = service_env(port, tmp, env)
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cds_service", "serve"],
            cwd=str(workdir or tmp),
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    server: CdsServer | None = None
    try:
        try:
            wait_http(base + "/healthz", proc, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{log_path.read_text(errors='replace')}") from None
        server = CdsServer(base, proc, log_path, full_env)
        yield server
    finally:
        died_early = proc.poll() is not None
        before_stop = log_path.stat().st_size if log_path.exists() else 0
        stop(proc)
        if not (server is not None and server.signalled):
            _keep_log_if_troubled(log_path, died_early, before_stop)
        shutil.rmtree(tmp, ignore_errors=True)


# Lines of a server log that mean something went wrong while a test used the server (before the
# harness stopped it): a worker that died or failed to start (uvicorn's supervisor), a signal the
# harness did not send, or an unexpected traceback.
_TROUBLE = ("died", "failed to start", "Traceback", "Stopping parent process", "Received SIGTERM", "Received SIGINT")


def _keep_log_if_troubled(log_path: Path, died_early: bool, before_stop: int) -> None:
    """Keep the log of a server that stopped by itself or whose workers died, and say where it is
    (a warning, so pytest's summary shows it even when the test that used the server passed):
    the evidence of a failure seen only in CI must outlive the temporary directory."""
    try:
        data = log_path.read_bytes()
    except OSError:
        return
    lines = data.decode(errors="replace").splitlines()
    stopped_at = len(data[:before_stop].decode(errors="replace").splitlines())
    troubled = [ln for ln in lines[:stopped_at] if any(t in ln for t in _TROUBLE)]
    if not (died_early or troubled):
        return
    keep = Path(tempfile.gettempdir()) / "cds-e2e-logs"
    keep.mkdir(exist_ok=True)
    kept = keep / f"server-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{log_path.parent.name}.log"
    shutil.copyfile(log_path, kept)
    tail = "\n".join(lines[max(stopped_at - 40, 0) : stopped_at + 3])
    warnings.warn(
        f"server {'exited before the test stopped it' if died_early else 'logged trouble'}; log kept at {kept}; "
        f"last lines before the stop:\n{tail}",
        stacklevel=2,
    )


# ------------------------------------------------------------------------------------------ SEKMET


@dataclass
class FhirServer:
    """A running SEKMET FHIR R4 server (bearer-protected when ``token`` is set)."""

    base: str
    token: str | None
    proc: subprocess.Popen[bytes]

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; raise if any entry failed."""
        r = httpx.post(self.base, json=bundle, headers=self.headers(), timeout=60)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body


def sekmet_binary() -> str | None:
    """The ``sekmet`` command of this interpreter's environment, else the one on PATH."""
    exe = Path(sys.executable).parent / "sekmet"
    if exe.exists():
        return str(exe)
    return shutil.which("sekmet")


def sekmet_command(work: Path, port: int, token: str | None = None) -> tuple[list[str], str]:
    """Write SEKMET's settings into ``work`` (which must exist); the command to run there from
    ``work`` and the FHIR base URL it will serve."""
    exe = sekmet_binary()
    if exe is None:
        raise Unavailable("SEKMET FHIR server not installed (pip install sekmet-fhir==0.1.1)")
    base = f"http://127.0.0.1:{port}/fhir"
    lines = [
        f"base_url: {base}",
        "host: 127.0.0.1",
        f"port: {port}",
        "data_dir: data",
        "simulator: {enabled: false}",
        "log_inbound: false",
    ]
    if token:
        lines += ["server_auth:", '  types: ["bearer"]', f'  tokens: ["{token}"]']
    (work / "settings.yaml").write_text("\n".join(lines) + "\n")
    return [exe, "serve", "-c", "settings.yaml"], base


@contextlib.contextmanager
def run_sekmet(token: str | None = None, timeout: float = 60.0) -> Iterator[FhirServer]:
    """A fresh SEKMET FHIR R4 server in its own directory (bearer-protected when ``token`` is set)."""
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sekmet-"))
    try:
        cmd, base = sekmet_command(work, port, token)
        with (work / "sekmet.log").open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(base + "/metadata", proc, timeout)
            yield FhirServer(base, token, proc)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------- SMART launcher


@dataclass
class Launcher:
    """A running SMART App Launcher in front of a FHIR server."""

    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def fhir_base(self) -> str:
        """The ``iss`` a SMART app is launched with: the launcher's FHIR proxy."""
        return self.base + "/v/r4/fhir"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def launcher_script() -> Path:
    """The launcher's ``run`` script (``CDS_SMART_LAUNCHER`` or the shared tools beside the repo)."""
    return Path(os.environ.get(LAUNCHER_ENV) or DEFAULT_LAUNCHER)


def launcher_problem() -> str | None:
    """Why the launcher cannot run here (None: it can)."""
    if not launcher_script().is_file():
        return f"SMART App Launcher not found at {launcher_script()} (set {LAUNCHER_ENV} to its run script)"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "SMART App Launcher needs Node.js and npm, which are not installed"
    return None


@contextlib.contextmanager
def run_launcher(
    fhir: str,
    token_minutes: float | None = None,
    timeout: float = 180.0,
    secret: str | None = None,
    script: Path | None = None,
) -> Iterator[Launcher]:
    """The SMART App Launcher proxying ``fhir`` on a free port (``secret``: its client secret;
    ``script``: another copy's ``run`` script). The first run on a machine installs its npm
    packages, hence the long default ``timeout``."""
    if script is None:
        problem = launcher_problem()
        if problem is not None:
            raise Unavailable(problem)
    port = free_port()
    cmd = [str(script or launcher_script()), "--fhir", fhir, "--port", str(port)]
    if token_minutes is not None:
        cmd += ["--token-minutes", str(token_minutes)]
    if secret is not None:
        cmd += ["--secret", secret]
    work = Path(tempfile.mkdtemp(prefix="smart-launcher-"))
    log_path = work / "launcher.log"
    try:
        with log_path.open("wb") as log:
            # its own process group: the script starts node as a child, and both must stop
            proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        launcher = Launcher(f"http://127.0.0.1:{port}", proc, log_path)
        try:
            try:
                wait_http(launcher.fhir_base + "/.well-known/smart-configuration", proc, timeout, interval=0.25)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- launcher log ---\n{launcher.logs()}") from None
            yield launcher
        finally:
            _stop_group(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session`` and everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


