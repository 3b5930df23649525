"""Management once no emergency is present: EMG when indicated (R06) or pending (R08),
therapy guidance (R11), screening (R12), drug causes (R13), follow-up (R14), PAD check (R17),
sensory symptoms (R18) and reassurance (R20)."""

from __future__ import annotations

import re
from datetime import timedelta

from cds_service.clinical.moments import CHART
from cds_service.clinical.record_model import Medication, PatientRecord
from cds_service.clinical.rules.base import EMG, UMN, Basis, Hit, RuleContext, Suggest, fmt_date, rule
from cds_service.clinical.rules.safety import (
    exam_lines,
    first_tier_open,
    not_benign,
    pregnant,
)
from cds_service.clinical.rules.workup import TEST_LABEL
from cds_service.clinical.terminology import terminology

S000 = "000_bc010253c106cbbd.txt"
S001 = "001_cfc4d0b4b68d0f69.txt"
S002 = "002_0d1c86e06a6f96ad.txt"
S003 = "003_3a25f4dd8f7e133a.txt"
S004 = "004_43916d9a7c4a1785.txt"
CRITICAL_RULES = ("R01", "R02", "R03")
# "widespread" describes distribution, not course; "non-progressive" / "not progressing" are negations.
PROGRESSION = re.compile(r"progress|\bspread(?:s|ing)?\b|worsen", re.I)
NOT_PROGRESSING = re.compile(
    r"\bnon-?progressive|\bnot (?:\w+ )?(?:progress|worsen|spread)|\bno (?:\w+ )?(?:progression|worsening|spread)",
    re.I,
)
ALS_FEAR = re.compile(r"\bALS\b|motor neuron|lou gehrig", re.I)
LEGS = re.compile(r"\b(leg|legs|calf|calves|thigh|foot|feet|lower (limb|extremit\w*)|claudication)\b", re.I)
NOT_YET_BENIGN = ("R04", "R05b", "R05d", "R05e", "R05f", "R06", "R07", "R08", "R17", "R18", "R21", "R22")
# Issue 19: reflex loss, flagged first-tier results, a structural lesion, root compression, a toxic cause.
NOT_YET_BENIGN_SEEDS = ("R23", "R24", "R25", "R26", "R28")
CAUSE_CLASSES = ("diuretics", "corticosteroids_systemic", "estrogens", "penicillins")
CURRENT_MEDICATION_DAYS = 365  # a prescription, statement or dispense this recent makes a drug current
# Issue 19: seed 002 names "rapid tapering" of corticosteroids as a trigger but gives no time window.
# 30 days is a conservative choice (about the 2-4 week reassessment interval of seed 000): a course
# that ended this recently may still explain current twitching; older ones are not listed.
TAPER_ENDED_DAYS = 30
STEROIDS = "corticosteroids_systemic"


def _progressive(text: str) -> bool:
    return bool(PROGRESSION.search(NOT_PROGRESSING.sub("", text)))


def _red_flag(ctx: RuleContext) -> bool:
    return any(r in ctx.fired for r in CRITICAL_RULES)


