"""Card catalogue (``cards/*.yaml``, edited by clinicians) and the renderer that turns a rule hit
into a CDS Hooks card with FHIR ``ServiceRequest`` suggestions.

Templates use ``{name}`` placeholders filled from the hit's values. Anything that came from the
EHR (labels of conditions, results, orders) is escaped before it enters Markdown, because some
clients (the public Sandbox among them) render raw HTML inside ``detail``. Every suggested resource
is validated with the fhir.resources R4B model before it is sent, and only codes of high or medium
confidence are ever emitted. The validation is split so it stays exact but cheap (docs/performance.md):
the part of a suggestion that comes from the catalogue and the terminology is validated once per
distinct shape, the part that comes from the request (patient, user, reason, time) once per response.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cds_service.clinical.rules import RULES, Hit
from cds_service.clinical.rules.base import Suggest, fmt_date
from cds_service.clinical.terminology import Code, Terminology
from cds_service.protocol.models import Action, Card, Coding, Link, Source, Suggestion

TOPIC_SYSTEM = "urn:cds-fasciculation:topic"
OVERRIDE_SYSTEM = "urn:cds-fasciculation:override-reason"
SOURCE_LABEL = "Fasciculation work-up CDS"
# The card extension (CDS Hooks 2.0 "Extensions": a namespaced JSON object) that carries, machine-
# readably, the rule and catalogue entry behind each card; feedback analytics and tests read it.
CARD_EXTENSION = "org.cds-fasciculation.card"
MAX_SUMMARY = 139
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")
LAB_CATEGORY = {"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}
IMAGING_CATEGORY = {"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}
IMAGING = frozenset({"ct_head", "mri_brain", "mri_lumbar_spine"})
# The elements of a suggested ServiceRequest that come from the request rather than from the
# catalogue, with the valid stand-ins used while validating the rest of the resource.
PER_REQUEST: dict[str, Any] = {
    "subject": {"reference": "Patient/p"},
    "authoredOn": "2026-01-01T00:00:00+00:00",
    "requester": {"reference": "Practitioner/p"},
    "reasonReference": [{"reference": "Condition/p"}],
}
# Cards that open the SMART companion app (docs/smart-app.md), and the section each opens.
SMART_SECTIONS = {
    "R01": "red-flags",
    "R02": "red-flags",
    "R03": "red-flags",
    "R04": "workup",
    "R06": "emg",
    "R08": "emg",
    "R09": "emg",
    "R21": "emg",
}
SHAPE_MEMO_SIZE = 4096  # distinct suggestion shapes remembered as valid (the catalogue has < 200)


def default_cards_dir() -> Path:
    """``CDS_CARDS_DIR``, else ``cards/`` beside the package's source tree."""
    env = os.environ.get("CDS_CARDS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "cards"


def md_escape(text: str) -> str:
    """Neutralise HTML and Markdown in untrusted text (EHR labels) before it enters ``detail``."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


Indicator = Literal["info", "warning", "critical"]


class _Spec(BaseModel):
    """Strict: an unknown or misspelt key in a card file fails start-up instead of being ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeSpec(_Spec):
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)


class EvidenceSpec(_Spec):
    seed: str = Field(min_length=1)
    quote: str = Field(min_length=1)


class LinkSpec(_Spec):
    label: str = Field(min_length=1)
    # Absolute, or a path on this service (e.g. /education/fasciculations) made absolute with the
    # service's public base URL when the card is rendered.
    url: str = Field(pattern=r"^(https?://|/[a-z])")


