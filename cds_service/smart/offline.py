"""``cds-fasciculation evaluate --html``: the app's page for a FHIR Bundle file, without an EHR.

The Bundle is laid out as prefetch for the patient-view templates and goes through the same
adapter (``pipeline.cards_for``), record and renderer as the served page; the file is standalone
(inline stylesheet allowed by hash in a ``<meta>`` CSP, no script, no external resource).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

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


def bundle_page(bundle_path: Path, settings: Settings, as_fixture: bool = False) -> tuple[str, int]:
    """(HTML of the page, number of cards) for a Bundle file."""
    if as_fixture:
        from cds_service.fixtures import load

        bundle = load(bundle_path).bundle
    else:
        bundle = json.loads(bundle_path.read_text())
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    registry = Registry()
    load_services(registry, settings.service_modules, settings)
    specs = patient_view_specs(registry)
    prefetch, patient_id = prefetch_from_bundle(specs, bundle)
    now = datetime.now(UTC)
    base = (settings.public_base_url or "http://localhost:8100").rstrip("/")
    cards = asyncio.run(cards_offline(registry, settings, prefetch, patient_id, now, base))
    model = ViewBuilder(settings.lab_lookback_days, settings.trigger_free_text).build(
        resources_by_type(prefetch), patient_id, now, cards, [], bundle_path.name
    )
    return page_html(model, offline=True), len(cards)
