"""HealthChain's ``SandboxClient`` against our service; run with the HealthChain venv's Python.

Not imported by the test suite: ``tests/contract/test_interop_healthchain.py`` runs it as a subprocess with
``.venv-healthchain/bin/python`` (HealthChain pins an older httpx and FastAPI than ours), passing a
JSON plan on argv[1]; it prints one JSON document: the list of exchanges. Only HealthChain, its
dependencies and the standard library are available here.

HealthChain builds and sends the requests itself (``load_synthetic``, ``load_from_path``,
``CdsRequestConstructor``, ``send_requests``). Its ``send_requests`` swallows HTTP errors (it returns
``{}`` for a 4xx), so the real status and body of every exchange are observed with an httpx response
hook on the client it creates; nothing about what it sends is changed.

Why HealthChain is a useful peer: it is a negative client. Its synthetic patients carry a random
``context.patientId`` that matches no prefetched Patient, its synthetic FHIR is invalid R4 (an
Encounter with ``class_fhir``, a Condition breaking con-4), it never reads discovery (it sends its own
prefetch keys), it sends ``extension`` as an array, and it can send hooks we do not serve.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import pydantic
from healthchain.sandbox import SandboxClient
from healthchain.sandbox import sandboxclient as sandbox_module
from healthchain.sandbox.requestconstructors import CdsRequestConstructor
from healthchain.sandbox.workflows import Workflow

EXCHANGES: list[dict[str, Any]] = []
_CURRENT = {"scenario": ""}


class ObservedClient(httpx.Client):
    """httpx.Client that records each response; SandboxClient.send_requests creates one per call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("event_hooks", {"response": [self._observe]})
        super().__init__(*args, **kwargs)

    @staticmethod
    def _observe(response: httpx.Response) -> None:
        response.read()
        sent = json.loads(response.request.content or b"{}")
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:2000]
        EXCHANGES.append(
            {
                "scenario": _CURRENT["scenario"],
                "url": str(response.request.url),
                "hook": sent.get("hook"),
                "patientId": (sent.get("context") or {}).get("patientId"),
                "prefetchKeys": sorted((sent.get("prefetch") or {}).keys()),
                "fhirServer": sent.get("fhirServer"),
                "extension": sent.get("extension"),
                "status": response.status_code,
                "body": body,
            }
        )


def run(scenario: str, client: SandboxClient) -> list[dict[str, Any]]:
    """Send the client's queued requests; returns what HealthChain itself made of the answers."""
    _CURRENT["scenario"] = scenario
    return client.send_requests()


def main(plan: dict[str, Any]) -> None:
    sandbox_module.httpx.Client = ObservedClient  # observe only: HealthChain's own code sends
    service, fhir = plan["service_url"], pydantic.HttpUrl(plan["fhir"])
    got: dict[str, Any] = {}

    # 1. Synthetic patients, as HealthChain generates them (random ids, invalid R4), no fhirServer.
    c = SandboxClient(url=service, workflow="patient-view")
    c.load_synthetic(n=3, random_seed=7)
    got["synthetic"] = run("synthetic", c)

    # 2. The same kind of request, but with a FHIR server the service may query for its own keys.
    c = SandboxClient(url=service, workflow="patient-view")
    c.load_synthetic(n=2, random_seed=11)
    for req in c.requests:
        req.fhirServer = fhir
    got["synthetic-fhir"] = run("synthetic-fhir", c)

    # 3. Our own prefetch keys from a file (a fixture patient), under HealthChain's random patientId.
    c = SandboxClient(url=service, workflow="patient-view")
    c.load_from_path(plan["prefetch_file"])
    got["prefetch-file"] = run("prefetch-file", c)

    # 4. Explicit context for a patient on the FHIR server; the service fetches everything.
    c = SandboxClient(url=service, workflow="patient-view")
    ctor = CdsRequestConstructor()
    req = ctor.construct_request(
        {}, Workflow.patient_view, {"patientId": plan["patient"], "userId": "Practitioner/dr-1"}
    )
    req.fhirServer = fhir
    c.requests.append(req)
    got["explicit"] = run("explicit", c)

    # 5. order-sign with a draft order, record from the FHIR server. (HealthChain serialises only the
    #    base context fields, so the draftOrders given here are dropped on the way out.)
    c = SandboxClient(url=plan["order_sign_url"], workflow="order-sign")  # each hook has its own id
    order = plan["order"]
    req = ctor.construct_request(
        {},
        Workflow.order_sign,
        {"patientId": order["patient"], "userId": "Practitioner/dr-1", "draftOrders": order["draftOrders"]},
    )
    req.fhirServer = fhir
    c.requests.append(req)
    got["order-sign"] = run("order-sign", c)

    # 6. A hook this service does not serve.
    c = SandboxClient(url=service, workflow="encounter-discharge")
    c.load_synthetic(n=1, random_seed=3)
    got["encounter-discharge"] = run("encounter-discharge", c)

    # 7. HealthChain's array-valued ``extension`` (CDS Hooks 2.0 says object).
    c = SandboxClient(url=service, workflow="patient-view")
    c.load_synthetic(n=1, random_seed=5)
    c.requests[0].extension = [{"com.example.flag": True}]
    got["extension-array"] = run("extension-array", c)

    # 8. A service id that does not exist.
    c = SandboxClient(url=plan["unknown_url"], workflow="patient-view")
    c.load_synthetic(n=1, random_seed=9)
    got["unknown-service"] = run("unknown-service", c)

    json.dump({"exchanges": EXCHANGES, "healthchain_results": got}, sys.stdout)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
