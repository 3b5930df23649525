"""Findings the seeds make actionable that no other rule read (issue 19, seed coverage): reflex
loss without weakness (R23), flagged first-tier results (R24), structural brainstem/cord lesions
and late poliomyelitis (R25), and nerve root or nerve compression (R26).

Why: an audit of the five seeds found the reassurance card still given with coded areflexia, a
haemoglobin flagged LL, a folate flagged L and active syringomyelia. Each rule here shows what it
found and, by its place in R20's ``suppressed_by`` and R11's list of open questions, blocks the
benign end until a clinician has looked at it.
"""

from __future__ import annotations

from cds_service.clinical.moments import CHART
from cds_service.clinical.record_model import LabResult, PatientRecord
from cds_service.clinical.rules.base import Basis, Hit, RuleContext, objective, rule
from cds_service.clinical.rules.redflags import emg_suggestion_or_note, neurology_suggestion_or_note
from cds_service.clinical.rules.workup import ABNORMAL, LOW

S000 = "000_bc010253c106cbbd.txt"
S001 = "001_cfc4d0b4b68d0f69.txt"
S003 = "003_3a25f4dd8f7e133a.txt"
S004 = "004_43916d9a7c4a1785.txt"
REFLEX_LOSS = ("areflexia", "hyporeflexia", "hypotonia")
OLDER_AGE = 75  # reduced ankle reflexes are common from about this age
# First-tier results read for flags (issue 19 s.1): what is ordered is also read. Low K, Mg and Ca
# belong to R05g (warning); B12, TSH, CK, SPEP, HbA1c and diabetic-range glucose have their own rules.
FLAG_READ = (
    "cbc",
    "cmp",
    "fasting_glucose",
    "folate",
    "vitamin_b6",
    "potassium",
    "magnesium_serum",
    "calcium",
)
R05G_CONCEPTS = frozenset({"potassium", "magnesium_serum", "calcium"})
R05G_CODES = frozenset({"2823-3", "6298-4", "19123-9", "2601-3", "17861-6", "2000-8"})  # K, Mg, Ca results
ROOT = ("root_compression", "radiculopathy", "spinal_stenosis")


