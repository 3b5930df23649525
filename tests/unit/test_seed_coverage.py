"""Unit tests of issue 19 (seed coverage): how structured exam rows are read, when a result counts
as flagged, and the card's conditional exam statement. The golden fixtures (sc1-, sc2-) test the
same through the HTTP endpoint; these pin the edge cases a fixture per case would not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cds_service.clinical.record_builder import RecordBuilder
from cds_service.clinical.record_model import LabResult, PatientRecord
from cds_service.clinical.rules.findings import flagged
from cds_service.clinical.rules.safety import NO_EXAM, exam_lines
from cds_service.clinical.terminology import SNOMED, terminology

T = terminology()
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def row(text: str, value: Any = None, days: float = 5, **extra: Any) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o-{abs(hash((text, str(value), days)))}",
        "status": "final",
        "code": {"coding": [{"system": "http://example.org/flowsheet", "code": "X"}], "text": text},
        "effectiveDateTime": (NOW - timedelta(days=days)).isoformat(),
        **extra,
    }
    if isinstance(value, int):
        o["valueInteger"] = value
    elif isinstance(value, str):
        o["valueString"] = value
    return o


def build(*obs: dict[str, Any]) -> PatientRecord:
    return RecordBuilder(T).build("p1", NOW, {"Observation": list(obs)})


@pytest.mark.parametrize(
    ("value", "normal", "finding"),
    [
        ("2+", True, None),
        ("Normal and symmetric", True, None),
        ("0", False, "areflexia"),
        ("Absent", False, "areflexia"),
        ("1+", False, "hyporeflexia"),
        ("Reduced at both ankles", False, "hyporeflexia"),
        ("3+", False, "hyperreflexia"),
        ("Brisk", False, "hyperreflexia"),
    ],
)
def test_reflex_rows(value: str, normal: bool, finding: str | None) -> None:
    rec = build(row("Ankle jerk", value))
    assert [e.normal for e in rec.exam if e.aspect == "reflexes"] == [normal]
    found = {f.concept for f in rec.facts}
    assert found == ({finding} if finding else set()), "an abnormal reflex row is a finding, never negated"


def test_plantar_and_bulk_rows() -> None:
    rec = build(
        row("Plantar response", "Flexor"),
        row("Muscle bulk", "Normal"),
        row("MRC muscle strength, deltoid", 5),
        row("Deep tendon reflexes", "2+"),
    )
    complete, lines = exam_lines(rec)
    assert complete and "recorded as normal" in lines[0]
    assert not rec.facts


def test_babinski_coded_negative_is_a_normal_plantar() -> None:
    babinski = {
        "resourceType": "Observation",
        "id": "o-b",
        "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "246586009"}]},
        "effectiveDateTime": NOW.isoformat(),
        "valueBoolean": False,
    }
    rec = build(babinski)
    assert [(e.aspect, e.normal) for e in rec.exam] == [("plantar", True)]
    assert not rec.facts


def test_no_structured_exam_is_stated_conditionally() -> None:
    complete, lines = exam_lines(build())
    assert not complete and lines[0].startswith(NO_EXAM) and "applies only if" in lines[0]


def test_an_old_exam_does_not_count() -> None:
    rec = build(row("Plantar response", "Flexor", days=400), row("Muscle bulk", "Normal", days=400))
    complete, lines = exam_lines(rec)
    assert not complete and lines[0].startswith(NO_EXAM)


def test_partial_exam_names_what_is_missing() -> None:
    _, lines = exam_lines(build(row("Muscle bulk", "Normal")))
    assert (
        "normal muscle bulk" in lines[0]
        and "not found: strength (MRC), reflexes, plantar responses" in lines[0]
    )


def test_visible_fasciculations_with_sites() -> None:
    rec = build(row("Fasciculations seen", "Present", bodySite={"text": "Right calf"}))
    assert exam_lines(rec)[1][-1] == "Visible fasciculations recorded on examination: Right calf."


def lab(
    value: float | None,
    interp: frozenset[str] = frozenset(),
    low: float | None = None,
    high: float | None = None,
) -> LabResult:
    return LabResult("cbc", "Observation/x", "718-7", "Hb", NOW, value, "g/dL", False, interp, low, high)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (lab(8.1, frozenset({"LL"})), True),
        (lab(8.1, low=12.0), True),
        (lab(16.0, high=15.5), True),
        (lab(13.0, low=12.0, high=15.5), False),
        (lab(8.1), False),  # no flag, no range: the seeds give no number, so no card
        (lab(11.9, frozenset({"N"}), low=12.0), False),  # the lab's own interpretation wins
        (lab(None, frozenset({"A"})), True),
    ],
)
def test_flagged(result: LabResult, expected: bool) -> None:
    assert flagged(result) is expected