class CardSpec(_Spec):
    """One file of ``cards/``: what clinicians edit, validated once at start-up."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    rule: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    # The indicators this card can carry, the usual one first; a rule may raise a card's severity
    # (R13: info, warning when electrolytes are low) only to one listed here.
    indicator: Indicator | list[Indicator]
    summary: str = Field(min_length=1)
    detail: str = Field(min_length=1)
    topic: CodeSpec
    selection: Literal["any", "at-most-one"] = "any"
    order_all: bool = False
    suggestions: dict[str, str] = Field(default_factory=dict)
    override_reasons: list[CodeSpec] = Field(default_factory=list)
    evidence: list[EvidenceSpec] = Field(default_factory=list)
    links: list[LinkSpec] = Field(default_factory=list)

    @property
    def indicators(self) -> tuple[str, ...]:
        return (self.indicator,) if isinstance(self.indicator, str) else tuple(self.indicator)


class CatalogueError(ValueError):
    """A card file that does not fit ``CardSpec``; the message names the file and the key."""


def _spec_of(path: Path) -> CardSpec:
    try:
        raw = yaml.safe_load(path.read_text())
        return CardSpec.model_validate(raw)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"cards/{path.name}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: "
            + ("unknown key (not part of a card; misspelt?)" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors(include_url=False)
        )
        raise CatalogueError(f"cards/{path.name}: {problems}") from None


@dataclass(frozen=True)
class CardKind:
    id: str
    rule: str
    indicator: str  # the usual one
    summary: str
    detail: str
    topic: dict[str, str]
    selection: str = "any"
    order_all: bool = False
    suggestion_labels: dict[str, str] = field(default_factory=dict)
    override_reasons: tuple[dict[str, str], ...] = ()
    evidence: tuple[dict[str, str], ...] = ()
    links: tuple[dict[str, str], ...] = ()
    path: str = ""
    indicators: tuple[str, ...] = ()  # every indicator the card may carry (``indicator`` first)

    @classmethod
    def of(cls, spec: CardSpec, path: str) -> CardKind:
        return cls(
            id=spec.id,
            rule=spec.rule,
            indicator=spec.indicators[0],
            summary=spec.summary.strip(),
            detail=spec.detail.strip(),
            topic=spec.topic.model_dump(),
            selection=spec.selection,
            order_all=spec.order_all,
            suggestion_labels=dict(spec.suggestions),
            override_reasons=tuple(r.model_dump() for r in spec.override_reasons),
            evidence=tuple(e.model_dump() for e in spec.evidence),
            links=tuple(link.model_dump() for link in spec.links),
            path=path,
            indicators=spec.indicators,
        )


class Catalogue:
    """All card kinds, loaded once at start-up and checked against the rules."""

    def __init__(self, kinds: dict[str, CardKind]) -> None:
        self.kinds = kinds

    @classmethod
    def load(cls, directory: Path | None = None) -> Catalogue:
        directory = directory or default_cards_dir()
        kinds: dict[str, CardKind] = {}
        for path in sorted(directory.glob("*.yaml")):
            kind = CardKind.of(_spec_of(path), path.name)
            if kind.id in kinds:
                raise CatalogueError(f"cards/{path.name}: duplicate card id {kind.id}")
            kinds[kind.id] = kind
        if not kinds:
            raise CatalogueError(f"no card kinds in {directory}")
        return cls(kinds)

    def for_rule(self, rule_id: str) -> list[CardKind]:
        return [k for k in self.kinds.values() if k.rule == rule_id]


@dataclass
class RenderContext:
    patient_id: str
    user_ref: str | None
    now: datetime
    base_url: str
    intent: str
    reason_condition: str | None  # "Condition/x" of the fasciculation, for reasonReference
    missing: list[str]
    smart_launch_url: str | None = None  # set only with a public base URL and the app configured


def fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


class Renderer:
    def __init__(self, catalogue: Catalogue, term: Terminology) -> None:
        self.catalogue = catalogue
        self.t = term
        self.seeds = {r.id: r.seeds for r in RULES}
        self._valid_shapes: set[bytes] = set()
        self._valid_request_part: bytes | None = None

    def render(self, hit: Hit, rc: RenderContext) -> Card:
        kind = self.catalogue.kinds[hit.card]
        if hit.indicator not in kind.indicators:
            raise CatalogueError(
                f"rule {hit.rule} gave card {kind.id} the indicator {hit.indicator}; "
                f"cards/{kind.path} declares {list(kind.indicators)}"
            )
        values = {k: md_escape(v) for k, v in hit.values.items()}
        summary = fill(kind.summary, hit.values)
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 1].rstrip() + "…"
        suggestions = [
            Suggestion(
                label=f"Remove the draft order: {label}"[:200],
                uuid=str(uuid.uuid4()),
                isRecommended=True,
                actions=[Action(type="delete", description=f"Remove draft order {label}", resourceId=ref)],
            )
            for ref, label in hit.delete
        ]
        suggestions += [s for s in (self._suggestion(kind, sg, rc) for sg in hit.suggest) if s is not None]
        if kind.order_all and len(suggestions) > 1:
            actions = [a for s in suggestions for a in s.actions or ()]
            suggestions.append(
                Suggestion(
                    label=f"Order all {len(actions)} tests listed here",
                    uuid=str(uuid.uuid4()),
                    actions=actions,
                )
            )
        if kind.selection == "at-most-one":
            seen = False
            for s in suggestions:
                if s.isRecommended and seen:
                    s.isRecommended = None
                seen = seen or bool(s.isRecommended)
        return Card(
            uuid=str(uuid.uuid4()),
            summary=summary,
            detail=self._detail(kind, hit, values, rc),
            indicator=hit.indicator,
            source=Source(
                label=SOURCE_LABEL,
                url=f"{rc.base_url}/evidence",
                topic=Coding(system=TOPIC_SYSTEM, code=kind.topic["code"], display=kind.topic["display"]),
            ),
            suggestions=suggestions or None,
            selectionBehavior=kind.selection if suggestions else None,
            overrideReasons=[
                Coding(system=OVERRIDE_SYSTEM, code=r["code"], display=r["display"])
                for r in kind.override_reasons
            ]
            or None,
            links=[
                Link(
                    label="Why this card: rule, evidence and codes",
                    url=f"{rc.base_url}/evidence/{kind.id}",
                    type="absolute",
                ),
                *(
                    Link(
                        label=link["label"],
                        url=f"{rc.base_url}{link['url']}" if link["url"].startswith("/") else link["url"],
                        type="absolute",
                    )
                    for link in kind.links
                ),
                *(
                    [
                        Link(
                            label="Open the whole work-up (SMART app)",
                            url=rc.smart_launch_url,
                            type="smart",
                            appContext=SMART_SECTIONS[hit.rule],
                        )
                    ]
                    if rc.smart_launch_url and hit.rule in SMART_SECTIONS
                    else []
                ),
            ],
            extension={
                CARD_EXTENSION: {
                    "rule": hit.rule,
                    "card": kind.id,
                    **({"snoozed": list(hit.snoozed)} if hit.snoozed else {}),
                }
            },
        )

    def _detail(self, kind: CardKind, hit: Hit, values: dict[str, str], rc: RenderContext) -> str:
        parts = [fill(kind.detail, values)]
        if hit.basis:
            lines = dict.fromkeys(  # a resource that matched twice (two concepts, merged hits) is cited once
                f"- {md_escape(b.text)} ({fmt_date(b.when)}; `{md_escape(b.ref)}`)" for b in hit.basis
            )
            parts.append("**Based on**\n\n" + "\n".join(lines))
        if hit.lines:
            parts.append("\n".join(f"- {md_escape(line)}" for line in hit.lines))
        if rc.missing:
            parts.append(
                "_Data that could not be obtained, so not considered: "
                + md_escape(", ".join(rc.missing))
                + "._"
            )
        parts.append(f"_Rule {hit.rule}; evidence and codes: see the linked page._")
        return "\n\n".join(parts)

    def _code(self, sg: Suggest) -> Code | None:
        concept = self.t.concept(sg.concept)
        if sg.code is not None:
            return next((c for c in concept.codes if c.code == sg.code and c.emittable), None)
        return concept.primary()

    def _suggestion(self, kind: CardKind, sg: Suggest, rc: RenderContext) -> Suggestion | None:
        concept = self.t.concept(sg.concept)
        code = None if sg.text_only else self._code(sg)
        if code is None and not sg.text_only:
            return None  # no emittable code: never send an unverified one
        label = sg.label or kind.suggestion_labels.get(sg.concept) or sg.text_only or f"Order {concept.label}"
        resource = self.service_request(sg, code, label, rc)
        action = Action(type="create", description=f"Create draft order: {label}", resource=resource)
        return Suggestion(
            label=label, uuid=str(uuid.uuid4()), isRecommended=sg.recommended or None, actions=[action]
        )

    def service_request(
        self, sg: Suggest, code: Code | None, label: str, rc: RenderContext
    ) -> dict[str, Any]:
        """A draft R4 ServiceRequest, validated with the R4B model before it leaves the service."""
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": rc.intent,
            "priority": sg.priority,
            "code": {"coding": [code.as_coding()], "text": label}
            if code
            else {"text": sg.text_only or label},
            "subject": {"reference": f"Patient/{rc.patient_id}"},
            "authoredOn": rc.now.isoformat(timespec="seconds"),
        }
        category = (
            LAB_CATEGORY
            if self.t.concept(sg.concept).category == "lab"
            else (IMAGING_CATEGORY if sg.concept in IMAGING else None)
        )
        if category:
            resource["category"] = [{"coding": [category]}]
        if rc.user_ref and re.match(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$", rc.user_ref):
            resource["requester"] = {"reference": rc.user_ref}
        if rc.reason_condition:
            resource["reasonReference"] = [{"reference": rc.reason_condition}]
        self._validate(resource)
        return resource

    def _validate(self, resource: dict[str, Any]) -> None:
        """``ServiceRequest.model_validate(resource)``, raising exactly when it would, at a fraction
        of the cost: R4B validates each element on its own (no rule relates the request's elements to
        the catalogue's), so the resource is valid exactly when its catalogue part (with stand-ins for
        the request's elements) and its request part (with the catalogue's required elements) are.
        Each part is validated once: the shapes are few and fixed, and every suggestion of one
        response shares the same request part."""
        shape = {k: PER_REQUEST.get(k, v) for k, v in resource.items()}
        shape_key = orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)
        if shape_key not in self._valid_shapes:
            ServiceRequest.model_validate(shape)
            if len(self._valid_shapes) >= SHAPE_MEMO_SIZE:
                self._valid_shapes.clear()
            self._valid_shapes.add(shape_key)
        request_part = {
            k: resource[k] for k in ("resourceType", "status", "intent", *PER_REQUEST) if k in resource
        }
        request_key = orjson.dumps(request_part)
        if request_key != self._valid_request_part:
            ServiceRequest.model_validate(request_part)
            self._valid_request_part = request_key
