"""Draft orders read defensively.

``draftOrders`` from real clients is often not valid FHIR: the public Sandbox sends DSTU2
``MedicationOrder`` against a DSTU2 server, drafts with no medication chosen yet, and ``category``
as a single object where R4 wants an array. Nothing here validates; it reads what it can
(``ServiceRequest``/``ProcedureRequest`` ``code``, ``DeviceRequest`` ``codeCodeableConcept``,
``MedicationRequest``/``MedicationOrder`` ``medicationCodeableConcept`` or a contained
``medicationReference``) and skips what it cannot. No draft can cause an error response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds_service.clinical.moments import Moment
from cds_service.clinical.record_builder import label_of, parse_when
from cds_service.clinical.terminology import Terminology
from cds_service.jsonshape import items, obj, string

ORDER_TYPES = frozenset(
    {
        "ServiceRequest",
        "ProcedureRequest",
        "DeviceRequest",
        "DeviceUseRequest",
        "MedicationRequest",
        "MedicationOrder",
    }
)
MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationOrder"})


@dataclass(frozen=True)
class Draft:
    ref: str  # "ServiceRequest/abc": what a delete suggestion names ("ServiceRequest/#2" without an id)
    has_id: bool  # only a draft with an id can be the target of a delete action
    kind: str
    concepts: frozenset[str]
    label: str
    reason_concepts: frozenset[str]
    supply_days: float | None  # requested duration (medications), None when not stated


def _texts(res: dict[str, Any]) -> list[str]:
    """Free text a clinician may have typed on the order (for concepts with no verified code)."""
    out = []
    for key in ("code", "codeCodeableConcept", "medicationCodeableConcept"):
        cc = res.get(key)
        if isinstance(cc, dict):
            out.append(label_of(cc, ""))
    for n in items(res.get("note")):
        if isinstance(n.get("text"), str):
            out.append(n["text"])
    for d in items(res.get("orderDetail")):
        out.append(label_of(d, ""))
    return [t for t in out if t]


def _supply_days(res: dict[str, Any]) -> float | None:
    dispense = res.get("dispenseRequest")
    if isinstance(dispense, dict):
        duration = dispense.get("expectedSupplyDuration")
        if isinstance(duration, dict) and isinstance(duration.get("value"), int | float):
            unit = str(duration.get("code") or duration.get("unit") or "d").lower()
            factor = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "weeks": 7, "mo": 30, "month": 30}.get(
                unit, 1
            )
            return float(duration["value"]) * factor
        period = dispense.get("validityPeriod")
        if isinstance(period, dict):
            start, end = parse_when(period.get("start")), parse_when(period.get("end"))
            if start and end:
                return (end - start).total_seconds() / 86400
    return None


def _medication_cc(res: dict[str, Any]) -> Any:
    cc = res.get("medicationCodeableConcept")
    if isinstance(cc, dict):
        return cc
    ref = obj(res.get("medicationReference")).get("reference")
    if isinstance(ref, str) and ref.startswith("#"):
        for c in items(res.get("contained")):
            if c.get("resourceType") == "Medication" and c.get("id") == ref[1:]:
                return c.get("code")
    return None


def read_drafts(term: Terminology, draft_orders: Any) -> list[Draft]:
    """Every readable draft order of a ``draftOrders`` Bundle (any FHIR version, any validity)."""
    if not isinstance(draft_orders, dict):
        return []
    entries = draft_orders.get("entry")
    if not isinstance(entries, list):
        return []
    drafts = []
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or string(res.get("resourceType")) not in ORDER_TYPES:
            continue
        kind = str(res["resourceType"])
        has_id = isinstance(res.get("id"), str) and bool(res.get("id"))
        rid = res["id"] if has_id else f"#{i}"
        concepts: set[str] = set()
        if kind in MEDICATION_TYPES:
            cc = _medication_cc(res)
            concepts |= term.match_drug(cc)
            label = label_of(cc, "medication not yet chosen")
        else:
            cc = res.get("code") if isinstance(res.get("code"), dict) else res.get("codeCodeableConcept")
            concepts |= term.match_cc(cc)
            label = label_of(cc, kind)
        for text in _texts(res):
            concepts |= term.match_text(text)
        reasons: set[str] = set()
        for rc in items(res.get("reasonCode")):
            reasons |= term.match_cc(rc, use_text=False)
        drafts.append(
            Draft(
                f"{kind}/{rid}",
                has_id,
                kind,
                frozenset(concepts),
                label,
                frozenset(reasons),
                _supply_days(res),
            )
        )
    return drafts


def focus(drafts: list[Draft], moment: Moment, selections: frozenset[str]) -> list[Draft]:
    """On order-select the checks look at the newly selected orders; on order-sign at them all.

    A client whose selections name nothing in draftOrders (seen with DSTU2 drafts) gets every draft
    checked: missing a warning is worse than repeating one.
    """
    if moment is not Moment.SELECTING or not selections:
        return drafts
    chosen = [d for d in drafts if d.ref in selections]
    return chosen or drafts
