"""Server processes of the benchmark: start pinned to a CPU, wait for health, read CPU and RSS.

Every row's server is one uvicorn process with one worker, started the same way (``uvicorn`` with
uvloop and httptools, no access log), so rows differ only in the application they run. On Linux
with two or more CPUs the servers are pinned to the first CPU and the load generator to the second,
so the generator never takes the server's core; the figures then mean "one worker on one core".
Ports, waiting and stopping are the shared harness's (``cds_tools/harness.py``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cds_tools.harness import free_port, stop, wait_http

__all__ = ["Cpus", "Server", "free_port", "spawn", "uvicorn_cmd", "wait_healthy"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Cpus:
    """Which CPUs the servers and the load generator may use (empty: not pinned)."""

    server: frozenset[int]
    client: frozenset[int]

    @classmethod
    def plan(cls) -> Cpus:
        try:
            available = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return cls(frozenset(), frozenset())
        if len(available) < 2:
            return cls(frozenset(), frozenset())
        return cls(frozenset({available[0]}), frozenset({available[1]}))

    @property
    def pinned(self) -> bool:
        return bool(self.server)

    def pin_client(self) -> None:
        if self.client:
            os.sched_setaffinity(0, self.client)

    def preexec(self, cpus: frozenset[int]) -> Callable[[], None] | None:
        """Runs in the child before exec, so every thread the server starts inherits the pin."""
        if not cpus:
            return None

        def pin() -> None:
            os.sched_setaffinity(0, cpus)

        return pin


@dataclass
class Server:
    """A running server process and how to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        stop(self.proc, grace=15)


def spawn(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    port: int,
    log_dir: Path,
    preexec: Callable[[], None] | None,
) -> Server:
    """Start ``cmd`` (its output to ``<log_dir>/<name>.log``); ``wait_healthy`` before use."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec
        )
    return Server(name, proc, port, log_path)


def wait_healthy(server: Server, health_path: str, timeout: float = 60.0) -> None:
    """Wait until ``health_path`` answers; stop the server and raise with its log if it does not."""
    try:
        wait_http(server.base + health_path, server.proc, timeout, interval=0.05)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{server.name}: {exc}:\n{server.log_tail()}") from None


def uvicorn_cmd(python: str, app: str, port: int) -> list[str]:
    """The uvicorn options ``cds-fasciculation serve`` uses, for the floor and HealthChain rows."""
    return [
        python,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "auto",
        "--http",
        "auto",
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
    ]
