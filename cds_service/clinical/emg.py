"""One reading of an EMG/NCS report, shared by every rule that looks at one.

Why one classifier: reassurance (R20), symptomatic therapy (R11), the repeat-EMG check (R09) and
the abnormal-EMG card (R21) must agree on what a report says. Before, two regular expressions read
"no fibrillation potentials or positive sharp waves" as abnormal (the negation covered only the
first item) and a myopathic report as normal, so the order hooks offered to delete a repeat EMG.

Order of evidence: a coded ``conclusionCode`` first (SNOMED Normal, or a diagnosis concept the
terminology knows), then the conclusion text with negated spans removed. Negation runs from a cue
("no", "without", "absence of", "negative for", "not", "nor") to the end of its clause, so lists
("no X or Y", "no X, Y or Z") are covered; a clause ends at a full stop, semicolon, colon or a
contrast word ("but", "however", "although", "whereas"). Anything neither clearly normal nor in
one abnormal class is *indeterminate*: never read as normal.
"""

from __future__ import annotations

import re

from cds_service.clinical.record_model import Order

NORMAL = "normal"
DENERVATION = "active-denervation"  # fibrillations / positive sharp waves / widespread neurogenic change
NEUROGENIC = "chronic-neurogenic"  # minor chronic neurogenic change only (can occur in BFS)
MYOPATHIC = "myopathic"
NEUROPATHIC = "neuropathic"  # polyneuropathy, demyelination, conduction block, radiculopathy, ...
INDETERMINATE = "indeterminate"
CLASSES = (NORMAL, DENERVATION, NEUROGENIC, MYOPATHIC, NEUROPATHIC, INDETERMINATE)
LABEL = {
    NORMAL: "normal",
    DENERVATION: "active denervation or widespread neurogenic change",
    NEUROGENIC: "minor chronic neurogenic change",
    MYOPATHIC: "myopathic pattern",
    NEUROPATHIC: "neuropathic pattern",
    INDETERMINATE: "not classifiable as normal",
}

NORMAL_CODE = "17621005"  # SNOMED CT Normal (qualifier value)
CONCEPT_CLASS = {
    "als": DENERVATION,
    "motor_neuron_disease": DENERVATION,
    "spinal_muscular_atrophy": DENERVATION,
    "myopathy": MYOPATHIC,
    "inflammatory_myopathy": MYOPATHIC,
    "muscular_dystrophy": MYOPATHIC,
    "peripheral_neuropathy": NEUROPATHIC,
    "guillain_barre": NEUROPATHIC,
    "radiculopathy": NEUROPATHIC,
}

_CLAUSE = re.compile(r"[.;:\n]|\b(?:but|however|although|whereas)\b", re.I)
_PRE_NEGATION = re.compile(r"\b(?:no|without|absence of|absent|negative for|not|nor|free of|lack of)\b", re.I)
_POST_NEGATION = re.compile(r"\b(?:absent|not (?:seen|present|found|identified|observed)|none seen)\b", re.I)
_MYOPATHIC = re.compile(
    r"myopath|(?<!neuro)myotonic|myositis|muscular dystrophy|short[- ]duration|small[- ]amplitude|"
    r"low[- ]amplitude,? short|early recruitment|rapid recruitment",
    re.I,
)
_DENERVATION = re.compile(
    r"fibrillation|positive sharp|(?<!chronic )(?<!chronic partial )denervation|"
    r"widespread (?:chronic )?neurogenic|motor neuron(?:e)? disease|amyotrophic|\bALS\b",
    re.I,
)
_NEUROPATHIC = re.compile(
    r"neuropath|radiculopath|plexopath|conduction block|demyelinat|\baxonal\b|"
    r"slow(?:ed|ing)? (?:of )?(?:nerve )?conduction|prolonged (?:distal |f[- ]wave )?latenc|"
    r"neuromyotonic|myokymic",
    re.I,
)
_FOCAL_NERVE = re.compile(r"radiculopath|plexopath|polyneuropath|neuropath", re.I)
_NEUROGENIC = re.compile(
    r"neurogenic|reinnervation|(?:reduced|decreased) recruitment|large[- ]amplitude|long[- ]duration|"
    r"polyphasic|complex repetitive|chronic (?:partial )?denervation",
    re.I,
)
_NORMAL = re.compile(
    r"\bnormal\b|within normal limits|unremarkable|fasciculation potentials only|benign fasciculation", re.I
)


def affirmed_text(text: str) -> str:
    """The conclusion with every negated span removed (what the report asserts)."""
    kept = []
    for clause in _CLAUSE.split(text):
        if not clause:
            continue
        pre = _PRE_NEGATION.search(clause)
        if pre is not None:
            clause = clause[: pre.start()]
        post = _POST_NEGATION.search(clause)
        if post is not None:
            start = clause.rfind(",", 0, post.start()) + 1
            clause = clause[:start]
        kept.append(clause)
    return " . ".join(kept)


def classify_text(text: str) -> str:
    """Class of a free-text EMG conclusion (see module docstring)."""
    said = affirmed_text(text)
    if _MYOPATHIC.search(said):
        return MYOPATHIC
    if _DENERVATION.search(said) and not _FOCAL_NERVE.search(said):
        return DENERVATION
    if _NEUROPATHIC.search(said):
        return NEUROPATHIC
    if _DENERVATION.search(said):
        return DENERVATION
    if _NEUROGENIC.search(said):
        return NEUROGENIC
    if re.search(r"\babnormal\b", said, re.I):
        return INDETERMINATE
    if _NORMAL.search(said):
        return NORMAL
    return INDETERMINATE


def classify(report: Order) -> str:
    """Class of an EMG/NCS DiagnosticReport: coded conclusion first, then the text."""
    coded = {CONCEPT_CLASS[c] for c in report.conclusion_concepts if c in CONCEPT_CLASS}
    for cls in (MYOPATHIC, DENERVATION, NEUROPATHIC):
        if cls in coded:
            return cls
    if NORMAL_CODE in report.conclusion_codes:
        return NORMAL
    return classify_text(report.conclusion)
