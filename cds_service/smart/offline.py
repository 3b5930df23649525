"""``cds-fasciculation evaluate --html``: the app's page for a FHIR Bundle file, without an EHR.

The Bundle is laid out as prefetch for the patient-view templates and goes through the same
adapter (``pipeline.cards_for``), record and renderer as the served page; the file is standalone
(inline stylesheet allowed by hash in a ``<meta>`` CSP, no script, no external resource).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cds_service.clinical.settings import TopicSettings
from cds_service.registry import Registry, load_services
from cds_service.settings import Settings
from cds_service.smart.pipeline import (
    cards_offline,
    patient_view_specs,
    prefetch_from_bundle,
    resources_by_type,
)
from cds_service.smart.render import page_html
from cds_service.smart.view import ViewBuilder


def bundle_page(bundle: object, name: str, settings: Settings) -> tuple[str, int]:
    """(HTML of the page, number of cards) for a parsed Bundle (the command line reads the file,
    shifting a fixture's dates with ``cds_tools.fixtures``: the server never imports the tools)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    registry = Registry()
    load_services(registry, settings.service_modules, settings)
    specs = patient_view_specs(registry)
    prefetch, patient_id = prefetch_from_bundle(specs, bundle)
    now = datetime.now(UTC)
    base = (settings.public_base_url or "http://localhost:8100").rstrip("/")
    cards = asyncio.run(cards_offline(registry, settings, prefetch, patient_id, now, base))
    model = ViewBuilder(TopicSettings()).build(resources_by_type(prefetch), patient_id, now, cards, [], name)
    return page_html(model, offline=True), len(cards)
