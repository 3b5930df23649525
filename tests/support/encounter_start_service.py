"""Test-only: the fasciculation topic serving ``encounter-start`` as well, with a rule of its own.

Loaded with CDS_SERVICE_MODULES=tests.support.encounter_start_service (or used in-process). It is
exactly what adding a hook to the topic takes: the hook's moment in the hook table (one line, here
on a copy of ``moments.HOOK_MOMENTS``), plus any rules it needs (here ``ENC1`` with its card, on a
copy of the topic's rule book). No rule, engine, handler or core module changes: the protocol
already declares ``Hook.ENCOUNTER_START`` with its context model.
"""

from __future__ import annotations

from cds_service.clinical import services
from cds_service.clinical.cards import CardKind, CardSpec, Catalogue, CodeSpec
from cds_service.clinical.moments import CHART, HOOK_MOMENTS, Moment
from cds_service.clinical.pipeline import Topic
from cds_service.clinical.record_model import PatientRecord
from cds_service.clinical.rules import BOOK
from cds_service.clinical.rules.base import Basis, Hit, RuleContext
from cds_service.protocol.models import Hook
from cds_service.registry import Registry
from cds_service.settings import Settings

HOOKS = {**HOOK_MOMENTS, Hook.ENCOUNTER_START: Moment.CHART}  # the one line that adds the hook

RULES = BOOK.extended()


@RULES.rule(
    "ENC1",
    "Test only: fasciculation on file when an encounter starts",
    CHART,
    "a fasciculation trigger is on file",
    (("test-only", "no seed: this rule exists for the architecture test"),),
    rank=5,  # before every topic rule; at warning it is shown after critical cards only
)
def enc1(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    return Hit("ENC1", "encounter-note", "warning", [Basis.of(f) for f in ctx.triggers[:1]])


CARD = CardSpec(
    id="encounter-note",
    rule="ENC1",
    indicator="warning",
    summary="Test only: fasciculation on file at the start of this encounter",
    detail="Test-only card of tests/support/encounter_start_service.py.",
    topic=CodeSpec(code="test-only", display="Test only"),
)


def topic() -> Topic:
    catalogue = Catalogue({**Catalogue.load().kinds, CARD.id: CardKind.of(CARD, "(test)")})
    return Topic(rules=RULES.ordered(), catalogue=catalogue, hook_moments=HOOKS)


def register(registry: Registry, settings: Settings) -> None:
    services.register(registry, settings, topic())
