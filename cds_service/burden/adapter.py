"""The one place where the burden report calls the service.

``answer`` runs one hook request through what the HTTP endpoint runs after parsing and trust
checks: the prefetch engine (``Gatherer.gather``) and the service's handler, with the service's
own error mapping (a ``CdsError`` becomes its HTTP status). When the service gets a single pipeline
function shared by the endpoint and ``evaluate``, only this function changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from cds_service.clinical.pipeline import Topic
from cds_service.clinical.services import register
from cds_service.clinical.settings import TopicSettings
from cds_service.data.gather import Gatherer, build_fhir_client
from cds_service.protocol.errors import CdsError
from cds_service.protocol.models import HookRequest, dump
from cds_service.registry import HookCall, Registry, ServiceDefinition, load_services
from cds_service.settings import Settings


@dataclass
class Answer:
    """What the EHR would have received, plus how each prefetch key was had."""

    status: int
    body: dict[str, Any]
    rules: list[tuple[str, str]] = field(default_factory=list)  # (rule id, indicator) per card, in order
    keys: dict[str, tuple[str, bool, str | None]] = field(
        default_factory=dict
    )  # key -> (state, required, problem)


class Pipeline:
    """The service as the HTTP endpoint builds it (registry from the settings' service modules, one
    pooled FHIR client); one per worker process and card budget."""

    def __init__(
        self, settings: Settings, service_id: str, hook: str, topic_settings: TopicSettings | None = None
    ) -> None:
        self.settings = settings
        registry = Registry()
        if topic_settings is None:
            load_services(registry, settings.service_modules, settings)
        else:  # the fasciculation topic with these settings (e.g. an unlimited card budget)
            register(registry, settings, Topic(topic_settings))
        service = registry.get(service_id, hook)
        if service is None:
            raise ValueError(f"no service {service_id!r} for hook {hook!r}")
        self.service: ServiceDefinition = service
        self.client: httpx.AsyncClient = build_fhir_client(settings)
        self.gatherer = Gatherer(settings, self.client)

    async def aclose(self) -> None:
        await self.client.aclose()


async def answer(pipeline: Pipeline, request: HookRequest, now: datetime) -> Answer:
    """One hook call through gather + handler; never raises for what the endpoint would map to a status."""
    service = pipeline.service
    keys: dict[str, tuple[str, bool, str | None]] = {}
    try:
        context = service.context_model().model_validate(request.context)
        data = await pipeline.gatherer.gather(service.prefetch, request)
        keys = {k: (str(r.state), r.required, r.problem) for k, r in data.keys.items()}
        result = await service.handler(HookCall(request, context, data, now, "http://localhost:8100"))
    except CdsError as exc:
        return Answer(exc.status, exc.outcome(), [], keys)
    except ValidationError as exc:
        return Answer(400, {"error": str(exc.errors()[:1])}, [], keys)
    return Answer(200, dump(result.response), [(c.rule_id, c.indicator) for c in result.issued], keys)
