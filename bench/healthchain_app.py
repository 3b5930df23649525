"""A trivial patient-view service on HealthChain 0.16.1, the comparison row of the benchmark.

Runs only inside bench/.venv-healthchain (HealthChain's own dependencies), started by bench/run.py
with ``uvicorn bench.healthchain_app:app`` and the same uvicorn options as every other row. It is
HealthChain's documented way to serve a hook (``HealthChainAPI`` + ``CDSHooksService.hook``) with
its defaults, and answers one fixed card: so the row measures the framework's per-call cost on our
prefetch, not any clinical logic. HealthChain cannot fetch from ``fhirServer``, so it only gets the
full-prefetch body.
"""

from __future__ import annotations

from healthchain.gateway import CDSHooksService, HealthChainAPI
from healthchain.models.requests.cdsrequest import CDSRequest
from healthchain.models.responses.cdsresponse import CDSResponse

SERVICE_ID = "fasciculation-workup"
PATH = f"/cds/cds-services/{SERVICE_ID}"  # HealthChain mounts services under /cds

cds = CDSHooksService()


@cds.hook("patient-view", id=SERVICE_ID)
def patient_view(request: CDSRequest) -> CDSResponse:
    """One fixed card, whatever the prefetch holds."""
    return CDSResponse(cards=[{"summary": "Fixed card", "indicator": "info", "source": {"label": "bench"}}])


app = HealthChainAPI(title="bench")
app.register_service(cds)
