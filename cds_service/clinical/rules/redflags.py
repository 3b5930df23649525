"""Critical pathways: motor red flags (R01), sudden onset with new deficit (R02), facial myokymia
(R02b) and the Guillain-Barre pattern (R03). These come first: when one fires, reassurance and
routine-therapy cards are suppressed (see engine)."""

from __future__ import annotations

import re
from datetime import timedelta

from cds_service.clinical import emg as emg_report
from cds_service.clinical.moments import ALWAYS, CHART, Moment
from cds_service.clinical.record_model import Fact, PatientRecord
from cds_service.clinical.rules.base import (
    BULBAR,
    EMG,
    UMN,
    Basis,
    Hit,
    RuleContext,
    Suggest,
    fmt_date,
    objective,
    rule,
)

S000 = "000_bc010253c106cbbd.txt"
S001 = "001_cfc4d0b4b68d0f69.txt"
S003 = "003_3a25f4dd8f7e133a.txt"
S004 = "004_43916d9a7c4a1785.txt"
NEW_DAYS = 7
RECENT_EMG_DAYS = 90  # an abnormal EMG this recent is not re-suggested by R01
GBS_DAYS = 28
# Focal deficits for R02: objective motor or speech signs; paraesthesia alone is not one.
FOCAL = ("muscle_weakness", "dysarthria", "dysphagia")
ASCENDING = re.compile(r"ascend|progressi|rapidly worsen", re.I)
EYELID = re.compile(r"eye ?lid|palpebr|orbicularis oculi", re.I)
PAEDIATRIC_NEUROLOGY = "Referral to paediatric neurology"


def _onset_within(facts: list[Fact], ctx: RuleContext, days: int) -> list[Fact]:
    """Facts whose clinical *onset* (never the recorded date) falls within ``days``."""
    cutoff = ctx.now - timedelta(days=days)
    return [f for f in facts if f.onset is not None and f.onset >= cutoff]


def _new_within(facts: list[Fact], ctx: RuleContext, days: int) -> list[Fact]:
    """Conditions by onset; examination Observations by when they were observed."""
    cutoff = ctx.now - timedelta(days=days)
    out = []
    for f in facts:
        when = f.onset if f.source == "condition" else f.when
        if when is not None and when >= cutoff:
            out.append(f)
    return out


def emg_suggestion_or_note(rec: PatientRecord, hit: Hit, priority: str) -> None:
    """R08 inside any card that would order EMG: a pending EMG is shown, not ordered again."""
    pending = rec.pending_order(*EMG)
    recent = [
        o
        for o in rec.done_orders(*EMG)
        if o.kind == "DiagnosticReport"
        and o.when is not None
        and o.when >= rec.now - timedelta(days=RECENT_EMG_DAYS)
        and emg_report.classify(o) != emg_report.NORMAL
    ]
    if pending is not None:
        hit.lines.append(
            f"EMG/NCS already ordered {fmt_date(pending.when)} (status {pending.status}); not suggested again."
        )
        hit.basis.append(Basis.of(pending))
    elif recent:
        # A recent EMG already shows an abnormal pattern: the next step is neurology, not another EMG.
        hit.lines.append(
            f"EMG/NCS reported {fmt_date(recent[0].when)}: {emg_report.LABEL[emg_report.classify(recent[0])]}; "
            "not suggested again."
        )
        hit.basis.append(Basis.of(recent[0]))
    else:
        hit.suggest.append(Suggest("emg", priority, recommended=True))


def neurology_suggestion_or_note(rec: PatientRecord, hit: Hit, priority: str) -> None:
    pending = rec.pending_order("neurology_referral")
    if pending is not None:
        hit.lines.append(
            f"Neurology referral already requested {fmt_date(pending.when)} (status {pending.status})."
        )
        hit.basis.append(Basis.of(pending))
    else:
        hit.suggest.append(Suggest("neurology_referral", priority))