@rule(
    "R23",
    "Reflex loss without weakness",
    CHART,
    "reduced or absent reflexes, or hypotonia, with fasciculation and no objective weakness (R01/R03 cover "
    "weakness): warning with EMG/NCS and neurology, naming both motor neuron disease and neuropathy; "
    f"information only from age {OLDER_AGE} or with a known polyneuropathy",
    (
        (
            S003,
            "But reflexes do not change, there are no disturbances in sensitivity, the speed of excitation "
            "conduction along the nerve does not decrease",
        ),
        (
            S000,
            "Perform a complete neurological examination focusing on muscle bulk, strength testing (MRC "
            "grading), deep tendon reflexes, and plantar responses—all should be normal in BFS",
        ),
        (
            S001,
            "Perform thorough neurological examination assessing for additional lower motor neuron signs: "
            "muscle atrophy, hypotonia, and hyporeflexia or areflexia",
        ),
        (
            S000,
            "Peripheral neuropathy causes sensory symptoms (numbness, tingling, burning) in a stocking-glove "
            "distribution with reduced ankle reflexes",
        ),
    ),
    suppressed_when="objective weakness on record, a critical R01 card, or R03 fired",
    rank=164,
)
def r23_reflex_loss(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    found = rec.has(*REFLEX_LOSS)
    if not found or objective(rec.has("muscle_weakness")) or "R03" in ctx.fired:
        return None
    r01 = ctx.fired.get("R01")
    if r01 is not None and r01.indicator == "critical":
        return None
    neuropathy = rec.has("peripheral_neuropathy")
    older = rec.age is not None and rec.age >= OLDER_AGE
    hit = Hit(
        "R23", "reflex-loss", "info" if neuropathy or older else "warning", [Basis.of(f) for f in found]
    )
    hit.basis += [Basis.of(f) for f in neuropathy]
    if neuropathy:
        hit.lines.append("Known polyneuropathy on record: reduced reflexes may belong to it.")
    elif older:
        hit.lines.append(f"Age {rec.age}: reduced ankle reflexes are common at this age.")
    emg_suggestion_or_note(rec, hit, "routine")
    if hit.indicator == "warning":
        neurology_suggestion_or_note(rec, hit, "routine")
    return hit


def flagged(r: LabResult) -> bool:
    """Outside its range by the lab's own interpretation, else by the lab's reference range (the
    seeds give no numbers for these tests, so there is no fallback limit)."""
    if r.interpretation:
        return bool(r.interpretation & ABNORMAL)
    if r.value is None:
        return False
    return (r.low is not None and r.value < r.low) or (r.high is not None and r.value > r.high)


def _describe(r: LabResult) -> str:
    if r.raw_value is not None:
        value = f"{r.raw_value:g} {r.raw_unit or ''}".strip()
    elif r.value is not None:
        value = f"{r.value:g} {r.unit or ''}".strip()
    else:
        value = r.text or "result"
    flags = "/".join(sorted(r.interpretation & ABNORMAL))
    rng = ""
    if r.low is not None or r.high is not None:
        rng = f"reference {'' if r.low is None else f'{r.low:g}'}-{'' if r.high is None else f'{r.high:g}'}"
    extra = "; ".join(x for x in (flags, rng) if x)
    return f"{r.label}: {value}" + (f" ({extra})" if extra else "")


@rule(
    "R24",
    "Flagged first-tier results",
    CHART,
    "the latest result (per test code, within the test's look-back) of a CBC component, a CMP component, glucose, "
    "folate or B6 flagged abnormal by the lab (interpretation, else outside the reference range), or K, Mg or Ca "
    "flagged high; one info card lists them (low K/Mg/Ca: R05g; diabetic-range glucose: R05e)",
    (
        (
            S000,
            "First-tier labs should include fasting glucose/HbA1c, CBC, CMP, vitamin B12, TSH, and serum protein "
            "electrophoresis to exclude metabolic, endocrine, and hematologic causes of peripheral nerve "
            "hyperexcitability",
        ),
        (
            S001,
            "Vitamin B12, B6, and folate deficiencies are reversible nutritional causes of peripheral neuropathy",
        ),
        (S004, "A diet deficiency"),
    ),
    rank=165,
)
def r24_flagged_results(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    seen: set[str] = set()
    found: list[LabResult] = []
    for concept in FLAG_READ:
        for r in rec.results(concept, ctx.lookback(concept)):
            key = r.code or f"{concept}:{r.label}"
            if key in seen:
                continue  # latest result per test only (results are newest first)
            seen.add(key)
            if not flagged(r):
                continue
            low = bool(r.interpretation & LOW) or (
                r.low is not None and r.value is not None and r.value < r.low
            )
            if (concept in R05G_CONCEPTS or r.code in R05G_CODES) and low:
                continue  # R05g's warning shows low electrolytes
            if concept == "fasting_glucose" and "R05e" in ctx.fired and not low:
                continue  # R05e shows glucose in the diabetic range
            if r.ref not in {f.ref for f in found}:
                found.append(r)
    if not found:
        return None
    # Each result with the lab's flag and range, so the card reads without opening the chart.
    hit = Hit("R24", "results-flagged", "info", [Basis(_describe(r), r.when, r.ref) for r in found])
    hit.values["count"] = str(len(found))
    return hit


@rule(
    "R25",
    "Structural brainstem or cord lesion, or late poliomyelitis",
    CHART,
    "an active diagnosis of syringomyelia/syringobulbia, a brainstem or spinal cord tumour, OPCA, Machado-Joseph "
    "disease, post-polio syndrome or sequelae of poliomyelitis (ICD-10-CM G95.0, C71.7, C72.0, D33.1, D33.4, "
    "D43.1, D43.4, G14, B91; others by text)",
    (
        (
            S003,
            "Other motor neuron lesions (tumors of the brainstem and spinal cord, syringobulbia, OPCA, "
            "Machado-Joseph disease, late manifestations of poliomyelitis) may sometimes, among other "
            "manifestations, include fasciculations",
        ),
    ),
    rank=167,
)
def r25_structural(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    found = rec.has("structural_motor_lesion")
    if not found:
        return None
    hit = Hit("R25", "structural-lesion", "info", [Basis.of(f) for f in found])
    hit.values["lesion"] = ", ".join(sorted({f.label for f in found}))
    return hit


@rule(
    "R26",
    "Nerve root or nerve compression",
    CHART,
    "an active radiculopathy, spondylosis with radiculopathy, nerve root/plexus disorder or compression, "
    "post-laminectomy syndrome, spinal fusion status (ICD-10-CM M47.2-, M54.1-, G54, G55, M96.1, Z98.1; "
    "SNOMED radiculopathy/sciatica) or lumbar spinal stenosis",
    (
        (
            S003,
            "These lesions may cause fasciculations, myokymia, or cramps in the muscles innervated by the root or "
            "nerve. These symptoms may persist after surgical treatment of compressive radiculopathy",
        ),
        (S004, "Chronic denervation of muscle due to disc compression of nerve exiting the spinal cord"),
        (
            S001,
            "Exclude spinal stenosis, hip/ankle arthritis, and nerve root compression through careful history",
        ),
    ),
    rank=168,
)
def r26_root_compression(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    found = rec.has(*ROOT)
    if not found:
        return None
    unique = list({f.ref: f for f in found}.values())
    hit = Hit("R26", "root-compression", "info", [Basis.of(f) for f in unique])
    hit.values["what"] = ", ".join(sorted({f.label for f in unique}))
    return hit


@rule(
    "R27",
    "Neuromyotonia: look for its associations",
    CHART,
    "neuromyotonia (Isaacs syndrome) on record: an info card listing the associations seed 003 names "
    "(hereditary motor and sensory neuropathy, CIDP, toxic neuropathy, malignancy, myasthenia), with any "
    "of them already on record",
    (
        (
            S003,
            "Isaacs syndrome is sometimes observed in hereditary motor and sensory neuropathies, in CIDP, toxic "
            "neuropathies and neuropathies of unknown origin, in combination with malignant neoplasm without "
            "neuropathy, in combination with myasthenia",
        ),
    ),
    rank=169,
)
def r27_neuromyotonia(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    found = rec.has("neuromyotonia")
    if not found:
        return None
    hit = Hit("R27", "neuromyotonia-associations", "info", [Basis.of(f) for f in found])
    associated = rec.has("neuromyotonia_association", "peripheral_neuropathy")
    if associated:
        hit.lines.append("On record: " + ", ".join(sorted({f.label for f in associated})) + ".")
        hit.basis += [Basis.of(f) for f in associated]
    else:
        hit.lines.append("None of these is on record.")
    return hit


@rule(
    "R28",
    "Drug overdose or envenomation",
    CHART,
    "an active drug overdose, anticholinergic poisoning or envenomation (snake, scorpion, spider, other "
    "arthropod; ICD-10-CM T63.0, T63.2-T63.4, T44.3, or by text)",
    (
        (
            S003,
            "Rattlesnake, scorpion, black widow spider and some stinging insect bites can cause cramps, myalgias "
            "and fasciculations",
        ),
        (
            S003,
            "Iatrogenic fasciculations have been described with the use of penicillin and overdose of "
            "anticholinergics",
        ),
        (S004, "Drug overdose"),
    ),
    rank=162,
)
def r28_toxic(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
    found = rec.has("envenomation_overdose")
    if not found:
        return None
    hit = Hit("R28", "toxic-cause", "info", [Basis.of(f) for f in found])
    hit.values["what"] = ", ".join(sorted({f.label for f in found}))
    return hit
