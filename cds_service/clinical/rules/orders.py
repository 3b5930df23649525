"""Checks on orders being selected or signed: duplicates (R08), repeat EMG in stable BFS (R09),
cyclobenzaprine (R10), imaging appropriateness (R15a/R15b) and compression with a low ABI (R16).

Each looks only at the drafts in focus (``ctx.drafts``: the selections on order-select, every draft
on order-sign) and offers to delete the offending draft, never to order a drug.
"""

from __future__ import annotations

from datetime import timedelta

from cds_service.clinical import emg as emg_report
from cds_service.clinical.drafts import Draft
from cds_service.clinical.moments import ALWAYS, ORDERING, Moment
from cds_service.clinical.record_model import Order, PatientRecord
from cds_service.clinical.rules.base import (
    BULBAR,
    EMG,
    TRIGGERS,
    UMN,
    Basis,
    Hit,
    RuleContext,
    Suggest,
    fmt_date,
    rule,
)
from cds_service.clinical.rules.workup import test_status
from cds_service.clinical.terminology import terminology

S000 = "000_bc010253c106cbbd.txt"
S002 = "002_0d1c86e06a6f96ad.txt"
IMAGING = ("ct_head", "mri_brain", "mri_lumbar_spine")
IMAGING_RECENT_DAYS = 30


def _existing(rec: PatientRecord, ctx: RuleContext, concept: str, draft: Draft) -> str | None:
    """Why an order for ``concept`` would duplicate one already on file, or None."""
    others = [o for o in rec.orders if o.ref != draft.ref and concept in o.concepts]
    pending = [o for o in others if o.pending and o.status != "draft"]
    if pending:
        o = max(pending, key=lambda x: x.when or ctx.now)
        return f"{o.label}: already ordered {fmt_date(o.when)} (status {o.status})"
    if terminology().concept(concept).category == "lab":
        state, item = test_status(rec, ctx, concept)
        when = getattr(item, "when", None)
        if state == "done":
            return f"resulted {fmt_date(when)}, within the {ctx.lookback(concept)}-day look-back"
        if state == "pending":
            return f"result pending since {fmt_date(when)}"
    if concept in IMAGING:
        recent = [
            o for o in others if o.done and o.when and o.when >= ctx.now - timedelta(days=IMAGING_RECENT_DAYS)
        ]
        if recent:
            return f"{recent[0].label}: done {fmt_date(recent[0].when)}"
    return None


