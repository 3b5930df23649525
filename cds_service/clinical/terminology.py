"""Value sets as data, compiled once at import into O(1) lookups.

Matching is by (system, code); for ICD-10-CM also by prefix (normalised without the dot, so
``R25.3`` and ``R253`` match alike); by text only for the concepts whose entry lists patterns
(e.g. EMG orders that sites code locally). Emitting is stricter than matching: only codes with
high or medium confidence may appear in a resource we send, and never an unverified one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cds_service.jsonshape import items

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"

EMITTABLE = frozenset({"high", "medium"})
TEXT_MEMO_SIZE = 20_000  # distinct texts remembered by match_text ...
TEXT_MEMO_MAX_LEN = 200  # ... each at most this long, so the memo stays under ~10 MB
_DATA = Path(__file__).resolve().parent / "data" / "terminology.json"


def _norm_icd(code: str) -> str:
    return code.replace(".", "").upper().strip()


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    confidence: str

    @property
    def emittable(self) -> bool:
        return self.confidence in EMITTABLE

    def as_coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Concept:
    id: str
    label: str
    category: str
    codes: tuple[Code, ...]
    icd_prefixes: tuple[str, ...]
    text: tuple[re.Pattern[str], ...]
    members: tuple[str, ...] = ()

    def primary(self, system: str | None = None) -> Code | None:
        """First emittable code (of ``system`` if given): what a suggestion orders with."""
        for c in self.codes:
            if c.emittable and (system is None or c.system == system):
                return c
        return None


class Terminology:
    """All concepts, with lookup tables built once."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.concepts: dict[str, Concept] = {}
        self._by_code: dict[tuple[str, str], set[str]] = {}
        self._by_prefix: dict[str, set[str]] = {}
        self._text: list[tuple[re.Pattern[str], str]] = []
        self._display: dict[tuple[str, str], str] = {}
        for cid, raw in data["concepts"].items():
            codes = tuple(
                Code(c["system"], c["code"], c.get("display", ""), c["confidence"]) for c in raw["codings"]
            )
            prefixes = tuple(_norm_icd(p) for p in raw.get("icd10cm_prefixes", []))
            text = tuple(re.compile(p, re.IGNORECASE) for p in raw.get("text", []))
            concept = Concept(
                cid,
                raw["label"],
                raw.get("category", ""),
                codes,
                prefixes,
                text,
                tuple(raw.get("members", [])),
            )
            self.concepts[cid] = concept
            for c in codes:
                key = (c.system, _norm_icd(c.code) if c.system == ICD10CM else c.code)
                self._by_code.setdefault(key, set()).add(cid)
                if c.display:
                    self._display.setdefault(key, c.display)
            for p in prefixes:
                self._by_prefix.setdefault(p, set()).add(cid)
            for pattern in text:
                self._text.append((pattern, cid))
        # Texts repeat (every vital sign of every visit has the same display), and 31 case-blind
        # patterns cost ~15 us per text: the answers are remembered, up to a bound (docs/performance.md).
        self._text_memo: dict[str, frozenset[str]] = {}
        self.products: dict[str, str] = dict(data.get("rxnorm_products", {}))
        self.drug_classes: dict[str, list[str]] = dict(data.get("drug_classes", {}))
        self.class_of: dict[str, str] = {m: g for g, ms in self.drug_classes.items() for m in ms}
        self.thresholds: dict[str, Any] = dict(data.get("thresholds", {}))
        # Named groups of concepts a rule reads as one (e.g. diagnoses that explain fasciculations).
        self.value_sets: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in data.get("value_sets", {}).items()
        }
        self._drug_names = [
            (re.compile(rf"\b{re.escape(self._ingredient_name(cid))}\b", re.IGNORECASE), cid)
            for cid in self.class_of
            if self.concepts.get(cid) and self._ingredient_name(cid)
        ]

    def _ingredient_name(self, cid: str) -> str:
        concept = self.concepts[cid]
        rx = concept.primary(RXNORM) or next((c for c in concept.codes if c.system == RXNORM), None)
        name = (rx.display if rx else "") or cid.replace("_", " ")
        return name.split(",")[0].strip().lower()

    def concept(self, cid: str) -> Concept:
        return self.concepts[cid]

    def match_coding(self, system: Any, code: Any) -> set[str]:
        """Concept ids of one coding (exact, then ICD-10-CM prefix)."""
        if not isinstance(system, str) or not isinstance(code, str):
            return set()
        if system == ICD10CM:
            norm = _norm_icd(code)
            found = set(self._by_code.get((system, norm), ()))
            for i in range(3, len(norm) + 1):
                found |= self._by_prefix.get(norm[:i], set())
            return found
        return set(self._by_code.get((system, code), ()))

    def label(self, cc: Any, fallback: str) -> str:
        """Text or display the EHR sent, else our display for a known code, else the code itself."""
        if not isinstance(cc, dict):
            return fallback
        if isinstance(cc.get("text"), str) and cc["text"]:
            return str(cc["text"])
        codings = items(cc.get("coding"))
        for c in codings:
            if isinstance(c.get("display"), str) and c["display"]:
                return str(c["display"])
        for c in codings:
            system, code = c.get("system"), c.get("code")
            if isinstance(system, str) and isinstance(code, str):
                key = (system, _norm_icd(code) if system == ICD10CM else code)
                if key in self._display:
                    return f"{self._display[key]} ({code})"
        return next((str(c["code"]) for c in codings if c.get("code")), fallback)

    def match_text(self, text: Any) -> set[str]:
        if not isinstance(text, str) or not text:
            return set()
        found = self._text_memo.get(text)
        if found is None:
            found = frozenset(cid for pattern, cid in self._text if pattern.search(text))
            if len(text) <= TEXT_MEMO_MAX_LEN:
                if len(self._text_memo) >= TEXT_MEMO_SIZE:
                    self._text_memo.clear()  # bounded memory; refilling costs what not caching would
                self._text_memo[text] = found
        return set(found)

    def match_cc(self, cc: Any, use_text: bool = True) -> set[str]:
        """Concepts of a CodeableConcept: every coding, plus text patterns when allowed."""
        if not isinstance(cc, dict):
            return set()
        found: set[str] = set()
        for coding in items(cc.get("coding")):
            found |= self.match_coding(coding.get("system"), coding.get("code"))
            if use_text and not found:
                found |= self.match_text(coding.get("display"))
        if use_text:
            found |= self.match_text(cc.get("text"))
        return found

    def match_drug(self, cc: Any) -> set[str]:
        """Ingredient concepts of a medication CodeableConcept: ingredient RxCUI, product table,
        then the ingredient name as a whole word in the display or text."""
        if not isinstance(cc, dict):
            return set()
        found: set[str] = set()
        texts: list[str] = []
        for coding in items(cc.get("coding")):
            if coding.get("system") == RXNORM and isinstance(coding.get("code"), str):
                found |= self._by_code.get((RXNORM, coding["code"]), set())
                if coding["code"] in self.products:
                    found.add(self.products[coding["code"]])
            if isinstance(coding.get("display"), str):
                texts.append(coding["display"])
        if isinstance(cc.get("text"), str):
            texts.append(cc["text"])
        for text in texts:
            found |= self.match_text(text) & {"cyclobenzaprine"}
            for pattern, cid in self._drug_names:
                if pattern.search(text) and not _salt_only(text, pattern):
                    found.add(cid)
        return found

    def codes_for(self, cids: Iterable[str], system: str) -> Iterator[str]:
        """Every code of ``system`` in the given concepts (for search templates)."""
        for cid in cids:
            for c in self.concepts[cid].codes:
                if c.system == system:
                    yield c.code


def _salt_only(text: str, pattern: re.Pattern[str]) -> bool:
    """'pitavastatin magnesium' names a salt, not the ingredient: the word follows another drug."""
    m = pattern.search(text)
    if m is None or m.start() == 0:
        return False
    before = text[: m.start()].rstrip().split(" ")[-1].lower()
    return before.isalpha() and before.endswith(("statin", "prazole", "ate"))


@lru_cache(maxsize=1)
def terminology() -> Terminology:
    """The process-wide terminology (loaded once)."""
    return Terminology(json.loads(_DATA.read_text()))