@rule(
    "R01",
    "Red flag: weakness, atrophy, pathological reflexes or bulbar signs",
    ALWAYS,
    "fasciculation with objective weakness, muscle atrophy, an upper-motor-neuron sign (hyperreflexia, "
    "Babinski, clonus, spasticity, Hoffmann) or a bulbar sign (dysphagia, dysarthria); patient-reported "
    "weakness alone gives a warning asking for an objective strength exam",
    (
        (
            S000,
            "Any accompanying motor weakness, muscle atrophy, or pathological reflexes (hyperreflexia, Babinski "
            "sign) mandate immediate EMG/nerve conduction studies to exclude amyotrophic lateral sclerosis (ALS) "
            "or other motor neuron diseases",
        ),
        (
            S000,
            "Repeat EMG is only indicated if new symptoms develop (weakness, atrophy, dysphagia, dysarthria) "
            "that suggest progression to motor neuron disease",
        ),
        (S004, "Wasting of muscle"),
    ),
    suppressed_when="an active ALS or motor neuron disease diagnosis (work-up already done); on order hooks, "
    "when EMG/NCS and a neurology referral are both pending or in the order set. EMG is not re-suggested when "
    "one is pending or an EMG report of the last 90 days is already abnormal; a bare R29.2 gives a warning "
    "asking for the reflex type; under 18 the referral is to paediatric neurology (text-only order)",
    rank=30,
)
def r01_red_flags(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if rec.has("als", "motor_neuron_disease"):
        return None
    weakness = rec.has("muscle_weakness")
    signs = rec.has("muscle_atrophy", *UMN, *BULBAR) + objective(weakness)
    if ctx.moment is not Moment.CHART:
        return _r01_at_ordering(rec, ctx, signs)
    if not signs:
        unspecified = rec.has("reflex_abnormal")
        if unspecified:
            # A bare R29.2: which reflex change decides between UMN and neuropathy (issue 11 s.5).
            hit = Hit("R01", "reflex-type-unknown", "warning", [Basis.of(f) for f in unspecified + weakness])
            if weakness:
                hit.lines.append("Weakness is recorded as patient-reported or non-specific: grade strength (MRC).")
            return hit
        if not weakness:
            return None
        hit = Hit("R01", "red-flag-reported-weakness", "warning", [Basis.of(f) for f in weakness])
        return hit
    hit = Hit("R01", "red-flag-motor", "critical", [Basis.of(f) for f in signs])
    hit.values["findings"] = _finding_words({f.concept for f in signs})
    emg_suggestion_or_note(rec, hit, "urgent")
    if rec.age is not None and rec.age < 18 and rec.pending_order("neurology_referral") is None:
        hit.suggest.append(Suggest("neurology_referral", "urgent", text_only=PAEDIATRIC_NEUROLOGY))
    else:
        neurology_suggestion_or_note(rec, hit, "urgent")
    if ctx.done(rec, "ck") is None and rec.lab_pending("ck") is None:
        hit.suggest.append(Suggest("ck", "urgent"))
    return hit


def _r01_at_ordering(rec: PatientRecord, ctx: RuleContext, signs: list[Fact]) -> Hit | None:
    """At ordering time: remind only if neither EMG/NCS nor a neurology referral is covered, by a
    pending order or by a draft in this order set."""
    if not signs:
        return None
    emg_draft = any(d.concepts & set(EMG) for d in ctx.all_drafts)
    neuro_draft = any("neurology_referral" in d.concepts for d in ctx.all_drafts)
    emg_covered = emg_draft or rec.pending_order(*EMG) is not None
    neuro_covered = neuro_draft or rec.pending_order("neurology_referral") is not None
    if emg_covered and neuro_covered:
        return None
    hit = Hit("R01", "red-flag-at-ordering", "critical", [Basis.of(f) for f in signs])
    hit.values["findings"] = _finding_words({f.concept for f in signs})
    if emg_draft:
        hit.lines.append("EMG/NCS is in this order set.")
    elif not emg_covered:
        hit.suggest.append(Suggest("emg", "urgent", recommended=True))
    if neuro_draft:
        hit.lines.append("A neurology referral is in this order set.")
    elif not neuro_covered:
        hit.suggest.append(Suggest("neurology_referral", "urgent"))
    for order in (rec.pending_order(*EMG), rec.pending_order("neurology_referral")):
        if order is not None:
            hit.lines.append(f"{order.label} already ordered {fmt_date(order.when)} (status {order.status}).")
    return hit


def _finding_words(concepts: set[str]) -> str:
    words = []
    if "muscle_weakness" in concepts:
        words.append("weakness")
    if "muscle_atrophy" in concepts:
        words.append("atrophy")
    if concepts & set(UMN):
        words.append("UMN signs")
    if concepts & set(BULBAR):
        words.append("bulbar signs")
    return "/".join(words)


@rule(
    "R02",
    "Sudden onset with a new neurological deficit",
    (Moment.CHART, Moment.SELECTING),
    f"an acute stroke whose onset is within {NEW_DAYS} days, or fasciculation with onset within {NEW_DAYS} "
    "days together with a new objective focal deficit (weakness, dysarthria or dysphagia, onset in the same "
    "window); onset means Condition.onsetDateTime/onsetPeriod only, never recordedDate; patient-reported "
    "findings, R53.1 'weakness' and paraesthesia alone are not deficits; a historical stroke (I69.-, Z86.73) "
    "never counts",
    (
        (
            S000,
            "Sudden onset fasciculations with new neurological deficits require emergent CT or MRI to exclude "
            "acute stroke involving the basal ganglia, thalamus, or motor cortex",
        ),
    ),
    rank=20,
)
def r02_sudden_onset(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    new_trigger = _onset_within(ctx.triggers, ctx, NEW_DAYS)
    stroke = _onset_within([f for f in rec.has("stroke") if f.concept != "stroke_history"], ctx, NEW_DAYS)
    deficits = _onset_within(objective(rec.has(*FOCAL)), ctx, NEW_DAYS)
    if not stroke and not (new_trigger and deficits):
        return None
    # Sensory symptoms of the same onset are shown alongside an objective deficit, never alone.
    deficits += _onset_within(objective(rec.has("numbness_paresthesia")), ctx, NEW_DAYS) if deficits else []
    hit = Hit(
        "R02", "sudden-onset-deficit", "critical", [Basis.of(f) for f in new_trigger + stroke + deficits]
    )
    hit.values["deficit"] = (
        "acute stroke" if stroke else _finding_words({f.concept for f in deficits}) or "focal deficit"
    )
    recent_imaging = [
        o
        for o in rec.orders
        if o.concepts & {"ct_head", "mri_brain"}
        and (o.pending or (o.when and o.when >= ctx.now - timedelta(hours=48)))
    ]
    drafted = [d for d in ctx.all_drafts if d.concepts & {"ct_head", "mri_brain"}]
    if drafted:
        hit.lines.append(f"Brain imaging is in this order set: {drafted[0].label}.")
    elif recent_imaging:
        for o in recent_imaging:
            hit.lines.append(f"Brain imaging already {o.status}: {o.label} ({fmt_date(o.when)}).")
            hit.basis.append(Basis.of(o))
    else:
        hit.suggest += [
            Suggest("ct_head", "stat", recommended=True, code="383371000119108"),  # CT head without contrast
            Suggest("mri_brain", "stat"),
        ]
    return hit


@rule(
    "R02b",
    "Facial myokymia",
    CHART,
    "facial myokymia (ICD-10-CM G51.4, or myokymia described as facial), unless described as eyelid "
    "myokymia (benign, no card)",
    (
        (
            S003,
            "Facial myokymia has great diagnostic value, as it always indicates an organic lesion of the "
            "brainstem",
        ),
    ),
    needs_trigger=False,
    rank=40,
)
def r02b_facial_myokymia(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    facial = [
        f
        for f in rec.has("myokymia")
        if ("facial" in f.label.lower() or f.label.upper().startswith("G51.4"))
        and not EYELID.search(f.label + " " + f.note)  # benign eyelid myokymia needs no work-up
    ]
    if not facial:
        return None
    hit = Hit("R02b", "facial-myokymia", "warning", [Basis.of(f) for f in facial])
    other = rec.has("hemifacial_spasm", "post_facial_palsy")
    if other:
        # Seed 003 names these as the differentials of facial myokymia (issue 19).
        hit.lines.append(
            "Also on record: " + ", ".join(sorted({f.label for f in other}))
            + ": check whether the twitching belongs to it before attributing it to the brainstem."
        )
        hit.basis += [Basis.of(f) for f in other]
    pending = [o for o in rec.orders if "mri_brain" in o.concepts and (o.pending or o.done)]
    if pending:
        hit.lines.append(
            f"MRI brain on file: {pending[0].label} ({pending[0].status}, {fmt_date(pending[0].when)})."
        )
    else:
        hit.suggest.append(Suggest("mri_brain", "routine", recommended=True))
    neurology_suggestion_or_note(rec, hit, "routine")
    return hit


@rule(
    "R03",
    "Weakness with areflexia: Guillain-Barre pattern",
    (Moment.CHART, Moment.SELECTING),
    f"an active Guillain-Barre diagnosis recorded within {GBS_DAYS} days (even without fasciculation); or "
    f"fasciculation with objective weakness and new areflexia/hyporeflexia (onset or examination within "
    f"{GBS_DAYS} days) and no known chronic polyneuropathy, or any weakness with reflex loss described as "
    "ascending or progressive (critical); other weakness with reduced or absent reflexes gives a warning",
    (
        (
            S000,
            "Progressive ascending weakness with areflexia suggests Guillain-Barré syndrome and requires "
            "hospital admission with respiratory monitoring",
        ),
        (
            S001,
            "If progressive neuromuscular disease is suspected, obtain serum antiganglioside antibodies (for "
            "Guillain-Barré syndrome variants) and consider lumbar puncture for CSF analysis",
        ),
    ),
    needs_trigger=False,
    rank=10,
)
def r03_gbs(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    gbs = rec.has("guillain_barre", within_days=GBS_DAYS)
    pattern: list[Fact] = []
    possible: list[Fact] = []
    if ctx.triggers and not gbs:
        weak = rec.has("muscle_weakness", within_days=GBS_DAYS)
        reflex = rec.has("areflexia", "hyporeflexia", within_days=GBS_DAYS)
        new_weak = _new_within(objective(weak), ctx, GBS_DAYS)
        new_reflex = _new_within(reflex, ctx, GBS_DAYS)
        chronic_pn = rec.has("peripheral_neuropathy") + rec.history("peripheral_neuropathy")
        texts = [f.note + " " + f.label for f in weak + reflex + ctx.triggers]
        ascending = any(ASCENDING.search(t) for t in texts)
        if new_weak and new_reflex and not chronic_pn:
            pattern = new_weak + new_reflex
        elif weak and reflex and ascending:
            pattern = weak + reflex
        elif weak and reflex:
            possible = weak + reflex + chronic_pn
    if possible:
        hit = Hit("R03", "weakness-reflex-loss", "warning", [Basis.of(f) for f in possible])
        if any(f.concept == "peripheral_neuropathy" for f in possible):
            hit.lines.append("A chronic polyneuropathy is on record and may explain the reduced reflexes.")
        if not objective([f for f in possible if f.concept == "muscle_weakness"]):
            hit.lines.append("The weakness is patient-reported or non-specific (e.g. R53.1): grade strength (MRC).")
        return hit
    if not gbs and not pattern:
        return None
    hit = Hit("R03", "gbs-pattern", "critical", [Basis.of(f) for f in gbs + pattern])
    hit.suggest.append(Suggest("hospital_admission", "stat", recommended=True))
    neurology_suggestion_or_note(rec, hit, "stat")
    if not rec.done_orders("lumbar_puncture") and rec.pending_order("lumbar_puncture") is None:
        hit.suggest.append(Suggest("lumbar_puncture", "urgent"))
    return hit
