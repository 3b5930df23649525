"""Patient-safety checks shared by the benign end of the pathway, plus the abnormal-EMG card (R21)
and the child card (R22).

Why here: reassurance (R20) and symptomatic drugs (R11) need *positive* evidence that the picture is
benign. An independent review (issue 11) saw reassurance given to a patient with recorded ALS, with
every first-tier test pending, and with a myopathic EMG. The questions "is there an explaining
diagnosis, a deficit, an incomplete work-up, an EMG that is not normal, a child or a pregnancy?" are
answered once, here, so every rule asks them the same way.
"""

from __future__ import annotations

from datetime import timedelta

from cds_service.clinical import emg as emg_report
from cds_service.clinical.moments import CHART
from cds_service.clinical.record_model import EXAM_ASPECTS, Fact, Order, PatientRecord
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
from cds_service.clinical.rules.workup import ALWAYS, CORE, test_status
from cds_service.clinical.terminology import terminology

S000 = "000_bc010253c106cbbd.txt"
S001 = "001_cfc4d0b4b68d0f69.txt"
S004 = "004_43916d9a7c4a1785.txt"
ADULT_AGE = 18
DEFICIT = ("muscle_weakness", "muscle_atrophy", *UMN, *BULBAR, "areflexia", "hyporeflexia", "reflex_abnormal")
ADULT_ONLY_TESTS = ("spep", "diabetes_screen")  # adult panel: not suggested for children
PREGNANCY_OBSERVATION_DAYS = 280
PAEDIATRIC_NEUROLOGY = "Referral to paediatric neurology"


def is_child(rec: PatientRecord) -> bool:
    return rec.age is not None and rec.age < ADULT_AGE


def pregnant(rec: PatientRecord) -> list[Fact]:
    """Pregnancy on record: an active pregnancy Condition, or a pregnancy finding (e.g. LOINC
    82810-3 answered Pregnant) observed within the last 280 days."""
    cutoff = rec.now - timedelta(days=PREGNANCY_OBSERVATION_DAYS)
    return [
        f
        for f in rec.has("pregnancy")
        if f.source == "condition" or (f.when is not None and f.when >= cutoff)
    ]


def explaining_diagnoses(rec: PatientRecord) -> list[Fact]:
    """Active diagnoses that explain or outrank fasciculations (value set in the terminology)."""
    return rec.has(*terminology().value_sets.get("explains_fasciculation", ()))


def established_mnd(rec: PatientRecord) -> list[Fact]:
    return rec.has(*terminology().value_sets.get("established_mnd", ()))


def deficits(rec: PatientRecord) -> list[Fact]:
    """Weakness (objective or not: reported weakness is not a benign picture either), atrophy, UMN,
    bulbar or reflex findings, whether or not R01 shows a card for them."""
    return rec.has(*DEFICIT)


def first_tier_open(rec: PatientRecord, ctx: RuleContext) -> list[tuple[str, str]]:
    """(test, 'missing'|'pending') for every first-tier test without a final result in its window."""
    tests = [t for t in (*CORE, *ALWAYS) if not (is_child(rec) and t in ADULT_ONLY_TESTS)]
    out = []
    for test in tests:
        state, _ = test_status(rec, ctx, test)
        if state != "done":
            out.append((test, state))
    return out


def latest_emg_report(rec: PatientRecord) -> Order | None:
    reports = [o for o in rec.done_orders(*EMG) if o.kind == "DiagnosticReport"]
    return reports[0] if reports else None


def emg_not_normal(rec: PatientRecord) -> str | None:
    """Why the EMG on file does not support a benign picture, or None (no EMG, or a normal one)."""
    report = latest_emg_report(rec)
    if report is not None:
        cls = emg_report.classify(report)
        if cls == emg_report.NORMAL:
            return None
        return f"EMG report {fmt_date(report.when)}: {emg_report.LABEL[cls]}"
    done = rec.done_orders(*EMG)
    if done:
        return f"EMG/NCS done {fmt_date(done[0].when)} but no report on file"
    return None


def neurology_involved(rec: PatientRecord) -> Order | None:
    """A neurology referral that is pending or completed (the patient is under, or on the way to,
    specialist care)."""
    pending = rec.pending_order("neurology_referral")
    if pending is not None:
        return pending
    done = rec.done_orders("neurology_referral")
    return done[0] if done else None


