"""The fasciculation work-up services, plugged into the registry.

One id, ``fasciculation-workup``, serves ``patient-view`` here (the order hooks register beside
it). Prefetch templates ask for exactly what the rules read; the Observation search lists the
codes the rules use, split over several keys so each URL stays under 2,000 characters.
"""

from __future__ import annotations

import functools
import html
from typing import Any

from cds_service.clinical.cards import Catalogue, RenderContext, Renderer
from cds_service.clinical.drafts import Draft, read_drafts
from cds_service.clinical.engine import evaluate, in_scope
from cds_service.clinical.record import RecordBuilder
from cds_service.clinical.rules import RULES
from cds_service.clinical.rules.base import DEFAULT_LOOKBACKS, TRIGGERS
from cds_service.clinical.terminology import LOINC, SNOMED, Terminology, terminology
from cds_service.protocol.models import CdsResponse, dump
from cds_service.registry import (
    CardRecord,
    HandlerResult,
    HookCall,
    PrefetchSpec,
    Registry,
    ServiceDefinition,
)
from cds_service.settings import Settings
from cds_service.smart.config import SmartSettings

SERVICE_ID = "fasciculation-workup"
MAX_URL = 2000
PATIENT = "{{context.patientId}}"
FINDING_CATEGORIES = (
    "trigger",
    "red_flag",
    "red_flag_umn",
    "red_flag_bulbar",
    "red_flag_emergent",
    "exam_finding",
    "associated_symptom",
    "differential",
)
# Resource types the patient record is built from (WorkupService.by_type).
RECORD_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "ServiceRequest",
    "Procedure",
    "DiagnosticReport",
    "MedicationRequest",
    "MedicationStatement",
    "Appointment",
)


def _chunks(prefix: str, codes: list[str], limit: int) -> list[str]:
    """Split ``prefix + code1,code2,...`` into URLs no longer than ``limit``."""
    out: list[str] = []
    current: list[str] = []
    for code in codes:
        candidate = prefix + ",".join([*current, code]) + "&_sort=-date&_count=200"
        if current and len(candidate) > limit:
            out.append(prefix + ",".join(current) + "&_sort=-date&_count=200")
            current = []
        current.append(code)
    if current:
        out.append(prefix + ",".join(current) + "&_sort=-date&_count=200")
    return out


def prefetch_templates(t: Terminology) -> tuple[PrefetchSpec, ...]:
    labs = sorted(
        {c.code for k in t.concepts.values() if k.category == "lab" for c in k.codes if c.system == LOINC}
    )
    findings = sorted(
        {
            c.code
            for k in t.concepts.values()
            if k.category in FINDING_CATEGORIES
            for c in k.codes
            if c.system == SNOMED
        }
    )
    lab_urls = _chunks(f"Observation?patient={PATIENT}&code=", [f"{LOINC}|{c}" for c in labs], MAX_URL)
    finding_urls = _chunks(
        f"Observation?patient={PATIENT}&code=", [f"{SNOMED}|{c}" for c in findings], MAX_URL
    )
    specs = [
        PrefetchSpec("patient", f"Patient/{PATIENT}", required=False),
        PrefetchSpec("conditions", f"Condition?patient={PATIENT}&_count=200", required=True, all_pages=True),
    ]
    for i, url in enumerate(lab_urls):
        specs.append(
            PrefetchSpec(f"labs{i + 1 if len(lab_urls) > 1 else ''}", url, required=True, all_pages=True)
        )
    for i, url in enumerate(finding_urls):
        specs.append(
            PrefetchSpec(
                f"findings{i + 1 if len(finding_urls) > 1 else ''}", url, required=True, all_pages=True
            )
        )
    specs += [
        PrefetchSpec("serviceRequests", f"ServiceRequest?patient={PATIENT}&_count=200", all_pages=True),
        PrefetchSpec("procedures", f"Procedure?patient={PATIENT}&_count=200", all_pages=True),
        PrefetchSpec("reports", f"DiagnosticReport?patient={PATIENT}&_count=200", all_pages=True),
        PrefetchSpec(
            "medications",
            f"MedicationRequest?patient={PATIENT}&status=active,on-hold&_count=200",
            all_pages=True,
        ),
        PrefetchSpec(
            "appointments", f"Appointment?patient={PATIENT}&status=proposed,pending,booked&_count=50"
        ),
        # Ankle-brachial index results carry local codes (no LOINC exists); they live in exam/procedure.
        PrefetchSpec(
            "exams", f"Observation?patient={PATIENT}&category=exam,procedure&_sort=-date&_count=200"
        ),
    ]
    return tuple(specs)


