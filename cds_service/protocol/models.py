"""CDS Hooks 2.0.1 wire models.

Requests are parsed leniently (``extra="allow"``): unknown fields, vendor extensions and 1.0-era
requests must never cause a 4xx, and ``draftOrders`` stays raw JSON because drafts from real clients
(the public Sandbox among them) are often not valid FHIR. Responses are strict (``extra="forbid"``)
and serialised without ``None``; ``protocol.validate`` checks the invariants pydantic cannot express.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

JSONObject = dict[str, Any]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- requests


class FhirAuthorization(_Lenient):
    """OAuth bearer token for the service to call ``fhirServer``; transient, never logged or stored."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:  # the token must not leak through a repr in a log or traceback
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r}, access_token=***)"

    __str__ = __repr__


class HookRequest(_Lenient):
    """The body of ``POST /cds-services/{id}``; ``context`` is validated per hook by the registry."""

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: JSONObject
    prefetch: dict[str, Any] | None = None
    extension: JSONObject | None = None


class Hook(StrEnum):
    """The hooks whose context this service knows; declared once, used everywhere a hook is named.

    A request may still name any hook (``HookRequest.hook`` is a plain string): a hook not listed
    here gets ``GenericContext``, and the registry answers 400 if no service serves it. Each member
    has its context model in ``CONTEXT_MODELS`` below (checked at import).
    """

    PATIENT_VIEW = "patient-view"
    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"
    ENCOUNTER_START = "encounter-start"

    @property
    def context_model(self) -> type[BaseModel]:
        return CONTEXT_MODELS[self]


class PatientViewContext(_Lenient):
    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = None


class OrderSelectContext(_Lenient):
    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = None
    selections: list[str]
    draftOrders: JSONObject


class OrderSignContext(_Lenient):
    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = None
    draftOrders: JSONObject


class EncounterStartContext(_Lenient):
    """encounter-start (hooks library, v1): the user starts an encounter with the patient."""

    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str = Field(min_length=1)


class GenericContext(_Lenient):
    """Context of a hook without a typed model: kept as sent."""


HookContext = PatientViewContext | OrderSelectContext | OrderSignContext | EncounterStartContext

CONTEXT_MODELS: dict[Hook, type[BaseModel]] = {
    Hook.PATIENT_VIEW: PatientViewContext,
    Hook.ORDER_SELECT: OrderSelectContext,
    Hook.ORDER_SIGN: OrderSignContext,
    Hook.ENCOUNTER_START: EncounterStartContext,
}
if set(CONTEXT_MODELS) != set(Hook):  # a hook without its context model is a programming error
    raise RuntimeError(f"hooks without a context model: {sorted(set(Hook) - set(CONTEXT_MODELS))}")


def context_model_of(hook: str) -> type[BaseModel]:
    """Typed context of a known hook; any other hook gets the lenient generic context."""
    try:
        return CONTEXT_MODELS[Hook(hook)]
    except ValueError:
        return GenericContext


# --------------------------------------------------------------------------- feedback


class Coding(_Strict):
    """A Coding as CDS Hooks uses it (topic, override reasons)."""

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str | None = None


def _storable(value: str) -> str:
    """Text a database column can hold: Postgres refuses NUL in text, and a lone surrogate is not
    UTF-8. Refused here (400 naming the field) rather than by the database (a 500 on every retry)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


# Feedback text, with the lengths of the columns it is stored in (storage/tables.py): an over-long
# value is a 400 naming the field, never a database error.
StoredText = Annotated[str, AfterValidator(_storable)]
CARD_MAX, CODE_MAX, SYSTEM_MAX, DISPLAY_MAX, ID_MAX, TIMESTAMP_MAX = 200, 200, 500, 500, 200, 64


class InCoding(_Lenient):
    """A Coding as clients send it back in feedback: the Sandbox omits ``display``."""

    system: StoredText | None = Field(None, max_length=SYSTEM_MAX)
    code: StoredText | None = Field(None, max_length=CODE_MAX)
    display: StoredText | None = Field(None, max_length=DISPLAY_MAX)


class AcceptedSuggestion(_Lenient):
    id: StoredText = Field(min_length=1, max_length=ID_MAX)


class OverrideReason(_Lenient):
    reason: InCoding | None = None
    userComment: StoredText | None = None


class FeedbackItem(_Lenient):
    card: StoredText = Field(min_length=1, max_length=CARD_MAX)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: StoredText = Field(min_length=1, max_length=TIMESTAMP_MAX)


class FeedbackRequest(_Lenient):
    feedback: list[FeedbackItem] = Field(min_length=1)


# --------------------------------------------------------------------------- responses


class Source(_Strict):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Strict):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: JSONObject | None = None
    resourceId: str | None = None


class Suggestion(_Strict):
    label: str = Field(min_length=1)
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Strict):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Strict):
    uuid: str | None = None
    summary: str = Field(min_length=1)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None
    extension: JSONObject | None = None  # spec 2.0 "Extensions": namespaced, reverse-domain keys


class CdsResponse(_Strict):
    cards: list[Card] = Field(default_factory=list)
    systemActions: list[Action] | None = None


class ServiceDescriptor(_Strict):
    """One entry of the discovery document."""

    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None
    extension: JSONObject | None = None


class DiscoveryResponse(_Strict):
    services: list[ServiceDescriptor]


def dump(model: BaseModel) -> JSONObject:
    """Wire form of a response model: no ``None`` anywhere, as the spec requires."""
    return model.model_dump(mode="json", exclude_none=True)