def not_benign(rec: PatientRecord, ctx: RuleContext) -> list[str]:
    """Every reason the record does not show a benign picture (empty list: positive evidence)."""
    reasons = []
    explaining = explaining_diagnoses(rec)
    if explaining:
        reasons.append("diagnosis on record: " + ", ".join(sorted({f.label for f in explaining})))
    found = deficits(rec)
    if found:
        reasons.append("finding on record: " + ", ".join(sorted({f.label for f in found})))
    emg = emg_not_normal(rec)
    if emg:
        reasons.append(emg)
    if is_child(rec):
        reasons.append(f"age {rec.age}: the benign-fasciculation evidence is from adults")
    return reasons


EXAM_DAYS = 365
EXAM_LABEL = {"bulk": "muscle bulk", "strength": "strength (MRC)", "reflexes": "reflexes", "plantar": "plantar responses"}
NO_EXAM = (
    "No structured neurological examination was found in the record (an exam written only as free text "
    "cannot be read)"
)


def exam_lines(rec: PatientRecord) -> tuple[bool, list[str]]:
    """(a complete structured exam is on file and normal, the lines a benign-end card states).

    Why: most EHRs keep the exam in free text, so "nothing abnormal coded" is not a normal exam; seed
    000 asks for normal bulk, strength, reflexes and plantar responses. Abnormal parts are findings
    and already block the benign end; this says, conditionally, what the record cannot show."""
    normal: list[str] = []
    missing: list[str] = []
    dates = []
    for aspect in EXAM_ASPECTS:
        items = rec.exam_latest(aspect, EXAM_DAYS)
        if items and all(i.normal for i in items):
            normal.append(EXAM_LABEL[aspect])
            dates += [i.when for i in items if i.when is not None]
        else:
            missing.append(EXAM_LABEL[aspect])
    lines = []
    if not missing:
        lines.append(
            f"Structured examination on file ({fmt_date(max(dates) if dates else None)}): muscle bulk, strength "
            "(MRC), reflexes and plantar responses recorded as normal."
        )
    elif not normal:
        lines.append(
            NO_EXAM + ": this applies only if muscle bulk, strength (MRC), reflexes and plantar responses are "
            "normal on examination."
        )
    else:
        lines.append(
            f"Structured examination on file records normal {', '.join(normal)}; not found: {', '.join(missing)}. "
            "This applies only if those are normal on examination too."
        )
    seen = [e for e in rec.exam if e.aspect == "fasciculations" and e.when is not None
            and e.when >= rec.now - timedelta(days=EXAM_DAYS)]
    if seen:
        sites = sorted({e.site for e in seen if e.site})
        lines.append(
            "Visible fasciculations recorded on examination: " + (", ".join(sites) if sites else "site not recorded")
            + "."
        )
    return not missing, lines


def _neurology_line_or_suggest(rec: PatientRecord, hit: Hit, priority: str) -> None:
    """Say that neurology is involved instead of re-ordering; otherwise suggest the referral."""
    involved = neurology_involved(rec)
    if involved is not None:
        hit.lines.append(
            f"Neurology already involved: {involved.label} ({involved.status}, {fmt_date(involved.when)})."
        )
        hit.basis.append(Basis.of(involved))
    elif is_child(rec):
        hit.suggest.append(Suggest("neurology_referral", priority, text_only=PAEDIATRIC_NEUROLOGY))
    else:
        hit.suggest.append(Suggest("neurology_referral", priority))


