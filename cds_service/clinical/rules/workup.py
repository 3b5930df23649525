"""Laboratory work-up: first-tier gaps (R04), interpretation of results (R05a-i), inflammatory
myopathy screen (R07) and ferritin when restless legs is in the differential (R19)."""

from __future__ import annotations

from cds_service.clinical.moments import CHART
from cds_service.clinical.record_model import Fact, LabResult, PatientRecord
from cds_service.clinical.rules.base import Basis, Fold, Hit, RuleContext, Suggest, rule

S000 = "000_bc010253c106cbbd.txt"
S001 = "001_cfc4d0b4b68d0f69.txt"
S002 = "002_0d1c86e06a6f96ad.txt"
S003 = "003_3a25f4dd8f7e133a.txt"

LOW = frozenset({"L", "LL", "LU"})
HIGH = frozenset({"H", "HH", "HU"})
ABNORMAL = frozenset({"A", "AA"}) | LOW | HIGH
# A CMP reported only as components counts when it covers what the first tier needs from it
# (issue 11 section 1): sodium, potassium, creatinine, glucose and calcium. ALT+AST+ALP is not one.
CMP_COMPONENTS = {
    "sodium": frozenset({"2951-2"}),
    "potassium": frozenset({"2823-3", "6298-4"}),
    "creatinine": frozenset({"2160-0"}),
    "glucose": frozenset({"2345-7", "1558-6"}),
    "calcium": frozenset({"17861-6", "2000-8"}),
}
B6_ORDER_TEXT = "Vitamin B6 (pyridoxal 5'-phosphate), plasma"
BMP_CODES = frozenset({"24321-2", "51990-0"})
FALLBACK_LOW = {"potassium": 3.5, "magnesium_serum": 1.7, "calcium": 8.5}  # mmol/L, mg/dL, mg/dL
ITEM9_TEXT = {
    "not at all": 0.0,
    "la6568-5": 0.0,
    "several days": 1.0,
    "la6569-3": 1.0,
    "more than half the days": 2.0,
    "la6570-1": 2.0,
    "nearly every day": 3.0,
    "la6571-9": 3.0,
}
CORE = ("diabetes_screen", "cbc", "cmp", "vitamin_b12", "tsh", "spep")
EXTENDED = ("ck", "folate", "vitamin_b6")
ALWAYS = ("magnesium_serum",)
TEST_LABEL = {
    "diabetes_screen": "HbA1c",
    "cbc": "CBC",
    "cmp": "CMP",
    "vitamin_b12": "B12",
    "tsh": "TSH",
    "spep": "SPEP",
    "ck": "CK",
    "folate": "folate",
    "vitamin_b6": "B6",
    "magnesium_serum": "Mg",
}


def _cmp_done(rec: PatientRecord, ctx: RuleContext) -> LabResult | None:
    """The CMP panel, a BMP, or sodium + potassium + creatinine + glucose + calcium in the window."""
    days = ctx.lookback("cmp")
    bmp = [r for r in rec.results("bmp", ctx.lookback("bmp")) if r.code in BMP_CODES]
    if bmp:
        return bmp[0]
    results = rec.results("cmp", days)
    panels = [r for r in results if r.code == "24323-8"]
    if panels:
        return panels[0]
    pool = results + [
        r for c in ("fasting_glucose", "calcium", "potassium") for r in rec.results(c, days)
    ]
    codes = {r.code for r in pool}
    if all(codes & wanted for wanted in CMP_COMPONENTS.values()):
        return max(pool, key=lambda r: r.when or rec.now)
    return None


