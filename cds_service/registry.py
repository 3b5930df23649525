"""Service registry: which (service id, hook) pairs exist, what data each needs, and who answers.

Following HAPI FHIR's ``@CdsServicePrefetch``, a service declares every prefetch template beside
its handler together with its failure policy (required or optional); the data layer does the rest.
One id may serve several hooks and two services may share a hook, so the registry is keyed by
``(id, hook)``; registering the same pair twice is an error rather than a silent replacement.
(Our own services still publish one id per hook: real clients such as the CDS Hooks Sandbox key
services by id alone. A retired id can be kept answering as a deprecated alias.)
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from cds_service.data.prefetch import PrefetchSpec
from cds_service.data.sieve import Sieve
from cds_service.protocol.models import CdsResponse, Hook, HookRequest, ServiceDescriptor

if TYPE_CHECKING:
    from cds_service.data.gather import GatheredData
    from cds_service.settings import Settings


@dataclass(frozen=True)
class CardRecord:
    """What the issued-card registry keeps about one card (no PHI): the rule, and for override
    memory the fingerprint of the card's basis and the concepts it suggested (issue 17)."""

    card_uuid: str
    rule_id: str
    indicator: str
    fingerprint: str = ""
    concepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snooze:
    """A card the clinician answered (feedback ``overridden`` or ``accepted``) for this patient,
    as the topic needs it to hold the card back: the rule, the fingerprint of the inputs the card
    was issued on, when it was issued, until when the memory lasts, and (accepted) the concepts the
    card suggested. Never about a critical card: storage keeps none for those."""

    rule_id: str
    fingerprint: str
    outcome: str  # "overridden" | "accepted"
    issued_at: datetime
    until: datetime
    concepts: tuple[str, ...] = ()


@dataclass
class HandlerResult:
    """A handler's answer: the typed response (the core checks and serialises it) plus, per card,
    the rule that produced it (for the issued-card registry)."""

    response: CdsResponse = field(default_factory=CdsResponse)
    issued: list[CardRecord] = field(default_factory=list)
    snoozed: list[str] = field(default_factory=list)  # rules of cards held back by override memory


@dataclass(frozen=True)
class HookCall:
    """Everything a handler gets: the parsed request, its typed context, the data, and ``now``."""

    request: HookRequest
    context: BaseModel
    data: GatheredData
    now: datetime
    base_url: str = ""  # externally visible base URL of this service, for absolute links in cards
    # Override memory for this patient (issue 17), loaded from storage only when the handler asks:
    # a topic that finds nothing to say (most patients) never needs it, and each load is a
    # database query (issue 15). None: no memory (nothing is held back).
    memory: Callable[[], Awaitable[tuple[Snooze, ...]]] | None = None

    async def remembered(self) -> tuple[Snooze, ...]:
        """The override memory for this call (awaited at most once by a handler)."""
        return () if self.memory is None else await self.memory()


Handler = Callable[[HookCall], Awaitable[HandlerResult]]


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: Hook
    title: str
    description: str
    handler: Handler
    prefetch: tuple[PrefetchSpec, ...] = ()
    usage_requirements: str | None = None
    # Which prefetched resources the handler can use at all (cds_service/data/sieve.py): the
    # others reach it as their few head fields only, so they cost almost nothing to decode.
    sieve: Sieve | None = None

    def descriptor(self) -> ServiceDescriptor:
        return ServiceDescriptor(
            hook=self.hook,
            title=self.title,
            description=self.description,
            id=self.id,
            prefetch={p.key: p.template for p in self.prefetch} or None,
            usageRequirements=self.usage_requirements,
        )

    def context_model(self) -> type[BaseModel]:
        """Typed context of the hook this definition serves (every ``Hook`` has one)."""
        return self.hook.context_model


class Registry:
    """All services of this process, looked up by (id, hook)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], ServiceDefinition] = {}
        self._ids: dict[str, list[str]] = {}
        # Deprecated (old id, hook) -> the service that now answers it; served, never discovered.
        self._aliases: dict[tuple[str, str], ServiceDefinition] = {}
        self._sieves: dict[str, Sieve | None] = {}  # sieve_of, per id; cleared by add and add_alias
        # Human-readable pages a topic publishes (evidence behind its cards), served as
        # GET /evidence/{name}; the function gets the base URL and returns HTML.
        self.pages: dict[str, Callable[[str], str]] = {}
        # HTTP routers a plug-in contributes beyond the CDS Hooks endpoints (e.g. the SMART app's
        # /smart pages). Typed loosely so the registry stays free of the web framework; the HTTP
        # layer includes each (it must be a FastAPI ``APIRouter``) after its own routers.
        self.routers: list[object] = []
        # Patient education pages (issue 19), served as GET /education/{name} under a strict CSP:
        # self-contained HTML (inline style only, no scripts or external resources).
        self.education: dict[str, Callable[[str], str]] = {}

    def add(self, service: ServiceDefinition) -> None:
        key = (service.id, service.hook)
        if key in self._by_key:
            raise ValueError(f"service {service.id!r} already registered for hook {service.hook!r}")
        keys = [p.key for p in service.prefetch]
        if len(keys) != len(set(keys)):
            raise ValueError(f"service {service.id!r}: duplicate prefetch keys")
        self._by_key[key] = service
        self._sieves.clear()
        self._ids.setdefault(service.id, []).append(service.hook)

    def add_alias(self, old_id: str, hook: str, target_id: str) -> None:
        """Keep answering ``(old_id, hook)`` with the service ``(target_id, hook)`` for a
        deprecation period (docs/testing.md, "Service ids"): clients configured with the old id
        keep working, discovery lists only the new id, and each such call is logged as deprecated."""
        target = self._by_key.get((target_id, hook))
        if target is None:
            raise ValueError(f"alias {old_id!r}/{hook!r}: no service {target_id!r} for that hook")
        if (old_id, hook) in self._by_key or (old_id, hook) in self._aliases:
            raise ValueError(f"alias {old_id!r}/{hook!r} would shadow a registered pair")
        self._aliases[(old_id, hook)] = target
        self._sieves.clear()

    def has_id(self, service_id: str) -> bool:
        return service_id in self._ids or any(k[0] == service_id for k in self._aliases)

    def hooks_of(self, service_id: str) -> list[str]:
        return list(self._ids.get(service_id, []))

    def get(self, service_id: str, hook: str) -> ServiceDefinition | None:
        """The service for ``(id, hook)``, a deprecated alias included (its ``id`` then differs
        from ``service_id``, which is how the endpoint knows to log the deprecation)."""
        return self._by_key.get((service_id, hook)) or self._aliases.get((service_id, hook))

    def sieve_of(self, service_id: str) -> Sieve | None:
        """The sieve for a call to ``service_id``, known before the body (and so the hook) is
        read: the one sieve every hook of that id (or alias) declares, else None (decode all)."""
        if service_id not in self._sieves:
            found = {s.sieve for (sid, _), s in (*self._by_key.items(), *self._aliases.items()) if sid == service_id}
            self._sieves[service_id] = found.pop() if len(found) == 1 else None
        return self._sieves[service_id]

    def all(self) -> list[ServiceDefinition]:
        return list(self._by_key.values())


def load_services(registry: Registry, modules: list[str], settings: Settings) -> None:
    """Import each module and call its ``register(registry, settings)``; a topic is a plug-in."""
    for name in modules:
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if not callable(register):
            raise ValueError(f"service module {name!r} has no register(registry, settings)")
        register(registry, settings)
