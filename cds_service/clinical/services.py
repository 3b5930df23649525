"""The fasciculation work-up services, plugged into the registry.

One id per hook (``SERVICE_IDS``): real clients key discovered services by id alone (the CDS
Hooks Sandbox keeps only the last entry of an id), so sharing one id across hooks, which the spec
allows, lost two of the three hooks there. The order hooks' former id, ``fasciculation-workup``,
still answers them for one release as a deprecated alias (docs/testing.md, "Service ids"). The handlers only translate a hook call into the topic's terms (typed
context -> ``Situation``, gathered data -> resources by type) and call ``Topic.assess``, the one
pipeline the offline ``evaluate`` command uses too. Prefetch templates ask for exactly what the
rules read; the Observation search lists the codes the rules use, split over several keys so each
URL stays under 2,000 characters.
"""

from __future__ import annotations

import dataclasses
import functools
import html
from typing import Any

from cds_service.clinical import education
from cds_service.clinical.drafts import read_drafts
from cds_service.clinical.moments import Moment
from cds_service.clinical.pipeline import RECORD_TYPES, Situation, Topic, collect
from cds_service.clinical.record_builder import OBSERVATION_KEY, OBSERVATION_STUB
from cds_service.clinical.settings import TopicSettings
from cds_service.clinical.sources import cite
from cds_service.clinical.terminology import LOINC, SNOMED, Terminology
from cds_service.data.prefetch import PrefetchSpec
from cds_service.data.sieve import Sieve
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.models import (
    EncounterStartContext,
    Hook,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
)
from cds_service.registry import HandlerResult, HookCall, Registry, ServiceDefinition
from cds_service.settings import Settings
from cds_service.smart_settings import SmartSettings

__all__ = ["RECORD_TYPES", "SERVICE_ID", "SERVICE_IDS", "WorkupService", "prefetch_templates", "register"]

SERVICE_ID = "fasciculation-workup"  # patient-view; the id every release so far published
SERVICE_IDS: dict[str, str] = {  # Hook members are str: looked up by either
    Hook.PATIENT_VIEW: SERVICE_ID,
    Hook.ORDER_SELECT: "fasciculation-order-select",
    Hook.ORDER_SIGN: "fasciculation-order-sign",
}
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
# Page size asked of the FHIR server (it may cap it lower; every page is followed). Measured on a
# 7,900-resource Synthea patient (docs/alert-burden.md): one page of 814 labs instead of five, and
# no ``_sort=-date``, which took SEKMET 94 s for the lab search (1.4 s without). The record orders
# results itself, and a search cut off at the page cap is reported incomplete, never used as whole,
# so server-side order buys nothing.
PAGE = "&_count=1000"


