"""Rebuild cds_service/clinical/data/terminology.json from the team's clinical code catalogue.

Why a script: the catalogue (shared/clinical/codes.json) is the reviewed source of truth with
confidence and provenance per code; the service needs a compact, matching-oriented form of it.
Running this after the catalogue changes keeps the two in step, and the diff of the generated file
is what a clinical reviewer checks. Codes marked UNVERIFIED are dropped here (they can never match
or be emitted); low-confidence codes are kept for matching only (the loader refuses to emit them).

Usage: python scripts/build_terminology.py [path/to/codes.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "clinical" / "codes.json"
OUT = ROOT / "cds_service" / "clinical" / "data" / "terminology.json"

# Matching by text, where the catalogue says codes alone are not enough (our own patterns, all
# case-insensitive regular expressions matched against CodeableConcept.text / Coding.display).
TEXT_PATTERNS: dict[str, list[str]] = {
    "benign_fasciculation_syndrome": [r"\bbenign fasciculation"],
    "cramp_fasciculation_syndrome": [r"cramp[- ]fasciculation"],
    "neuromyotonia": [r"neuromyotonia", r"\bisaacs"],
    "babinski_sign": [r"babinski", r"extensor plantar", r"upgoing toe"],
    "hoffmann_sign": [r"hoffmann?'?s? (sign|reflex)"],
    "emg": [r"\bemg\b", r"electromyog"],
    "ncs": [r"nerve conduction", r"\bncs\b", r"\bncv\b"],
    "abi_result": [r"\babi\b", r"ankle[- ]brachial"],
    "abi_test": [r"\babi\b", r"ankle[- ]brachial"],
    "mri_lumbar_spine": [r"\bmri?\b.*\blumbar", r"magnetic resonance.*lumbar"],
    "mri_brain": [r"\bmri?\b.*\b(brain|head)\b", r"magnetic resonance.*brain"],
    "ct_head": [r"\bct\b.*\b(head|brain)\b", r"computed tomography.*(head|brain)"],
    "neurology_referral": [r"referral to neurolog", r"neurology (referral|consult)"],
    "cyclobenzaprine": [r"\bcyclobenzaprine\b", r"\bflexeril\b", r"\bamrix\b"],
    # A fasciculation written only as free text is in scope by default (issue 11 section 5);
    # "twitch" alone is not (it stays behind CDS_TRIGGER_FREE_TEXT).
    "fasciculation": [r"fascicul"],
    "muscle_strength_grade": [r"\bMRC\b", r"muscle (strength|power)", r"strength grade", r"power grade"],
    "leg_symptoms": [
        r"claudication",
        r"\b(leg|calf|calves|thigh|foot|feet|lower (limb|extremit\w*))\b.{0,20}\b(pain|cramp|weak|numb|fatigue|tired|ache)",
        r"\b(pain|cramp\w*|weakness|numbness|fatigue|ache)\b.{0,20}\b(leg|legs|calf|calves|thigh|foot|feet|lower (limb|extremit\w*))\b",
        r"\b(pain|weak\w*|fatigue|cramp\w*|numb\w*)\b.{0,30}\b(on|with|during|after) (exertion|walking)",
    ],
    # Issue 19 (seed coverage): matching only, never emitted.
    "structural_motor_lesion": [
        r"syringomyel", r"syringobulb", r"post-?polio", r"poliomyelitis", r"machado[- ]joseph",
        r"spinocerebellar ataxia type 3", r"olivopontocerebellar", r"\bOPCA\b",
        r"brain ?stem (tumou?r|glioma|neoplasm|mass)", r"spinal cord (tumou?r|neoplasm|mass)",
    ],
    "root_compression": [
        r"radiculopath", r"nerve root compression", r"root compression", r"spondylosis with radiculopathy",
        r"post-?laminectomy", r"failed back surgery",
    ],
    "hypotonia": [r"hypoton", r"\b(reduced|decreased|low) (muscle )?tone\b"],
    "myalgia_stiffness": [
        r"myalgia", r"muscle (ache|aches|aching|pain|stiffness)", r"achiness", r"\baching muscles\b",
        r"exercise intolerance", r"(poor|reduced) exercise tolerance",
    ],
    "hemifacial_spasm": [r"hemifacial spasm", r"facial hemispasm"],
    "post_facial_palsy": [r"post-?paralytic (facial )?contracture", r"(after|post|following) bell'?s palsy",
                          r"facial (nerve )?synkinesis"],
    "envenomation_overdose": [r"envenom", r"snake ?bite", r"scorpion", r"black widow", r"overdose"],
    "neuromyotonia_association": [
        r"charcot[- ]marie[- ]tooth", r"hereditary motor and sensory neuropathy", r"\bCIDP\b",
        r"chronic inflammatory demyelinating", r"toxic (poly)?neuropathy", r"myasthenia",
        r"malignan", r"\bcancer\b", r"carcinoma", r"lymphoma", r"thymoma",
    ],
    "reflex_exam": [r"\breflex(es)?\b", r"tendon (jerk|reflex)", r"\bDTRs?\b", r"(knee|ankle|biceps|triceps|supinator) jerk"],
    "plantar_exam": [r"plantar (response|reflex)"],
    "bulk_exam": [r"muscle (bulk|mass|volume)", r"^bulk\b"],
    "compression_stockings": [
        r"compression (stocking|hose|sock)",
        r"graduated compression",
        r"\bted hose\b",
    ],
}

# Codes the catalogue lists under a concept only as an approximation (cramp-fasciculation syndrome
# has no code of its own; R25.3 alone is plain fasciculation and R25.2 plain cramps, which the
# fasciculation and muscle_cramps concepts already carry). Matching them here would make every
# fasciculation a cramp-fasciculation syndrome, so these concepts match by text only.
TEXT_ONLY = {"cramp_fasciculation_syndrome"}

# Concepts the rules need that the catalogue does not list as such (matching only, never emitted).
EXTRA_CONCEPTS: dict[str, dict[str, Any]] = {
    "stroke_history": {
        "label": "History of stroke / sequelae (must not fire the emergent stroke rule)",
        "codings": [],
        "icd10cm_prefixes": ["I69", "Z86.73"],
        "source": "ICD-10-CM tabular: I69 Sequelae of cerebrovascular disease; Z86.73 Personal history of TIA and cerebral infarction",
    },
    "compression_stockings": {
        "label": "Compression stockings (no verified code; text match only)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "seed 002; knowledge.md R16",
    },
    "reflex_abnormal": {
        "label": "Abnormal reflex, type not documented (bare ICD-10-CM R29.2)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "issue 11 section 5; ICD-10-CM tabular R29.2 Abnormal reflex",
    },
    # Pregnancy (issue 11 section 4): matching only, never emitted. SNOMED 77386006 Pregnant and
    # LOINC 82810-3 Pregnancy status with its answer LA15173-0 Pregnant are the IPS pregnancy-status
    # value set and its LOINC-to-SNOMED map (HL7 IPS IG 1.1.0); ICD-10-CM Z33 pregnant state,
    # Z34 supervision of normal pregnancy, Z3A weeks of gestation, O00-O9A the pregnancy chapter.
    "pregnancy": {
        "label": "Pregnancy (matching only)",
        "category": "context",
        "codings": [
            {"system": "http://snomed.info/sct", "code": "77386006", "display": "Pregnant", "confidence": "low"},
            {"system": "http://loinc.org", "code": "LA15173-0", "display": "Pregnant", "confidence": "low"},
        ],
        "icd10cm_prefixes": ["Z33", "Z34", "Z3A", *[f"O{n:02d}" for n in range(100)], "O9A"],
        "source": "HL7 IPS IG 1.1.0 pregnancy status value set and ConceptMap; ICD-10-CM tabular chapter 15, Z33, Z34, Z3A",
    },
    "pregnancy_status": {
        "label": "Pregnancy status observation (LOINC 82810-3; matching only, read for its answer)",
        "category": "lab",
        "codings": [
            {"system": "http://loinc.org", "code": "82810-3", "display": "Pregnancy status", "confidence": "low"}
        ],
        "icd10cm_prefixes": [],
        "source": "HL7 IPS IG 1.1.0 (Observation pregnancy status uses LOINC 82810-3)",
    },
    "phq9_item9": {
        "label": "PHQ-9 item 9: thoughts of being better off dead or of self-harm (matching only)",
        "category": "lab",
        "codings": [
            {
                "system": "http://loinc.org",
                "code": "44260-8",
                "display": "Thoughts that you would be better off dead, or of hurting yourself in some way",
                "confidence": "low",
            }
        ],
        "icd10cm_prefixes": [],
        "source": "US Core STU7 example Observation PHQ9-item-example-44260-8 (LOINC 44260-8, answers LA6568-5..LA6571-9)",
    },
    "muscle_strength_grade": {
        "label": "Muscle strength grade (MRC 0-5; matched by text, no verified code)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "knowledge.md section 2 (prefer coded exam findings, MRC grade < 5); issue 11 section 5",
    },
    "leg_symptoms": {
        "label": "Leg or exertional symptoms: claudication, leg pain, calf cramps (PAD check, R17)",
        "codings": [],
        "icd10cm_prefixes": ["M79.604", "M79.605", "M79.606", "M79.65", "M79.66", "M79.67", "R26.2"],
        "source": "ICD-10-CM tabular: M79.604-M79.606 pain in leg, M79.65- thigh, M79.66- lower leg, M79.67- foot; R26.2 difficulty in walking; seed 001 (leg symptoms during walking)",
    },
    # Issue 19: findings the seeds make actionable. ICD-10-CM codes checked against the CMS tabular
    # shipped in simple-icd-10-cm 1.5.0 (2026-02); all matching only (no code here is ever emitted).
    "structural_motor_lesion": {
        "label": "Structural brainstem/cord lesion or late poliomyelitis (matching only)",
        "codings": [],
        "icd10cm_prefixes": ["G95.0", "G14", "B91", "C71.7", "C72.0", "D33.1", "D33.4", "D43.1", "D43.4"],
        "source": "seed 003 (tumours of the brainstem and spinal cord, syringobulbia, OPCA, Machado-Joseph disease, late manifestations of poliomyelitis); ICD-10-CM tabular G95.0 Syringomyelia and syringobulbia, G14 Postpolio syndrome, B91 Sequelae of poliomyelitis, C71.7/C72.0 malignant and D33.1/D33.4/D43.1/D43.4 benign or uncertain neoplasms of the infratentorial brain and spinal cord; OPCA and Machado-Joseph disease by text only",
    },
    "root_compression": {
        "label": "Nerve root or nerve compression, incl. after spine surgery (matching only)",
        "codings": [],
        "icd10cm_prefixes": ["M47.2", "M54.1", "G54", "G55", "M96.1", "Z98.1"],
        "source": "seeds 001, 003, 004; ICD-10-CM tabular M47.2- Other spondylosis with radiculopathy, M54.1- Radiculopathy, G54 Nerve root and plexus disorders, G55 Nerve root and plexus compressions in diseases classified elsewhere, M96.1 Postlaminectomy syndrome, Z98.1 Arthrodesis status",
    },
    "hypotonia": {
        "label": "Hypotonia (LMN sign; matched by text, no verified code)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "seed 001 (muscle atrophy, hypotonia, and hyporeflexia or areflexia)",
    },
    "myalgia_stiffness": {
        "label": "Myalgia, muscle ache or stiffness, exercise intolerance (matching only)",
        "codings": [],
        "icd10cm_prefixes": ["M79.1"],
        "source": "seed 001 (muscle aching, cramps, stiffness, exercise intolerance); seed 003 (myalgias, poor exercise tolerance); ICD-10-CM tabular M79.1- Myalgia",
    },
    "hemifacial_spasm": {
        "label": "Hemifacial spasm (matching only)",
        "codings": [],
        "icd10cm_prefixes": ["G51.3"],
        "source": "seed 003 (facial hemispasm); ICD-10-CM tabular G51.3 Clonic hemifacial spasm",
    },
    "post_facial_palsy": {
        "label": "Post-paralytic facial contracture after facial (Bell's) palsy (text only)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "seed 003 (post-paralytic contracture of facial muscles)",
    },
    "envenomation_overdose": {
        "label": "Drug overdose or envenomation (matching only)",
        "codings": [],
        "icd10cm_prefixes": ["T63.0", "T63.2", "T63.3", "T63.4", "T44.3"],
        "source": "seed 003 (rattlesnake, scorpion, black widow spider and stinging insect bites; overdose of anticholinergics); seed 004 (drug overdose); ICD-10-CM tabular T63.0 snake venom, T63.2 scorpion, T63.3 spider, T63.4 other arthropods, T44.3 anticholinergic poisoning",
    },
    "neuromyotonia_association": {
        "label": "Condition associated with neuromyotonia: hereditary/CIDP/toxic neuropathy, malignancy, myasthenia (matching only)",
        "codings": [],
        "icd10cm_prefixes": ["G60.0", "G61.81", "G62.2", "G70.0", *[f"C{n:02d}" for n in range(97)]],
        "source": "seed 003 (Isaacs syndrome in hereditary motor and sensory neuropathies, CIDP, toxic neuropathies, with malignant neoplasm, with myasthenia); ICD-10-CM tabular G60.0 Hereditary motor and sensory neuropathy, G61.81 CIDP, G62.2 Polyneuropathy due to other toxic agents, G70.0- Myasthenia gravis, C00-C96 malignant neoplasms",
    },
    "reflex_exam": {
        "label": "Reflex examination (flowsheet, matched by text)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "seed 000 (deep tendon reflexes ... should be normal in BFS); docs/exam-mapping.md",
    },
    "plantar_exam": {
        "label": "Plantar response examination (flowsheet, matched by text)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "seed 000 (plantar responses ... should be normal in BFS); docs/exam-mapping.md",
    },
    "bulk_exam": {
        "label": "Muscle bulk examination (flowsheet, matched by text)",
        "codings": [],
        "icd10cm_prefixes": [],
        "source": "seed 000 (muscle bulk ... should be normal in BFS); docs/exam-mapping.md",
    },
    "acute_msk_spasm": {
        "label": "Acute painful musculoskeletal condition with spasm (cyclobenzaprine indication)",
        "codings": [],
        "icd10cm_prefixes": ["M62.83", "S39.01", "S16.1", "S13.4", "S33.5"],
        "source": "ICD-10-CM tabular: M62.83- Muscle spasm; S39.01-/S16.1-/S13.4-/S33.5- strain and sprain codes",
    },
}


# Result codes the catalogue lacks, matched but never emitted (confidence low): pyridoxal
# 5'-phosphate results, which is how most labs report vitamin B6 status (issue 11 section 5).
EXTRA_CODINGS: dict[str, list[dict[str, str]]] = {
    # Issue 19: the CBC component the catalogue lacks, read by R24 for its flag (matching only).
    "cbc": [
        {"system": "http://loinc.org", "code": "787-2", "display": "MCV [Entitic volume] by Automated count (matching only)", "confidence": "low"},
    ],
    "vitamin_b6": [
        {"system": "http://loinc.org", "code": "2641-9", "display": "Pyridoxal phosphate (vitamin B6 status; matching only)", "confidence": "low"},
        {"system": "http://loinc.org", "code": "62236-5", "display": "Pyridoxal phosphate (vitamin B6 status; matching only)", "confidence": "low"},
    ],
}

# Value sets of concepts the rules read as one group (issue 11 section 1): active diagnoses that
# explain or outrank fasciculations, so reassurance and symptomatic-drug cards must not appear.
VALUE_SETS: dict[str, list[str]] = {
    "explains_fasciculation": [
        "als",
        "motor_neuron_disease",
        "spinal_muscular_atrophy",
        "myopathy",
        "inflammatory_myopathy",
        "muscular_dystrophy",
        "peripheral_neuropathy",
        "radiculopathy",
        "guillain_barre",
        "hyperthyroidism",
        "multiple_sclerosis",
        "neuromyotonia",
        # issue 19: structural lesions and root compression explain fasciculations too
        "structural_motor_lesion",
        "root_compression",
    ],
    "established_mnd": ["als", "motor_neuron_disease", "spinal_muscular_atrophy"],
}


def _coding(entry: dict[str, Any]) -> dict[str, str] | None:
    code = str(entry.get("code", ""))
    if not code or code.upper().startswith("UNVERIFIED") or entry.get("system") == "urn:composite":
        return None
    return {
        "system": entry["system"],
        "code": code,
        "display": entry.get("display", ""),
        "confidence": entry.get("confidence", "low"),
    }


def build(src: Path) -> dict[str, Any]:
    catalogue = json.loads(src.read_text())
    concepts: dict[str, Any] = {}
    for cid, raw in catalogue["concepts"].items():
        if cid.startswith("_") or not isinstance(raw, dict):
            continue
        codings = [c for c in (_coding(raw), *(_coding(a) for a in raw.get("also", []))) if c]
        if cid in TEXT_ONLY:
            codings = []
        codings += EXTRA_CODINGS.get(cid, [])
        match = raw.get("match") or {}
        entry: dict[str, Any] = {
            "label": raw.get("label", cid),
            "category": raw.get("category", ""),
            "codings": codings,
            "icd10cm_prefixes": [] if cid in TEXT_ONLY else list(match.get("icd10cm_prefix", [])),
        }
        if cid == "upper_motor_neuron_signs":
            entry["members"] = raw["code"].split(",")
        if cid in TEXT_PATTERNS:
            entry["text"] = TEXT_PATTERNS[cid]
        concepts[cid] = entry
    for cid, extra in EXTRA_CONCEPTS.items():
        concepts[cid] = {"category": "extra", **extra}
        if cid in TEXT_PATTERNS:
            concepts[cid]["text"] = TEXT_PATTERNS[cid]
    groups = catalogue["concepts"]["_drug_class_groups"]["groups"]
    products: dict[str, str] = {}
    for cid, items in catalogue["rxnorm_products_partial"]["by_concept"].items():
        for item in items:
            products[str(item["code"])] = cid
    return {
        "about": (
            "Generated by scripts/build_terminology.py from the clinical code catalogue "
            "(shared/clinical/codes.json). Edit the catalogue or the script, not this file."
        ),
        "concepts": concepts,
        "drug_classes": groups,
        "rxnorm_products": dict(sorted(products.items())),
        "thresholds": catalogue["thresholds"],
        "value_sets": VALUE_SETS,
    }


def main() -> int:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SRC
    data = build(src)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(
        f"wrote {OUT.relative_to(ROOT)}: {len(data['concepts'])} concepts, {len(data['rxnorm_products'])} products"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