@rule(
    "R06",
    "EMG/NCS indicated without red flags",
    CHART,
    "no red flag, no EMG on file or pending, and fasciculation with cramps or neuromyotonia (in pregnancy, "
    "leg cramps alone do not count), a note saying it is progressive (not 'widespread', not 'non-progressive'), "
    "or anxiety about ALS (anxiety noted as ALS-related, or a GAD-7 of 10 or more, shown as such)",
    (
        (
            S000,
            "EMG and nerve conduction studies are indicated when: (1) any weakness or atrophy is present, (2) "
            "fasciculations are progressive or associated with cramps/neuromyotonia, or (3) patient anxiety about "
            "ALS cannot be adequately addressed without objective testing",
        ),
    ),
    suppressed_when="R01 fired (it orders EMG urgently)",
    rank=170,
    suppressed_by=("R01",),
)
def r06_emg_indicated(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if "R01" in ctx.fired or rec.done_orders(*EMG) or rec.pending_order(*EMG):
        return None
    reasons = []
    basis = rec.has("muscle_cramps", "neuromyotonia", "cramp_fasciculation_syndrome")
    if pregnant(rec):
        # Leg cramps are common in pregnancy and are not an EMG indication by themselves.
        basis = [f for f in basis if f.concept != "muscle_cramps"]
    if basis:
        reasons.append("cramps/neuromyotonia")
    progressive = [f for f in ctx.triggers if _progressive(f.note) or _progressive(f.label)]
    if progressive:
        reasons.append("progressive course")
        basis += progressive
    anxious = [f for f in rec.has("anxiety") if ALS_FEAR.search(f.note) or "hypochondria" in f.label.lower()]
    gad = ctx.done(rec, "gad7_total")
    high_gad = gad is not None and gad.value is not None and gad.value >= 10
    if anxious:
        reasons.append("persistent ALS-related anxiety")
        basis += anxious
    elif high_gad:
        # A GAD-7 score says how anxious, not about what: ask whether the fear is of ALS.
        reasons.append("marked anxiety (GAD-7 of 10+: is it fear of ALS?)")
    if not reasons:
        return None
    hit = Hit("R06", "emg-indicated", "info", [Basis.of(f) for f in basis], [Suggest("emg", "routine", True)])
    if gad is not None and high_gad:
        hit.basis.append(Basis.of(gad))
    hit.values["reasons"] = ", ".join(reasons)
    return hit


@rule(
    "R11",
    "Symptomatic therapy guidance",
    CHART,
    "no red flag, fasciculation first recorded at least 28 days ago, no active gabapentin or carbamazepine, "
    "adult, every first-tier test resulted, no explaining diagnosis, no deficit and no EMG that is not normal; "
    "in pregnancy a card that puts no drug first and states carbamazepine's teratogenicity; carbamazepine is "
    "listed first with cramps, neuromyotonia or myalgia/stiffness (the cramp-fasciculation picture)",
    (
        (
            S002,
            "gabapentin is the preferred pharmacologic agent based on documented efficacy in controlling "
            "fasciculations",
        ),
        (S000, "For fasciculations associated with neuromyotonia or cramps, carbamazepine relieves symptoms"),
        (S002, "Most patients do not require pharmacologic intervention"),
        (
            S001,
            "Benign cramp-fasciculation syndrome presents with muscle aching, cramps, stiffness, exercise "
            "intolerance, and fasciculations without progressive weakness, and responds well to carbamazepine "
            "therapy",
        ),
    ),
    suppressed_when="R01, R02 or R03 fired, any warning (an abnormal result or drug cause to address first), "
    "an explaining diagnosis (MND/ALS, SMA, myopathy, dystrophy, neuropathy, radiculopathy, thyrotoxicosis, ...), "
    "any weakness, atrophy, UMN, bulbar or reflex finding, a first-tier test missing or pending, an EMG report "
    "not classified normal, age under 18, or a card that leaves the work-up open (R04, R05b, R05d-f, R06-R08, "
    "R17, R18, R21-R26, R28); the card states whether a structured exam was found",
    rank=190,
    suppressed_by=("R01", "R02", "R03"),
    yields_to_critical=True,
    generic=True,
)
def r11_therapy(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if _red_flag(ctx) or any(h.indicator == "warning" for h in ctx.fired.values()):
        return None
    if rec.meds_in(("gabapentin", "carbamazepine")) or not_benign(rec, ctx) or first_tier_open(rec, ctx):
        return None
    # An open question in the work-up (abnormal result, EMG indicated or pending, PAD, sensory signs,
    # abnormal EMG, child) comes before a drug: no positive evidence of a benign picture yet.
    if any(r in ctx.fired for r in NOT_YET_BENIGN + NOT_YET_BENIGN_SEEDS):
        return None
    dated = [f.when for f in ctx.triggers if f.when is not None]
    if not dated or min(dated) > ctx.now - timedelta(days=28):
        return None
    # Cramps, or the cramp-fasciculation picture of aching, stiffness and exercise intolerance
    # (seed 001: "responds well to carbamazepine therapy"; issue 19).
    cramps = bool(rec.has("muscle_cramps", "neuromyotonia", "cramp_fasciculation_syndrome", "myalgia_stiffness"))
    pregnancy = pregnant(rec)
    if pregnancy:
        kind = "therapy-pregnancy"
    else:
        kind = "therapy-carbamazepine-first" if cramps else "therapy-gabapentin-first"
    hit = Hit("R11", kind, "info", [Basis.of(f) for f in ctx.triggers + pregnancy])
    hit.values["since"] = fmt_date(min(dated))
    hit.lines += exam_lines(rec)[1]  # issue 19 s.2: no "normal exam" from silence
    return hit


@rule(
    "R12",
    "Anxiety and depression screening missing",
    CHART,
    "no GAD-7 or no depression screen (PHQ-9 total, PHQ-A/teen PHQ-9 or PHQ-2) within 180 days (each "
    "suggested separately); not under age 12",
    (
        (
            S000,
            "Screen for anxiety and depression using GAD-7 and PHQ-9 scores, as 60% of BFS patients have anxiety "
            "(often severe) and 33% have depression",
        ),
        (
            S002,
            "Pathologic anxiety is uncommon (only 14% of BFS patients meet criteria for anxiety disorders), so "
            "routine psychiatric intervention is not necessary",
        ),
    ),
    rank=200,
    generic=True,
)
def r12_screening(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if rec.age is not None and rec.age < 12:
        return None  # adult questionnaires; not validated under 12
    hit = Hit("R12", "screening-missing", "info")
    names = []
    for concept, code, name in (("gad7_total", "69737-5", "GAD-7"), ("phq9_total", "44249-1", "PHQ-9")):
        # A PHQ-2 (55757-9/55758-7) or a PHQ-A (teen PHQ-9, 89204-2, matched as phq9_total) is a
        # depression screen too (issue 17 section 2).
        alternatives = ("phq2",) if concept == "phq9_total" else ()
        if any(ctx.done(rec, c) is not None or rec.lab_pending(c) is not None for c in (concept, *alternatives)):
            continue
        hit.suggest.append(Suggest(concept, "routine", code=code, label=f"{name} questionnaire"))
        names.append(name)
    if not names:
        return None
    hit.values["which"] = " and ".join(names)
    return hit


@rule(
    "R13",
    "Possible medication-induced fasciculations",
    CHART,
    "an active diuretic, systemic corticosteroid, estrogen or penicillin, or a systemic corticosteroid course "
    "completed or stopped with its end (validity or effective period end, or order date + expected supply) within "
    "30 days; warning instead of info when R05g found low electrolytes; a drug with no prescription, statement "
    "or dispense in 365 days is shown as 'recorded active since <year>, confirm it is current'",
    (
        (S004, "Drug side effect (such as diuretics, corticosteroids and estrogens)"),
        (
            S003,
            "Iatrogenic fasciculations have been described with the use of penicillin and overdose of "
            "anticholinergics",
        ),
        (
            S002,
            "Consider corticosteroid use as a potential trigger, particularly with high-dose therapy or rapid "
            "tapering",
        ),
    ),
    rank=210,
)
def r13_drug_causes(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    t = terminology()
    members = [m for g in CAUSE_CLASSES for m in t.drug_classes.get(g, [])]
    meds = rec.meds_in(members)
    tapers = _recent_tapers(rec, ctx)
    if not meds and not tapers:
        return None
    indicator = "warning" if "R05g" in ctx.fired else "info"
    hit = Hit("R13", "drug-causes", indicator, [Basis.of(m) for m in meds])
    hit.basis += [Basis(f"{m.label} ({m.status}, ended)", m.ended, m.ref) for m in tapers]
    hit.values["drugs"] = ", ".join(sorted({m.label for m in (*meds, *tapers)}))
    for m in tapers:
        hit.lines.append(
            f"{m.label}: corticosteroid course {_ended(m, ctx)}; the sources name "
            "corticosteroid use as a potential trigger, particularly with rapid tapering: ask whether it was tapered."
        )
    for m in meds:
        # "Active" alone is not "current": generators and old systems leave prescriptions from
        # decades ago active (issue 17 section 2). Recency = prescription date, statement date or
        # the latest dispense of the drug.
        same_drug = [o for o in meds if o.concepts & m.concepts]  # a renewal counts for the old one
        dates = [d for o in same_drug for d in (o.since, o.asserted)]
        seen = [d for d in (*dates, *(rec.dispensed.get(c) for c in m.concepts)) if d is not None]
        if seen and max(seen) >= ctx.now - timedelta(days=CURRENT_MEDICATION_DAYS):
            continue
        since = f"since {m.since.year}" if m.since is not None else "with no date"
        hit.lines.append(
            f"{m.label}: recorded active {since}, confirm it is current (no prescription, statement or "
            f"dispense in the last {CURRENT_MEDICATION_DAYS} days)."
        )
    return hit


def _recent_tapers(rec: PatientRecord, ctx: RuleContext) -> list[Medication]:
    """Systemic corticosteroid courses that ended (completed/stopped) within TAPER_ENDED_DAYS: seed
    002 singles out rapid tapering, which by definition shows only once the course is over."""
    steroids = set(terminology().drug_classes.get(STEROIDS, []))
    cutoff = ctx.now - timedelta(days=TAPER_ENDED_DAYS)
    return sorted(
        (m for m in rec.ended_meds if m.concepts & steroids and m.ended is not None and m.ended >= cutoff),
        key=lambda m: m.ended or ctx.now,
        reverse=True,
    )


def _ended(m: Medication, ctx: RuleContext) -> str:
    """A course marked finished whose planned end is still ahead was stopped early, date unknown."""
    if m.ended is not None and m.ended > ctx.now:
        return f"{m.status} before its planned end {fmt_date(m.ended)}"
    return f"ended {fmt_date(m.ended)} ({m.status})"


@rule(
    "R14",
    "Follow-up scheduling",
    CHART,
    "no red flag, a first-tier lab ordered or resulted within 30 days, and no follow-up booked or requested",
    (
        (S000, "Reassess at 2-4 weeks to review laboratory results and provide additional reassurance"),
        (S000, "Schedule follow-up at 6 months to confirm stability"),
    ),
    suppressed_when="R01, R02 or R03 fired",
    rank=220,
    suppressed_by=("R01", "R02", "R03"),
    generic=True,
)
def r14_follow_up(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if _red_flag(ctx) or rec.future_visits:
        return None
    first_tier = (
        "hba1c",
        "fasting_glucose",
        "cbc",
        "cmp",
        "vitamin_b12",
        "tsh",
        "spep",
        "magnesium_serum",
        "ck",
    )
    # "The last 30 days" in calendar days: a result drawn 30 days ago counts whatever the time of
    # day (an exact-instant cutoff made the same record fire before 09:00 and not after).
    since = (ctx.now - timedelta(days=30)).date()
    recent = [r for c in first_tier for r in rec.labs.get(c, ()) if r.when and r.when.date() >= since]
    recent_orders = [
        o for o in rec.orders if o.concepts & set(first_tier) and o.when and o.when.date() >= since
    ]
    if not recent and not recent_orders:
        return None
    hit = Hit("R14", "follow-up", "info", [Basis.of(x) for x in (recent[:3] or recent_orders[:3])])
    hit.suggest.append(
        Suggest(
            "follow_up_visit", "routine", True, text_only="Follow-up visit in 2-4 weeks to review results"
        )
    )
    dated = [f.when for f in ctx.triggers if f.when is not None]
    if dated and min(dated) <= ctx.now - timedelta(weeks=4):
        hit.suggest.append(
            Suggest("follow_up_visit", "routine", text_only="Review at 6 months to confirm stability")
        )
    return hit


@rule(
    "R17",
    "PAD check in older patients with vascular risk",
    CHART,
    "age 50 or more, an atherosclerotic risk factor (hypertension, hyperlipidaemia, smoking, coronary disease, "
    "CKD or diabetes), leg or exertional symptoms (claudication, leg pain, or weakness, numbness, cramps or "
    "aching described in the legs; hand numbness does not count), no known PAD and no ABI within 730 days",
    (
        (
            S001,
            "Leg weakness, numbness, or fatigue during walking without pain can indicate PAD, particularly in "
            "patients aged ≥50 years with atherosclerosis risk factors",
        ),
        (
            S001,
            "Ankle-brachial index testing if PAD is suspected based on vascular risk factors and examination "
            "findings",
        ),
    ),
    rank=230,
)
def r17_pad_check(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if rec.age is None or rec.age < 50 or rec.has("peripheral_artery_disease"):
        return None
    risk = rec.has("pad_risk_factors", "diabetes")
    legs = rec.has("leg_symptoms") + [
        f
        for f in rec.has("muscle_weakness", "numbness_paresthesia", "muscle_cramps", "myalgia_stiffness")
        if LEGS.search(f.label) and f.concept != "leg_symptoms"
    ]
    legs = list({f.ref: f for f in legs}.values())
    if not risk or not legs:
        return None
    if ctx.done(rec, "abi_result") is not None or rec.pending_order("abi_test", "abi_result"):
        return None
    hit = Hit(
        "R17",
        "pad-check",
        "info",
        [Basis.of(f) for f in risk[:3] + legs[:3]],
        [Suggest("abi_test", "routine", True)],
    )
    hit.values["age"] = str(rec.age)
    return hit


@rule(
    "R18",
    "Sensory symptoms: consider peripheral neuropathy",
    CHART,
    "numbness/paresthesia or a peripheral neuropathy diagnosis with fasciculation",
    (
        (
            S000,
            "Peripheral neuropathy causes sensory symptoms (numbness, tingling, burning) in a stocking-glove "
            "distribution with reduced ankle reflexes, not isolated fasciculations",
        ),
    ),
    rank=240,
)
def r18_sensory(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    sensory = rec.has("numbness_paresthesia", "peripheral_neuropathy")
    if not sensory:
        return None
    hit = Hit("R18", "sensory-neuropathy", "info", [Basis.of(f) for f in sensory])
    if not rec.done_orders(*EMG) and not rec.pending_order(*EMG):
        hit.suggest.append(Suggest("emg", "routine", True))
    return hit


@rule(
    "R20",
    "Reassurance and education",
    CHART,
    "adult, no red flag or warning, no abnormal result card, no explaining diagnosis (value set), no weakness, "
    "atrophy, UMN, bulbar or reflex finding, no sensory finding, an EMG (if any) classified normal, and every "
    "first-tier test resulted; when only pending results stand in the way, an info card says which",
    (
        (
            S000,
            "98.3% of BFS patients had persistent fasciculations but zero developed motor neuron dysfunction",
        ),
        (S002, "Fasciculations persist in 93-98% of patients over time"),
        (S004, "There is usually no treatment necessary"),
        (
            S000,
            "Perform a complete neurological examination focusing on muscle bulk, strength testing (MRC grading), "
            "deep tendon reflexes, and plantar responses—all should be normal in BFS",
        ),
        (S002, "The cornerstone of treatment is patient education and reassurance"),
    ),
    suppressed_when="any critical or warning card; lab gaps (R04); an abnormal result (R05); EMG indicated, "
    "pending or myositis screen (R06-R08); PAD suspected (R17); sensory symptoms (R18); an abnormal or "
    "unclassifiable EMG (R21); reflex loss (R23), a flagged first-tier result (R24), a structural brainstem/cord "
    "lesion (R25), root compression (R26) or a toxic cause (R28); an explaining diagnosis, deficit, or age under 18. The card states "
    "whether a structured exam (bulk, MRC strength, reflexes, plantar responses) was found; without one it is "
    "conditional on a normal examination",
    rank=300,
    suppressed_by=(
        "R04", "R05b", "R05d", "R05e", "R05f", "R05i", "R06", "R07", "R08", "R17", "R18", "R21", "R22",
        *NOT_YET_BENIGN_SEEDS,
    ),
    yields_to_critical=True,
    generic=True,
)
def r20_reassurance(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if any(h.indicator != "info" for h in ctx.fired.values()):
        return None
    if rec.has(*UMN):
        return None
    reasons = not_benign(rec, ctx)
    if reasons:
        # Say why there is no reassurance rather than stay silent (issue 11: "say what is missing").
        hit = Hit("R20", "reassurance-withheld", "info", [Basis.of(f) for f in ctx.triggers])
        hit.lines += [r[0].upper() + r[1:] + "." for r in reasons]
        return hit
    open_tests = first_tier_open(rec, ctx)
    if open_tests:
        hit = Hit("R20", "reassurance-pending", "info", [Basis.of(f) for f in ctx.triggers])
        hit.values["pending"] = ", ".join(TEST_LABEL[t] for t, _ in open_tests)
        return hit
    hit = Hit("R20", "reassurance", "info", [Basis.of(f) for f in ctx.triggers])
    complete, lines = exam_lines(rec)
    hit.values["if_exam"] = " (structured exam normal)" if complete else " if the exam is normal"
    hit.lines += lines
    return hit