def test_status(rec: PatientRecord, ctx: RuleContext, test: str) -> tuple[str, object | None]:
    """('done'|'pending'|'missing', the result or order that decided it)."""
    if test == "diabetes_screen":
        for concept in ("hba1c", "fasting_glucose"):
            if (r := ctx.done(rec, concept)) is not None:
                return "done", r
        for concept in ("hba1c", "fasting_glucose"):
            if (p := rec.lab_pending(concept)) is not None:
                return "pending", p
        return "missing", None
    done = _cmp_done(rec, ctx) if test == "cmp" else ctx.done(rec, test)
    if done is not None:
        return "done", done
    pending = rec.lab_pending(test) or (rec.lab_pending("bmp") if test == "cmp" else None)
    return ("pending", pending) if pending is not None else ("missing", None)


@rule(
    "R04",
    "First-tier laboratory gaps",
    CHART,
    "fasciculation and one or more first-tier tests neither resulted within its look-back window nor pending: "
    "HbA1c or fasting glucose, CBC, CMP, B12, TSH, SPEP, magnesium; plus CK, folate and B6 when weakness or "
    "myalgia, achiness, stiffness or exercise intolerance is recorded",
    (
        (
            S000,
            "First-tier labs should include fasting glucose/HbA1c, CBC, CMP, vitamin B12, TSH, and serum protein "
            "electrophoresis to exclude metabolic, endocrine, and hematologic causes of peripheral nerve "
            "hyperexcitability",
        ),
        (S001, "Test vitamin B12, B6, and folate levels to identify reversible nutritional causes"),
        (
            S002,
            "Evaluate for electrolyte abnormalities and medication effects that may contribute to fasciculations",
        ),
    ),
    suppressed_when="a critical R02 or R03 card (emergency pathway handles labs); for an established motor "
    "neuron disease an info card says it is under specialist care (or suggests neurology) instead of listing "
    "gaps; under 18 the adult tests (SPEP, HbA1c) are left out",
    rank=50,
)
def r04_lab_gaps(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    if any(r in ctx.fired and ctx.fired[r].indicator == "critical" for r in ("R02", "R03")):
        return None
    mnd = rec.has("als", "motor_neuron_disease", "spinal_muscular_atrophy")
    if mnd:
        return _established_mnd(rec, mnd)
    child = rec.age is not None and rec.age < 18
    tests = [t for t in (*CORE, *ALWAYS) if not (child and t in ("spep", "diabetes_screen"))]
    if rec.has("muscle_weakness", "myalgia_stiffness"):  # weakness or myalgia/achiness (KM R04; issue 19)
        tests += list(EXTENDED)
    hit = Hit("R04", "lab-gaps", "info")
    missing = []
    for test in tests:
        state, item = test_status(rec, ctx, test)
        if state == "missing":
            missing.append(test)
            if test == "vitamin_b6":
                # 39786-9 is pyridoxine, not the B6 status test (PLP): order by text (issue 11 s.5).
                hit.suggest.append(Suggest(test, "routine", text_only=B6_ORDER_TEXT))
            else:
                hit.suggest.append(Suggest("hba1c" if test == "diabetes_screen" else test, "routine"))
        elif state == "pending":
            hit.lines.append(f"{TEST_LABEL[test]} is pending.")
            if isinstance(item, LabResult):
                hit.basis.append(Basis.of(item))
    if not missing:
        return None
    hit.values["missing"] = ", ".join(TEST_LABEL[t] for t in missing)
    hit.values["count"] = str(len(missing))
    return hit


def _established_mnd(rec: PatientRecord, mnd: list[Fact]) -> Hit:
    """With MND established the screening list is not the point: say where care belongs."""
    hit = Hit("R04", "established-mnd", "info", [Basis.of(f) for f in mnd])
    neuro = rec.pending_order("neurology_referral") or next(iter(rec.done_orders("neurology_referral")), None)
    if neuro is not None:
        hit.basis.append(Basis.of(neuro))
        hit.values["care"] = "under specialist (neurology) care"
    else:
        hit.values["care"] = "no neurology referral or visit on file"
        hit.suggest.append(Suggest("neurology_referral", "routine", recommended=True))
    return hit


def _ck_uln(r: LabResult, fallback: float) -> float:
    return r.high if r.high is not None else fallback


@rule(
    "R05a",
    "CK markedly elevated (>1000 U/L)",
    CHART,
    "latest CK within its look-back above 1000 U/L; merged into the R01 card as a critical finding when R01 fires",
    ((S001, "significantly elevated levels (>1000 U/L) suggest muscular dystrophy"),),
    rank=60,
    folds_into=Fold("R01", "CK {value} U/L, above 1000: a myopathic process, not consistent with BFS."),
)
def r05a_ck_high(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    ck = ctx.done(rec, "ck")
    if ck is None or ck.value is None or ck.value <= 1000:
        return None
    hit = Hit("R05a", "ck-marked", "warning", [Basis.of(ck)], values={"value": f"{ck.value:g}"})
    hit.suggest += [Suggest("emg", "urgent", recommended=True), Suggest("neurology_referral", "urgent")]
    return hit


@rule(
    "R05b",
    "CK moderately elevated",
    CHART,
    "latest CK above the lab's upper limit (fallback 200 U/L) and at most 1000 U/L",
    ((S001, "moderate elevations indicate myopathy"),),
    rank=70,
)
def r05b_ck_moderate(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    ck = ctx.done(rec, "ck")
    if ck is None or ck.value is None or not _ck_uln(ck, 200.0) < ck.value <= 1000:
        return None
    return Hit("R05b", "ck-moderate", "info", [Basis.of(ck)], values={"value": f"{ck.value:g}"})


def _outside(r: LabResult, low: float, high: float) -> bool:
    if r.interpretation & ABNORMAL:
        return True
    if r.interpretation or r.value is None:
        return False
    lo = r.low if r.low is not None else low
    hi = r.high if r.high is not None else high
    return not lo <= r.value <= hi


@rule(
    "R05c",
    "Abnormal TSH",
    CHART,
    "latest TSH flagged high/low by the lab, else outside its reference range, else outside 0.4-4.5 mIU/L",
    (
        (S001, "Check thyroid-stimulating hormone (TSH) to exclude thyroid dysfunction"),
        (
            S003,
            "Fasciculations may occasionally appear in hyperthyroidism, which, in combination with muscle "
            "atrophy and weakness, may mimic amyotrophic lateral sclerosis",
        ),
    ),
    rank=80,
)
def r05c_tsh(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    tsh = ctx.done(rec, "tsh")
    if tsh is None or not _outside(tsh, 0.4, 4.5):
        return None
    hit = Hit("R05c", "tsh-abnormal", "warning", [Basis.of(tsh)])
    if ctx.done(rec, "free_t4") is None and rec.lab_pending("free_t4") is None:
        hit.suggest.append(Suggest("free_t4", "routine", recommended=True))
    return hit


@rule(
    "R05d",
    "Low or borderline vitamin B12",
    CHART,
    "latest B12 below 200 pg/mL or flagged low (warning); 200-300 pg/mL borderline (info, suggests methylmalonic acid)",
    (
        (
            S001,
            "Vitamin B12, B6, and folate deficiencies are reversible nutritional causes of peripheral neuropathy",
        ),
    ),
    rank=90,
)
def r05d_b12(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    b12 = ctx.done(rec, "vitamin_b12")
    if b12 is None:
        return None
    if b12.interpretation & LOW or (b12.value is not None and b12.value < 200):
        return Hit("R05d", "b12-low", "warning", [Basis.of(b12)])
    if b12.value is not None and 200 <= b12.value <= 300:
        hit = Hit("R05d", "b12-borderline", "info", [Basis.of(b12)])
        if ctx.done(rec, "methylmalonic_acid") is None and rec.lab_pending("methylmalonic_acid") is None:
            hit.suggest.append(Suggest("methylmalonic_acid", "routine", recommended=True))
        return hit
    return None


@rule(
    "R05e",
    "Glycaemia in the diabetic range",
    CHART,
    "latest HbA1c at least 6.5 % or fasting glucose (LOINC 1558-6 only) at least 126 mg/dL (ADA thresholds)",
    ((S001, "Obtain HbA1c to exclude diabetic neuropathy"),),
    rank=100,
)
def r05e_glycaemia(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    a1c = ctx.done(rec, "hba1c")
    fpg = next(
        (r for r in rec.results("fasting_glucose", ctx.lookback("fasting_glucose")) if r.code == "1558-6"),
        None,
    )
    basis = []
    if a1c is not None and a1c.value is not None and a1c.value >= 6.5:
        basis.append(Basis.of(a1c))
    if fpg is not None and fpg.value is not None and fpg.value >= 126:
        basis.append(Basis.of(fpg))
    return Hit("R05e", "glycaemia-diabetic", "info", basis) if basis else None


@rule(
    "R05f",
    "Ferritin below 50 ng/mL with restless legs in the differential",
    CHART,
    "restless legs syndrome recorded (active, provisional or differential) and latest ferritin below 50 ng/mL",
    ((S000, "values <50 ng/mL support RLS diagnosis and indicate need for iron supplementation"),),
    rank=110,
)
def r05f_ferritin(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    rls = rec.has("restless_legs")
    ferritin = ctx.done(rec, "ferritin")
    if not rls or ferritin is None or ferritin.value is None or ferritin.value >= 50:
        return None
    return Hit("R05f", "ferritin-low-rls", "info", [Basis.of(ferritin), *(Basis.of(f) for f in rls)])


@rule(
    "R05g",
    "Low potassium, magnesium or calcium",
    CHART,
    "latest K, Mg or Ca flagged low, or below the lab's lower limit; with neither a flag nor a range, below "
    "K 3.5 mmol/L, Mg 1.7 mg/dL or Ca 8.5 mg/dL",
    (
        (
            S002,
            "Evaluate for electrolyte abnormalities and medication effects that may contribute to fasciculations",
        ),
        (S003, "Medications containing magnesium may be recommended"),
    ),
    rank=120,
)
def r05g_electrolytes(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    low = []
    for concept in ("potassium", "magnesium_serum", "calcium"):
        r = ctx.done(rec, concept)
        if r is None:
            continue
        limit = r.low if r.low is not None else (FALLBACK_LOW[concept] if not r.interpretation else None)
        if r.interpretation & LOW or (r.value is not None and limit is not None and r.value < limit):
            low.append(r)
    if not low:
        return None
    hit = Hit("R05g", "electrolytes-low", "warning", [Basis.of(r) for r in low])
    hit.values["which"] = ", ".join(
        {"potassium": "K", "magnesium_serum": "Mg", "calcium": "Ca"}[r.concept] for r in low
    )
    return hit


@rule(
    "R05h",
    "Abnormal serum protein electrophoresis",
    CHART,
    "SPEP interpretation flagged abnormal, or an M-protein value above zero",
    (
        (
            S000,
            "to exclude metabolic, endocrine, and hematologic causes of peripheral nerve hyperexcitability",
        ),
    ),
    rank=130,
)
def r05h_spep(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    abnormal = [
        r
        for r in rec.results("spep", ctx.lookback("spep"))
        if r.interpretation & ABNORMAL
        or (r.code in ("33358-3", "33647-9") and r.value is not None and r.value > 0)
    ]
    if not abnormal:
        return None
    hit = Hit("R05h", "spep-abnormal", "warning", [Basis.of(abnormal[0])])
    m_protein = any(r.code in ("33358-3", "33647-9") and r.value is not None and r.value > 0 for r in abnormal)
    hit.values["finding"] = "Monoclonal protein" if m_protein else "Abnormal result"
    immunofixation_done = any(r.code == "25700-6" for r in rec.results("spep", ctx.lookback("spep")))
    if not immunofixation_done:
        hit.suggest.append(Suggest("spep", "routine", True, label="Serum immunofixation", code="25700-6"))
        hit.values["immunofixation"] = "yes"
    return hit


@rule(
    "R05i",
    "Positive anxiety or depression screen",
    CHART,
    "GAD-7 or PHQ-9 total score of 10 or more within 180 days (also a numeric value on the panel code); "
    "PHQ-9 item 9 (LOINC 44260-8) above 0 gives a warning to assess suicide risk",
    (
        (
            S000,
            "Treat comorbid anxiety with SSRIs or SNRIs and consider referral for cognitive behavioral therapy",
        ),
    ),
    rank=140,
)
def r05i_screen_positive(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    positive = [
        r
        for c in ("gad7_total", "phq9_total")
        if (r := ctx.done(rec, c)) is not None and r.value is not None and r.value >= 10
    ]
    item9 = rec.latest("phq9_item9", ctx.lookback("phq9_total"))
    self_harm = item9 is not None and _item9_score(item9) > 0
    if not positive and not self_harm:
        return None
    if self_harm and item9 is not None:
        hit = Hit("R05i", "screen-self-harm", "warning", [Basis.of(item9), *(Basis.of(r) for r in positive)])
    else:
        hit = Hit("R05i", "screen-positive", "info", [Basis.of(r) for r in positive])
    if positive and not rec.pending_order("cbt_referral") and not rec.done_orders("cbt_referral"):
        hit.suggest.append(Suggest("cbt_referral", "routine", recommended=True))
    return hit


def _item9_score(r: LabResult) -> float:
    """PHQ-9 item 9 as 0-3, from a number or the answer text (LOINC answer list LA6568-5..LA6571-9)."""
    if r.raw_value is not None:
        return r.raw_value
    text = r.text.strip().lower()
    if not text:
        return 0.0
    # An answer that cannot be read is surfaced rather than assumed to be "not at all".
    return ITEM9_TEXT.get(text, 1.0)


@rule(
    "R07",
    "Elevated CK with proximal weakness: inflammatory myopathy screen",
    CHART,
    "CK above the upper limit and weakness recorded as proximal (or Gowers sign), with ANA, ESR, CRP or ANCA not "
    "done within 90 days",
    (
        (S001, "Autoimmune marker panel (ANA, ESR, CRP, ANCA) if inflammatory myopathy is suspected"),
        (
            S001,
            "Dermatomyositis and polymyositis present with symmetric proximal muscle weakness developing over "
            "weeks to months, coupled with elevated muscle enzyme levels",
        ),
    ),
    rank=150,
)
def r07_myositis_screen(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    ck = ctx.done(rec, "ck")
    if ck is None or ck.value is None or ck.value <= _ck_uln(ck, 200.0):
        return None
    proximal = [
        f for f in rec.has("muscle_weakness") if "proximal" in f.label.lower() or "gower" in f.label.lower()
    ]
    if not proximal:
        return None
    hit = Hit("R07", "myositis-screen", "info", [Basis.of(ck), *(Basis.of(f) for f in proximal)])
    for concept in ("ana", "esr", "crp", "anca"):
        if ctx.done(rec, concept) is None and rec.lab_pending(concept) is None:
            hit.suggest.append(Suggest(concept, "routine"))
    return hit if hit.suggest else None


@rule(
    "R19",
    "Restless legs in the differential: ferritin",
    CHART,
    "restless legs syndrome recorded (active, provisional or differential) and no ferritin within 180 days",
    ((S000, "Check serum ferritin if RLS is in the differential"), (S000, "Do not confuse BFS with RLS")),
    rank=160,
)
def r19_rls_ferritin(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    rls = rec.has("restless_legs")
    if not rls or ctx.done(rec, "ferritin") is not None or rec.lab_pending("ferritin") is not None:
        return None
    return Hit(
        "R19", "rls-ferritin", "info", [Basis.of(f) for f in rls], [Suggest("ferritin", "routine", True)]
    )
