"""The source documents the rules quote, as readers should see them cited: the article's title,
where it was published, and the year, instead of the seed file name the rules are keyed by.

Taken from each document's own header (title line, publisher named in the page, "Last updated",
"Last reviewed" or "Last revised" date); tests/test_sources.py re-reads the headers and checks
every entry. The three question-and-answer articles do not name their site; they are cited as
what their header says they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    title: str
    publisher: str
    year: int
    author: str | None = None

    def citation(self) -> str:
        """``Title. Publisher, year`` (with the author first when the header names one)."""
        by = f"{self.author}: " if self.author else ""
        return f"{by}{self.title}. {self.publisher}, {self.year}"


_QA_SITE = "clinical Q&A article (site not named)"

SOURCES: dict[str, Source] = {
    "000_bc010253c106cbbd.txt": Source("New Involuntary Leg Fasciculation: Evaluation and Management", _QA_SITE, 2026),
    "001_cfc4d0b4b68d0f69.txt": Source(
        "Mild Muscle Fasciculations in Legs with Achiness and Weakness: Causes", _QA_SITE, 2025
    ),
    "002_0d1c86e06a6f96ad.txt": Source("Treatment of Benign Fasciculations of the Calf", _QA_SITE, 2025),
    "003_3a25f4dd8f7e133a.txt": Source("Fasciculations", "iLive (medically reviewed health portal)", 2025),
    "004_43916d9a7c4a1785.txt": Source(
        "Muscle fasciculation", "ArmMed Media, Medical Encyclopedia", 2012, author="Potos A. Aagen, M.D."
    ),
}


def cite(seed: str) -> str:
    """The citation of a seed file; an unknown file is named as it is, never dropped."""
    source = SOURCES.get(seed)
    return source.citation() if source else seed
