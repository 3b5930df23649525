"""Run the ASGI server so that SIGTERM refuses new connections at once while requests in flight finish.

With several workers uvicorn's supervisor binds the listening socket and keeps it open until every
worker has drained. The workers stop accepting on SIGTERM, but the kernel goes on completing new
connections into the shared socket's backlog, and they are reset when the supervisor finally
exits: an EHR whose request was sent on such a connection gets a reset after a second or more,
with no way to know that nothing was processed. The compose SIGTERM drill
(tests/test_deploy_stack.py) saw 10 of 459 calls end that way. Here the supervisor closes its copy of
the listening socket as soon as it is told to stop, so once the workers have closed theirs too,
new connections are refused immediately (a load balancer retries them on another replica) and
only the calls already accepted are drained, for up to ``CDS_SHUTDOWN_GRACE_SECONDS``.

The supervisor also pings every worker twice a second and kills one that does not answer within
``timeout_worker_healthcheck`` (uvicorn's default: 5 s), dropping the calls it was answering. A
worker on a saturated host can miss 5 s without being hung, so the service gives it
``WORKER_HEALTHCHECK_SECONDS``; a worker that is really hung is still replaced, later.
"""

from __future__ import annotations

import inspect
import socket
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

WORKER_HEALTHCHECK_SECONDS = 30


class _ClosingSupervisor(Multiprocess):
    """uvicorn's multi-process supervisor that closes its listening sockets on SIGTERM/SIGINT."""

    sockets: list[socket.socket]

    def _close_listeners(self) -> None:
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:  # already closed: nothing to refuse twice
                pass

    def handle_term(self) -> None:
        self._close_listeners()
        super().handle_term()

    def handle_int(self) -> None:
        self._close_listeners()
        super().handle_int()


def run(app: Any, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, with the closing supervisor when ``workers`` > 1."""
    if int(options.get("workers") or 1) <= 1:
        uvicorn.run(app, **options)  # one process: its server closes the listener itself on SIGTERM
        return
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config.__init__).parameters:
        options.setdefault("timeout_worker_healthcheck", WORKER_HEALTHCHECK_SECONDS)
    config = uvicorn.Config(app, **options)
    sock = config.bind_socket()
    supervisor: Any = _ClosingSupervisor  # its signature differs between uvicorn releases
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # older: the server's run method
        supervisor(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
    else:
        supervisor(config, sockets=[sock]).run()