@rule(
    "R21",
    "Abnormal EMG report",
    CHART,
    "the latest EMG/NCS report is not normal: active denervation or widespread neurogenic change (warning; "
    "critical with objective weakness or atrophy), myopathic (warning), neuropathic (info), minor chronic "
    "neurogenic change (info), or a report that cannot be classified (info); coded conclusion first, then "
    "negation-aware text",
    (
        (
            S000,
            "In BFS, EMG may show fasciculation potentials but should not demonstrate chronic neurogenic changes "
            "(large amplitude, long duration motor unit potentials) or active denervation (fibrillation "
            "potentials, positive sharp waves)",
        ),
        (
            S000,
            "Minor chronic neurogenic EMG changes can occur in older men with BFS (seen in 19% of one cohort) "
            "without implying progression to ALS",
        ),
        (
            S001,
            "EMG can detect fibrillation potentials and positive sharp waves (signs of denervation), "
            "fasciculations, and assess for myopathic changes",
        ),
        (S001, "Elevated creatine phosphokinase (CPK) levels suggest myopathy or muscular dystrophy"),
    ),
    suppressed_when="no EMG/NCS DiagnosticReport on file, or the latest one is normal",
    rank=163,
)
def r21_abnormal_emg(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    hit = _r21(rec, ctx)
    report = latest_emg_report(rec)
    if hit is not None and report is not None:
        hit.lines.insert(0, f"Report conclusion: {report.conclusion.strip() or '(coded conclusion only)'}")
    return hit


def _r21(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    report = latest_emg_report(rec)
    if report is None:
        return None
    cls = emg_report.classify(report)
    if cls == emg_report.NORMAL:
        return None
    basis = [Basis.of(report)]
    if cls == emg_report.DENERVATION:
        motor = objective(rec.has("muscle_weakness")) + rec.has("muscle_atrophy")
        hit = Hit(
            "R21", "emg-denervation", "critical" if motor else "warning", basis + [Basis.of(f) for f in motor]
        )
        _neurology_line_or_suggest(rec, hit, "urgent")
        return hit
    if cls == emg_report.MYOPATHIC:
        hit = Hit("R21", "emg-myopathic", "warning", basis)
        ck = ctx.done(rec, "ck")
        if ck is not None:
            hit.basis.append(Basis.of(ck))
        elif rec.lab_pending("ck") is None:
            hit.suggest.append(Suggest("ck", "routine", recommended=True))
        _neurology_line_or_suggest(rec, hit, "routine")
        return hit
    if cls == emg_report.NEUROPATHIC:
        hit = Hit("R21", "emg-neuropathic", "info", basis)
        for test in ("diabetes_screen", "vitamin_b12", "folate", "spep"):
            state, _ = test_status(rec, ctx, test)
            if state == "missing" and not (is_child(rec) and test in ADULT_ONLY_TESTS):
                hit.suggest.append(Suggest("hba1c" if test == "diabetes_screen" else test, "routine"))
        return hit
    if cls == emg_report.NEUROGENIC:
        hit = Hit("R21", "emg-neurogenic-minor", "info", basis)
        involved = neurology_involved(rec)
        if involved is not None:
            hit.lines.append(f"Neurology already involved: {involved.label} ({involved.status}).")
        return hit
    return Hit("R21", "emg-indeterminate", "info", basis)


@rule(
    "R22",
    "Fasciculations in a child or adolescent",
    CHART,
    f"age under {ADULT_AGE} with fasciculation: an exam-focused review (strength, reflexes, Gowers sign, CK) "
    "instead of the adult panel and drug cards; warning with paediatric neurology referral when any weakness, "
    "atrophy, reflex, UMN or bulbar finding is recorded",
    (
        (
            S000,
            "Any accompanying motor weakness, muscle atrophy, or pathological reflexes (hyperreflexia, Babinski "
            "sign) mandate immediate EMG/nerve conduction studies to exclude amyotrophic lateral sclerosis (ALS) "
            "or other motor neuron diseases",
        ),
        (
            S001,
            "the diagnostic priority being to exclude progressive neuromuscular disease through creatine "
            "phosphokinase testing and electromyography",
        ),
    ),
    suppressed_when="age 18 or more, or age unknown",
    rank=166,
)
def r22_child(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if not is_child(rec):
        return None
    found = deficits(rec)
    hit = Hit(
        "R22", "child-review", "warning" if found else "info", [Basis.of(f) for f in ctx.triggers + found]
    )
    hit.values["age"] = str(rec.age)
    ck = ctx.done(rec, "ck")
    if ck is not None:
        hit.basis.append(Basis.of(ck))
    elif rec.lab_pending("ck") is None:
        hit.suggest.append(Suggest("ck", "routine", recommended=True))
    if found:
        _neurology_line_or_suggest(rec, hit, "urgent")
    return hit
