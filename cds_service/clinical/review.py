"""Review tools for clinicians: the rules page generated from code, and offline evaluation.

``docs/clinical-rules.md`` is generated from the rule registry and the card catalogue, so what a
clinician reviews is what runs; a test fails when the committed page is out of date
(regenerate with ``cds-fasciculation rules-doc --write``). ``evaluate_bundle`` runs a FHIR Bundle
file through ``Topic.assess``, the very pipeline the service's handler calls, with the same topic
settings (card budget, look-backs, order intent) unless told otherwise.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds_service.clinical.cards import Catalogue
from cds_service.clinical.moments import hooks_for
from cds_service.clinical.pipeline import Situation, Topic, collect
from cds_service.clinical.rules import RULES, Rule
from cds_service.clinical.rules.base import DEFAULT_LOOKBACKS
from cds_service.clinical.settings import TopicSettings
from cds_service.clinical.terminology import terminology
from cds_service.protocol.models import Card, Hook

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "clinical-rules.md"
OFFLINE_BASE_URL = "http://localhost:8100"


def _hooks(r: Rule) -> str:
    return ", ".join(hooks_for(r.moments))


def _code_text(concept: str) -> str:
    code = terminology().concept(concept).primary()
    if code is None:
        return "text-only order (no verified code)"
    return f"`{code.system}|{code.code}` {code.display}"


def rules_markdown() -> str:
    """The whole review page, deterministic for a given code and catalogue."""
    catalogue = Catalogue.load()
    out = [
        "# Clinical rules",
        "",
        "Generated from the rule registry (`cds_service/clinical/rules/`) and the card catalogue (`cards/`) "
        "by `cds-fasciculation rules-doc --write`. Do not edit by hand; a test fails when this page is out "
        "of date. Every rule needs a fasciculation trigger (an active Condition, or an Observation within 365 "
        "days, coded fasciculation, benign fasciculation syndrome, cramp-fasciculation syndrome, myokymia or "
        "neuromyotonia) unless it says otherwise.",
        "",
        "Lab look-back windows (days; override with `CDS_LAB_LOOKBACK_DAYS`): "
        + ", ".join(f"{k} {v}" for k, v in sorted(DEFAULT_LOOKBACKS.items()))
        + ".",
        "",
        "| Rule | Title | Hooks | Cards (indicator) |",
        "|---|---|---|---|",
    ]
    for r in RULES:
        kinds = ", ".join(f"`{k.id}` ({'/'.join(k.indicators)})" for k in catalogue.for_rule(r.id))
        out.append(f"| {r.id} | {r.title} | {_hooks(r)} | {kinds} |")
    for r in RULES:
        out += ["", f"## {r.id}: {r.title}", ""]
        out.append(f"- **Hooks:** {_hooks(r)}")
        out.append(f"- **Needs the fasciculation trigger:** {'yes' if r.needs_trigger else 'no'}")
        out.append(f"- **Fires when:** {r.fires_when}.")
        out.append(f"- **Suppressed when:** {r.suppressed_when}.")
        for kind in catalogue.for_rule(r.id):
            out += ["", f"### Card `{kind.id}` ({'/'.join(kind.indicators)}), file `cards/{kind.path}`", ""]
            out.append(f"Summary: _{kind.summary}_")
            if kind.suggestion_labels:
                out += ["", "Suggestions (FHIR R4 `ServiceRequest`, status draft):", ""]
                out += [
                    f"- {label}: {_code_text(concept)}" for concept, label in kind.suggestion_labels.items()
                ]
            if kind.override_reasons:
                out += [
                    "",
                    "Override reasons: "
                    + "; ".join(f"`{o['code']}` {o['display']}" for o in kind.override_reasons),
                ]
        out += ["", "Evidence:", ""]
        out += [f"> {quote} ({seed})" + "\n" for seed, quote in r.seeds]
    return "\n".join(out).rstrip() + "\n"


def write_rules_doc(path: Path = DOC_PATH) -> bool:
    """Write the page; True if it changed."""
    text = rules_markdown()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def evaluate_bundle(
    path: Path,
    hook: Hook | str = Hook.PATIENT_VIEW,
    budget: int | None = None,
    as_fixture: bool = False,
    base_url: str = OFFLINE_BASE_URL,
    now: datetime | None = None,
    topic: Topic | None = None,
    user_ref: str | None = None,
) -> list[tuple[str, Card]]:
    """Run a FHIR Bundle (any type) offline through the service's pipeline; returns (rule id,
    card) pairs. ``budget`` overrides the card budget of the topic settings (``CDS_CARD_BUDGET``).

    ``as_fixture`` loads it as a project fixture: dates moved to today, background history merged.
    """
    if as_fixture:
        from cds_tools.fixtures import load

        bundle = load(path).bundle
    else:
        bundle = json.loads(path.read_text())
    if topic is None:
        settings = TopicSettings()
        if budget is not None:
            settings = settings.model_copy(update={"card_budget": budget})
        topic = Topic(settings)
    entries = (e.get("resource") for e in bundle.get("entry", ()) if isinstance(e, dict))
    resources = collect([[r for r in entries if isinstance(r, dict)]])
    patient = next(iter(resources.get("Patient", [])), {"id": "unknown"})
    situation = Situation(
        hook=Hook(hook),
        now=now or datetime.now(UTC),
        patient_id=str(patient.get("id")),
        user_ref=user_ref,  # the requester of suggested orders, as the hook's userId gives it
        base_url=base_url,
    )
    assessment = topic.assess(resources, situation)
    return [(why.rule, card) for why, card in zip(assessment.issued, assessment.cards, strict=True)]


def format_cards(cards: list[tuple[str, Card]]) -> str:
    """Cards as plain text for a terminal: indicator, summary, detail, suggestions, links."""
    if not cards:
        return "No cards (patient not in scope, or nothing to say)."
    blocks = []
    for rule, card in cards:
        lines = [f"[{card.indicator.upper()}] {card.summary}  ({rule})"]
        lines += ["    " + line for line in (card.detail or "").splitlines()]
        for s in card.suggestions or ():
            star = " *" if s.isRecommended else ""
            lines.append(f"  -> suggestion{star}: {s.label}")
        for link in card.links or ():
            lines.append(f"  link: {link.label} <{link.url}>")
        blocks.append("\n".join(lines))
    return textwrap.dedent("\n\n".join(blocks))


def rules_summary() -> list[dict[str, Any]]:
    return [{"id": r.id, "title": r.title, "hooks": [str(h) for h in hooks_for(r.moments)]} for r in RULES]