class WorkupService:
    """Everything built once at start-up: terminology, catalogue, renderer, record builder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.t = terminology()
        self.catalogue = Catalogue.load()
        self.renderer = Renderer(self.catalogue, self.t)
        self.builder = RecordBuilder(self.t, use_trigger_text=settings.trigger_free_text)
        self.lookbacks = {**DEFAULT_LOOKBACKS, **settings.lab_lookback_days}
        public = settings.public_base_url
        self.smart_url = f"{public.rstrip('/')}/smart/launch" if public and SmartSettings().enabled else None
        rule_ids = {r.id for r in RULES}
        orphans = sorted(k.id for k in self.catalogue.kinds.values() if k.rule not in rule_ids)
        if orphans:
            raise ValueError(f"card kinds for unknown rules: {orphans}")

    def by_type(self, call: HookCall) -> dict[str, list[dict[str, Any]]]:
        """The gathered resources of the types the rules read, each once per id: what
        ``call.data.of_type(kind)`` gives for every kind, in one pass over the data instead of one
        pass per kind (nine passes over thousands of Observations were measurable)."""
        found: dict[str, list[dict[str, Any]]] = {kind: [] for kind in RECORD_TYPES}
        seen: dict[str, set[str]] = {kind: set() for kind in RECORD_TYPES}
        for key in call.data.keys.values():
            for res in key.resources:
                kind = res.get("resourceType")
                if not isinstance(kind, str) or kind not in found:
                    continue
                rid = res.get("id")
                if isinstance(rid, str):
                    if rid in seen[kind]:
                        continue
                    seen[kind].add(rid)
                found[kind].append(res)
        return {kind: resources for kind, resources in found.items() if resources}

    async def patient_view(self, call: HookCall) -> HandlerResult:
        return self.run(call, [], frozenset())

    async def order_hook(self, call: HookCall) -> HandlerResult:
        """order-select and order-sign: the same record, with the draft orders read defensively."""
        drafts = read_drafts(self.t, call.request.context.get("draftOrders"))
        raw_selections = call.request.context.get("selections")
        selections = (
            frozenset(s for s in raw_selections if isinstance(s, str))
            if isinstance(raw_selections, list)
            else frozenset()
        )
        return self.run(call, drafts, selections)

    def run(self, call: HookCall, drafts: list[Draft], selections: frozenset[str]) -> HandlerResult:
        resources = self.by_type(call)
        if not in_scope(self.t, resources, drafts):
            return HandlerResult({"cards": []})
        patient_id = str(call.request.context.get("patientId"))
        missing = [f"{k} ({call.data.keys[k].problem})" for k in call.data.missing]
        rec = self.builder.build(patient_id, call.now, resources, missing)
        result = evaluate(
            rec, call.request.hook, call.now, self.lookbacks, self.settings.card_budget, drafts, selections
        )
        trigger_condition = next((f.ref for f in rec.has(*TRIGGERS) if f.source == "condition"), None)
        rc = RenderContext(
            patient_id=patient_id,
            user_ref=call.request.context.get("userId"),
            now=call.now,
            base_url=call.base_url,
            intent=self.settings.order_intent,
            reason_condition=trigger_condition,
            missing=missing,
            smart_launch_url=self.smart_url,
        )
        cards = [self.renderer.render(hit, rc) for hit in result.hits]
        issued = [
            CardRecord(c.uuid or "", hit.rule, hit.indicator)
            for c, hit in zip(cards, result.hits, strict=True)
        ]
        return HandlerResult(dump(CdsResponse(cards=cards)), issued)

    # ------------------------------------------------------------------ evidence pages

    def page(self, card_id: str) -> str:
        kind = self.catalogue.kinds[card_id]
        rule = next(r for r in RULES if r.id == kind.rule)
        quotes = [*rule.seeds, *((e["seed"], e["quote"]) for e in kind.evidence)]
        items = "".join(
            f"<li><q>{html.escape(q)}</q> <small>({html.escape(s)})</small></li>" for s, q in quotes
        )
        codes = "".join(
            f"<li>{html.escape(label)}: {html.escape(self._code_text(concept))}</li>"
            for concept, label in kind.suggestion_labels.items()
        )
        return _html(
            f"{rule.id}: {rule.title}",
            f"<p><b>Card</b> {html.escape(kind.id)} ({html.escape(kind.indicator)}).</p>"
            f"<p><b>Fires when</b> {html.escape(rule.fires_when)}.</p>"
            f"<p><b>Suppressed when</b> {html.escape(rule.suppressed_when)}.</p>"
            f"<h2>Evidence</h2><ul>{items}</ul>"
            + (f"<h2>Suggested orders</h2><ul>{codes}</ul>" if codes else ""),
        )

    def _code_text(self, concept: str) -> str:
        code = self.t.concept(concept).primary()
        return f"{code.system}|{code.code} ({code.display})" if code else "no verified code: text-only order"

    def index(self, base: str) -> str:
        rows = "".join(
            f'<li><a href="{html.escape(base)}/evidence/{html.escape(k.id)}">{html.escape(k.rule)}: '
            f"{html.escape(k.id)}</a></li>"
            for k in sorted(self.catalogue.kinds.values(), key=lambda k: (k.rule, k.id))
        )
        return _html(
            "Fasciculation work-up CDS: rules and evidence",
            "<p>Clinical decision support for the work-up of muscle fasciculations. Each card links here to "
            f"the rule that produced it and the sentences of the source documents it implements.</p><ul>{rows}</ul>",
        )


def _html(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<body style='font-family:sans-serif;max-width:48em;margin:2em auto'><h1>{html.escape(title)}</h1>{body}"
    )


def register(registry: Registry, settings: Settings) -> None:
    """One id, three hooks: patient-view, order-select and order-sign share data needs and rules."""
    svc = WorkupService(settings)
    prefetch = prefetch_templates(svc.t)
    usage = (
        "FHIR R4. Conditions and the Observation searches are required (prefetch or fhirServer access); orders, "
        "procedures, reports, medications, appointments and exam observations are optional and their absence is "
        "stated on the cards."
    )
    registry.add(
        ServiceDefinition(
            id=SERVICE_ID,
            hook="patient-view",
            title="Fasciculation work-up",
            description=(
                "Checks the work-up of muscle fasciculations when a chart is opened: red flags needing urgent EMG and "
                "neurology, missing first-tier labs, abnormal results, drug causes, screening and follow-up. Silent "
                "for patients without fasciculation."
            ),
            handler=svc.patient_view,
            prefetch=prefetch,
            usage_requirements=usage,
        )
    )
    for hook, moment in (
        ("order-select", "as orders are selected"),
        ("order-sign", "before orders are signed"),
    ):
        registry.add(
            ServiceDefinition(
                id=SERVICE_ID,
                hook=hook,
                title="Fasciculation work-up: order checks",
                description=(
                    f"Checks orders {moment} for a patient with fasciculations: duplicate or repeat EMG, "
                    "cyclobenzaprine, lumbar MRI and brain imaging appropriateness, compression stockings with a low "
                    "ankle-brachial index, and red flags without EMG/neurology ordered. Accepts R4, STU3 and DSTU2 "
                    "draft orders."
                ),
                handler=svc.order_hook,
                prefetch=prefetch,
                usage_requirements=usage,
            )
        )
    registry.pages["index"] = svc.index
    for card_id in svc.catalogue.kinds:
        registry.pages[card_id] = functools.partial(_page, svc, card_id)


def _page(svc: WorkupService, card_id: str, _base: str) -> str:
    return svc.page(card_id)