@rule(
    "R08",
    "EMG/NCS pending (patient-view) / duplicate order (order hooks)",
    ALWAYS,
    "patient-view: an EMG/NCS order is pending and no other card already says so (cards that would order EMG "
    "show the pending order instead); order hooks: a draft EMG/NCS, lab or imaging order duplicates one already "
    "active or on hold, or a lab resulted within its look-back (warning, with a suggestion deleting the draft)",
    ((S000, "Do not order routine repeat EMG in stable BFS"),),
    rank=180,
)
def r08_pending_or_duplicate(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if ctx.moment is Moment.CHART:
        pending = rec.pending_order(*EMG)
        if pending is None or any(r in ctx.fired for r in ("R01", "R06")):
            return None
        return Hit(
            "R08",
            "emg-pending",
            "info",
            [Basis.of(pending)],
            values={"date": fmt_date(pending.when), "status": pending.status},
        )
    hit = Hit("R08", "duplicate-order", "warning")
    duplicates = []
    for draft in ctx.drafts:
        for concept in sorted(draft.concepts):
            category = terminology().concept(concept).category
            if concept not in EMG and concept not in IMAGING and category != "lab":
                continue
            reason = _existing(rec, ctx, concept, draft)
            if reason:
                hit.lines.append(f"{draft.label}: {reason}.")
                duplicates.append(draft)
                break
    if not duplicates:
        return None
    hit.remove(duplicates)
    hit.values["what"] = duplicates[0].label if len(duplicates) == 1 else f"{len(duplicates)} draft orders"
    return hit


def _prior_emg(rec: PatientRecord) -> tuple[Order | None, Order | None]:
    """(latest completed EMG of any kind, its report if there is one)."""
    done = rec.done_orders(*EMG)
    reports = [o for o in done if o.kind == "DiagnosticReport"]
    return (done[0] if done else None), (reports[0] if reports else None)


def _normal(report: Order) -> bool:
    """Only a report the shared classifier reads as normal; indeterminate is never normal."""
    return emg_report.classify(report) == emg_report.NORMAL


@rule(
    "R09",
    "Repeat EMG in stable benign fasciculations",
    ORDERING,
    "a draft EMG/NCS, a prior EMG whose report is normal (conclusion code Normal, or text such as 'fasciculation "
    "potentials only' without fibrillations, positive sharp waves or neurogenic change), and no new weakness, "
    "atrophy, UMN or bulbar sign and no CK above 1000 U/L recorded since",
    (
        (
            S000,
            "Do not order routine repeat EMG in stable BFS—this reinforces patient anxiety and provides no "
            "additional diagnostic value when the clinical examination remains normal",
        ),
        (
            S000,
            "Repeat EMG is only indicated if new symptoms develop (weakness, atrophy, dysphagia, dysarthria) "
            "that suggest progression to motor neuron disease",
        ),
    ),
    suppressed_when="a critical card (R01-R03) fired",
    rank=250,
    yields_to_critical=True,
)
def r09_repeat_emg(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    drafts = [d for d in ctx.drafts if d.concepts & set(EMG)]
    latest, report = _prior_emg(rec)
    if not drafts or latest is None or report is None or not _normal(report):
        return None
    since = report.when or latest.when
    if since is None:
        return None
    new_signs = [
        f
        for f in rec.has("muscle_weakness", "muscle_atrophy", *UMN, *BULBAR)
        if f.objective and f.when and f.when > since
    ]
    high_ck = [
        r for r in rec.results("ck") if r.when and r.when > since and r.value is not None and r.value > 1000
    ]
    if new_signs or high_ck:
        return None
    stable = ctx.now - since >= timedelta(days=182)
    hit = Hit("R09", "repeat-emg-stable" if stable else "repeat-emg-early", "warning", [Basis.of(report)])
    hit.values["date"] = fmt_date(since)
    hit.remove(drafts)
    return hit


@rule(
    "R10",
    "Cyclobenzaprine for fasciculations",
    ORDERING,
    "a draft cyclobenzaprine order without an acute painful musculoskeletal condition (muscle spasm, strain, "
    "sprain), or with fasciculation as its reason (warning, delete suggestion); with such a condition, an "
    "info card when more than 21 days are requested",
    (
        (
            S002,
            "Cyclobenzaprine is NOT indicated for benign fasciculations, as it is FDA-approved only for muscle "
            "spasm associated with acute, painful musculoskeletal conditions",
        ),
        (S002, "Use should be limited to 2-3 weeks maximum when prescribed for any indication"),
    ),
    rank=260,
)
def r10_cyclobenzaprine(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    drafts = [d for d in ctx.drafts if "cyclobenzaprine" in d.concepts]
    if not drafts:
        return None
    msk = rec.has("acute_msk_spasm")
    for_fasciculation = any(d.reason_concepts & set(TRIGGERS) for d in drafts)
    if not msk or for_fasciculation:
        hit = Hit("R10", "cyclobenzaprine-not-indicated", "warning")
        hit.remove(drafts)
        return hit
    long = [d for d in drafts if d.supply_days is not None and d.supply_days > 21]
    if not long:
        return None
    hit = Hit("R10", "cyclobenzaprine-duration", "info", [Basis.of(f) for f in msk])
    hit.values["days"] = f"{max(d.supply_days or 0 for d in long):g}"
    return hit


@rule(
    "R15a",
    "MRI lumbar spine without radicular pain or UMN signs",
    ORDERING,
    "a draft MRI of the lumbar spine for a patient with fasciculation and neither radiculopathy/sciatica nor an "
    "upper-motor-neuron sign on file (low back pain alone does not qualify)",
    (
        (
            S000,
            "MRI of the lumbar spine is only indicated if back pain radiating down the leg in a dermatomal "
            "pattern suggests radiculopathy, or if upper motor neuron signs are present",
        ),
    ),
    rank=270,
)
def r15a_mri_lumbar(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    drafts = [d for d in ctx.drafts if "mri_lumbar_spine" in d.concepts]
    if not drafts or rec.has("radiculopathy", "root_compression") or rec.has(*UMN):
        return None
    hit = Hit("R15a", "mri-lumbar-not-indicated", "warning", [Basis.of(f) for f in rec.has("low_back_pain")])
    hit.remove(drafts)
    return hit


@rule(
    "R15b",
    "Brain imaging for isolated fasciculations",
    ORDERING,
    "a draft CT head or MRI brain for fasciculation with no other neurological finding (weakness, numbness, "
    "dysarthria, dysphagia, UMN sign, myokymia, recent stroke)",
    (
        (
            S000,
            "Brain imaging is not routinely needed for isolated fasciculations without other neurological symptoms",
        ),
    ),
    rank=280,
)
def r15b_brain_imaging(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    drafts = [d for d in ctx.drafts if d.concepts & {"ct_head", "mri_brain"}]
    if not drafts:
        return None
    other = rec.has(
        "muscle_weakness",
        "numbness_paresthesia",
        "muscle_atrophy",
        "myokymia",
        "stroke",
        "multiple_sclerosis",
        "structural_motor_lesion",  # seed 003: brainstem/cord lesions (issue 19)
        *BULBAR,
        *UMN,
    )
    if other:
        return None
    hit = Hit("R15b", "brain-imaging-isolated", "info")
    hit.values["what"] = drafts[0].label
    return hit


@rule(
    "R16",
    "Compression stockings and the ankle-brachial index",
    ORDERING,
    "a draft for compression stockings (matched by text: no verified code exists) and an ankle-brachial index "
    "below 0.6 within 730 days (warning, delete suggestion); with no ABI on file but known PAD, or age 50 or "
    "more with a vascular risk factor, an info card suggesting an ABI",
    (
        (S002, "Avoid compression if ankle-brachial index is <0.6"),
        (S002, "compression stockings (20-30 mmHg) may provide symptomatic relief for calf discomfort"),
    ),
    rank=290,
)
def r16_compression(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    drafts = [d for d in ctx.drafts if "compression_stockings" in d.concepts]
    if not drafts:
        return None
    abi = [r for r in rec.results("abi_result", ctx.lookback("abi_result")) if r.value is not None]
    if abi:
        lowest = min(abi, key=lambda r: r.value or 0.0)
        if lowest.value is not None and lowest.value < 0.6:
            hit = Hit(
                "R16",
                "compression-low-abi",
                "warning",
                [Basis.of(lowest)],
                values={"abi": f"{lowest.value:g}"},
            )
            hit.remove(drafts)
            return hit
        return None
    at_risk = rec.has("peripheral_artery_disease") or (
        rec.age is not None and rec.age >= 50 and rec.has("pad_risk_factors", "diabetes")
    )
    if not at_risk or rec.pending_order("abi_test", "abi_result"):
        return None
    return Hit("R16", "compression-check-abi", "info", suggest=[Suggest("abi_test", "routine", True)])