def _chunks(prefix: str, codes: list[str], limit: int) -> list[str]:
    """Split ``prefix + code1,code2,...`` into URLs no longer than ``limit``."""
    out: list[str] = []
    current: list[str] = []
    for code in codes:
        candidate = prefix + ",".join([*current, code]) + PAGE
        if current and len(candidate) > limit:
            out.append(prefix + ",".join(current) + PAGE)
            current = []
        current.append(code)
    if current:
        out.append(prefix + ",".join(current) + PAGE)
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
    # Questionnaire scores read like results but searched on their own (issue 17: PHQ-2), so the
    # lab code search stays one URL under 2,000 characters. A code search: cheap for the server.
    surveys = sorted(
        {c.code for k in t.concepts.values() if k.category == "survey" for c in k.codes if c.system == LOINC}
    )
    lab_urls = _chunks(f"Observation?patient={PATIENT}&code=", [f"{LOINC}|{c}" for c in labs], MAX_URL)
    finding_urls = _chunks(
        f"Observation?patient={PATIENT}&code=", [f"{SNOMED}|{c}" for c in findings], MAX_URL
    )
    specs = [
        PrefetchSpec("patient", f"Patient/{PATIENT}", required=False),
        PrefetchSpec("conditions", f"Condition?patient={PATIENT}{PAGE}", required=True, all_pages=True),
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
    if surveys:
        codes = ",".join(f"{LOINC}|{c}" for c in surveys)
        specs.append(
            PrefetchSpec("screens", f"Observation?patient={PATIENT}&code={codes}{PAGE}")
        )
    specs += [
        PrefetchSpec("serviceRequests", f"ServiceRequest?patient={PATIENT}{PAGE}", all_pages=True),
        PrefetchSpec("procedures", f"Procedure?patient={PATIENT}{PAGE}", all_pages=True),
        PrefetchSpec("reports", f"DiagnosticReport?patient={PATIENT}{PAGE}", all_pages=True),
        PrefetchSpec(
            "medications",
            f"MedicationRequest?patient={PATIENT}&status=active,on-hold{PAGE}",
            all_pages=True,
        ),
        # Issue 19: a corticosteroid taper shows only once the course is over (seed 002), so finished
        # prescriptions are searched too; a code filter would miss text-only medications.
        PrefetchSpec(
            "endedMedications",
            f"MedicationRequest?patient={PATIENT}&status=completed,stopped{PAGE}",
            all_pages=True,
        ),
        PrefetchSpec(
            "appointments", f"Appointment?patient={PATIENT}&status=proposed,pending,booked&_count=50"
        ),
        # Ankle-brachial index results carry local codes (no LOINC exists); they live in exam/procedure.
        PrefetchSpec(
            "exams", f"Observation?patient={PATIENT}&category=exam,procedure{PAGE}"
        ),
    ]
    return tuple(specs)


class WorkupService:
    """The hook handlers of the topic, around one ``Topic`` built at start-up."""

    def __init__(
        self, settings: TopicSettings | Topic | None = None, smart_launch_url: str | None = None
    ) -> None:
        self.topic = settings if isinstance(settings, Topic) else Topic(settings)
        self.t = self.topic.t
        self.catalogue = self.topic.catalogue
        self.smart_launch_url = smart_launch_url  # cards' smart link target (None: no smart links)

    def by_type(self, call: HookCall) -> dict[str, list[dict[str, Any]]]:
        """The gathered resources of the types the record reads, each once per id."""
        return collect(key.resources for key in call.data.keys.values())

    def situation(self, call: HookCall) -> Situation:
        """The hook call in the topic's terms, from the *typed* context (drafts read defensively:
        ``draftOrders`` from real clients is often not valid FHIR)."""
        ctx = call.context
        if not isinstance(
            ctx, PatientViewContext | OrderSelectContext | OrderSignContext | EncounterStartContext
        ):
            raise TypeError(f"no typed context for hook {call.request.hook!r}")
        drafts = (
            read_drafts(self.t, ctx.draftOrders)
            if isinstance(ctx, OrderSelectContext | OrderSignContext)
            else []
        )
        selections = frozenset(ctx.selections) if isinstance(ctx, OrderSelectContext) else frozenset()
        return Situation(
            hook=Hook(call.request.hook),
            now=call.now,
            patient_id=ctx.patientId,
            user_ref=ctx.userId,
            drafts=drafts,
            selections=selections,
            missing=[f"{k} ({call.data.keys[k].problem})" for k in call.data.missing],
            base_url=call.base_url,
            smart_launch_url=self.smart_launch_url,
        )

    async def handle(self, call: HookCall) -> HandlerResult:
        """Every hook of the topic: the same pipeline, the moment decides which rules speak.
        Override memory (a database query) is loaded only for a patient in scope: out of scope
        the answer is no card whatever the memory holds."""
        resources = self.by_type(call)
        situation = self.situation(call)
        scoped = self.topic.in_scope(resources, situation)
        if scoped:
            situation = dataclasses.replace(situation, snoozes=await call.remembered())
        assessment = self.topic.assess(resources, situation, scoped=scoped)
        cut = call.data.incomplete_required
        if not assessment.in_scope and cut:
            # The fasciculation may be on a page we could not get: never a silent "none" (issue 17).
            detail = "; ".join(f"'{r.key}': {r.problem}" for r in cut)
            raise PreconditionFailed(f"Required FHIR data are incomplete: {detail}")
        return HandlerResult(assessment.response(), assessment.records(), assessment.snoozed)

    # ------------------------------------------------------------------ evidence pages

    def page(self, card_id: str) -> str:
        kind = self.catalogue.kinds[card_id]
        rule = next(r for r in self.topic.rules if r.id == kind.rule)
        quotes = [*rule.seeds, *((e["seed"], e["quote"]) for e in kind.evidence)]
        items = "".join(
            f"<li><q>{html.escape(q)}</q> <small>({html.escape(cite(s))})</small></li>" for s, q in quotes
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


# Title and description of the service at each moment (discovery).
MOMENT_TEXT: dict[Moment, tuple[str, str]] = {
    Moment.CHART: (
        "Fasciculation work-up",
        "Checks the work-up of muscle fasciculations when a chart is opened: red flags needing urgent EMG and "
        "neurology, missing first-tier labs, abnormal results, drug causes, screening and follow-up. Silent "
        "for patients without fasciculation.",
    ),
    **{
        moment: (
            "Fasciculation work-up: order checks",
            f"Checks orders {when} for a patient with fasciculations: duplicate or repeat EMG, "
            "cyclobenzaprine, lumbar MRI and brain imaging appropriateness, compression stockings with a low "
            "ankle-brachial index, and red flags without EMG/neurology ordered. Accepts R4, STU3 and DSTU2 "
            "draft orders.",
        )
        for moment, when in (
            (Moment.SELECTING, "as orders are selected"),
            (Moment.SIGNING, "before orders are signed"),
        )
    },
}
USAGE = (
    "FHIR R4. Conditions and the Observation searches are required (prefetch or fhirServer access); orders, "
    "procedures, reports, medications, appointments and exam observations are optional and their absence is "
    "stated on the cards."
)


def register(registry: Registry, settings: Settings, topic: Topic | None = None) -> None:
    """One id per hook the topic serves (``SERVICE_IDS``; a hook added later gets
    ``fasciculation-<hook>``); they share data needs and rules. The former shared id stays a
    deprecated alias of the order hooks for one release. The topic reads its own settings
    (``TopicSettings``) from the environment; of the core ``settings`` only the public base URL is
    read, for the cards' SMART-app link."""
    svc = WorkupService(topic, smart_launch_url(settings))
    prefetch = prefetch_templates(svc.t)
    sieve = Sieve(
        key={"Observation": OBSERVATION_KEY},
        stub={"Observation": OBSERVATION_STUB},
        keep=svc.topic.builder.observation_can_matter,
    )
    for hook, moment in svc.topic.hook_moments.items():
        title, description = MOMENT_TEXT[moment]
        service_id = SERVICE_IDS.get(hook, f"fasciculation-{hook.value}")
        registry.add(
            ServiceDefinition(
                id=service_id,
                hook=hook,
                title=title,
                description=description,
                handler=svc.handle,
                prefetch=prefetch,
                usage_requirements=USAGE,
                sieve=sieve,
            )
        )
        if service_id != SERVICE_ID:
            registry.add_alias(SERVICE_ID, hook, service_id)  # deprecated: one release
    registry.pages["index"] = svc.index
    registry.education[education.SLUG] = education.page
    for card_id in svc.catalogue.kinds:
        registry.pages[card_id] = functools.partial(_page, svc, card_id)


def smart_launch_url(settings: Settings) -> str | None:
    """Where a card's ``smart`` link points: the SMART app's launch endpoint, only when the service
    knows its public base URL (an EHR must reach it) and the app is enabled (an EHR allow-listed,
    ``CDS_SMART_ALLOWED_ISS``). Read from the plain settings module, never the app's package (which
    imports this topic)."""
    public = settings.public_base_url
    return f"{public.rstrip('/')}/smart/launch" if public and SmartSettings().enabled else None


def _page(svc: WorkupService, card_id: str, _base: str) -> str:
    return svc.page(card_id)
