"""The performance changes of issue 8 keep exact behaviour: each fast path is checked against the
slow code it stands in for (no timing here; bench/ prints figures, tests never assert on time)."""

from __future__ import annotations

import random
import string
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from cds_service.clinical.cards import Catalogue, Renderer
from cds_service.clinical.services import RECORD_TYPES, WorkupService, prefetch_templates
from cds_service.clinical.terminology import TEXT_MEMO_MAX_LEN, Terminology, terminology
from cds_service.data.gather import GatheredData, KeyResult, KeyState
from cds_service.protocol.errors import CdsError
from cds_service.trust.limits import check_json_shape, fits_shape
from cds_tools import fixtures

# ------------------------------------------------------------------------------ JSON shape


def walk_passes(value: Any, depth: int, elements: int) -> bool:
    try:
        check_json_shape(value, depth, elements)
    except CdsError:
        return False
    return True


def random_json(rng: random.Random, depth: int) -> Any:
    """Nested values whose strings carry the characters a byte-level reader could trip on."""
    kind = rng.random()
    if depth <= 0 or kind < 0.35:
        pool = string.ascii_letters + '[]{},:"\\ \n\t/é€'
        return rng.choice(
            [
                "".join(rng.choice(pool) for _ in range(rng.randint(0, 8))),
                rng.randint(-5, 5),
                rng.random(),
                True,
                None,
                "",
            ]
        )
    if kind < 0.7:
        return [random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}{rng.choice('[]{},:')}": random_json(rng, depth - 1) for i in range(rng.randint(0, 4))}


def test_fits_shape_never_clears_what_the_walk_refuses() -> None:
    rng = random.Random(8)  # noqa: S311 - reproducible test data, not secrets
    cleared = 0
    for _ in range(3000):
        value = {"v": random_json(rng, rng.randint(1, 9))}
        body = orjson.dumps(value)
        for depth, elements in ((3, 10_000), (5, 10_000), (8, 10_000), (64, 12), (64, 40), (64, 10_000)):
            if fits_shape(body, depth, elements):
                cleared += 1
                assert walk_passes(value, depth, elements), (body, depth, elements)
            if fits_shape(bytearray(body), depth, elements):
                assert walk_passes(value, depth, elements)
    assert cleared > 3000  # the fast path is taken, not just safe


@pytest.mark.parametrize("levels", [1, 2, 9, 10, 11, 40])
def test_fits_shape_depth_boundary(levels: int) -> None:
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    body = orjson.dumps(value)
    assert walk_passes(value, 10, 100) == (levels <= 10)
    if fits_shape(body, 10, 100):
        assert levels <= 10
    assert fits_shape(body, 10, 100) == (levels <= 10)
    empty_inside: Any = []  # containers only: 10 empty-topped levels pass the walk; the walk decides
    for _ in range(levels - 1):
        empty_inside = [empty_inside]
    assert walk_passes(empty_inside, 10, 100) == (levels <= 10)
    assert fits_shape(orjson.dumps(empty_inside), 10, 100) == (levels <= 9)


def test_fits_shape_clears_the_benchmark_bodies() -> None:
    """The real prefetch bodies take the fast path under the default limits (64, 200,000)."""
    templates = {s.key: s.template for s in prefetch_templates(terminology())}
    for name in ("bg50-r04", "bg300-r01", "bg2000-r01", "bg2000-no-trigger"):
        fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
        body = orjson.dumps({"prefetch": fixtures.prefetch_for(fx, templates)})
        assert fits_shape(body, 64, 200_000), name


def test_fits_shape_escapes() -> None:
    value = {"a": 'x\\"]]]]]]]]]]', "b": ["\\", "\\\\", '"', "]"], "c": "\u2028\x00"}
    body = orjson.dumps(value)
    assert fits_shape(body, 4, 100)
    assert not fits_shape(orjson.dumps({"a": [[[["\\]"]]]]}), 4, 100)


# ------------------------------------------------------------------------------ text memo


def test_text_memo_gives_the_pattern_answers() -> None:
    fresh = Terminology.__new__(Terminology)
    t = terminology()
    fresh.__dict__.update(t.__dict__)
    fresh._text_memo = {}
    texts = ["EMG of both legs", "ankle-brachial index", "Heart rate", "TED hose", "flexeril 10", "x" * 500, ""]
    for _ in range(2):  # second round from the memo
        for text in texts:
            expected = {cid for pattern, cid in t._text if pattern.search(text)} if text else set()
            got = fresh.match_text(text)
            assert got == expected, text
            got.add("mutated")  # callers may mutate their copy
    assert "x" * 500 not in fresh._text_memo and len("x" * 500) > TEXT_MEMO_MAX_LEN


# ------------------------------------------------------------------------------ suggestion validation


def renderer() -> Renderer:
    return Renderer(Catalogue.load(), terminology())


def base_resource(**over: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "priority": "routine",
        "code": {"coding": [{"system": "http://loinc.org", "code": "3016-3", "display": "TSH"}], "text": "TSH"},
        "subject": {"reference": "Patient/pt-1"},
        "authoredOn": "2026-11-22T10:00:00+00:00",
        "requester": {"reference": "Practitioner/dr-1"},
        "reasonReference": [{"reference": "Condition/c1"}],
    }
    resource.update(over)
    return {k: v for k, v in resource.items() if v is not None}


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"requester": None, "reasonReference": None},
        {"status": "bogus"},  # catalogue part invalid
        {"priority": 7},
        {"code": {"text": ""}},
        {"subject": {"reference": 12}},  # request part invalid
        {"subject": {"reference": "Patient/x", "bogus": 1}},
        {"authoredOn": "yesterday"},
        {"requester": {"reference": ["Practitioner/1"]}},
        {"reasonReference": {"reference": "Condition/c1"}},
        {"reasonReference": [{"reference": "\x0c"}]},
    ],
)
def test_split_validation_raises_exactly_when_the_model_does(over: dict[str, Any]) -> None:
    from fhir.resources.R4B.servicerequest import ServiceRequest

    resource = base_resource(**over)
    try:
        ServiceRequest.model_validate(resource)
        valid = True
    except ValidationError:
        valid = False
    r = renderer()
    for _ in range(2):  # the second time from the memo
        if valid:
            r._validate(resource)
        else:
            with pytest.raises(ValidationError):
                r._validate(resource)
    other = renderer()
    other._validate(base_resource())  # a valid resource first: the memo must not let a bad one pass
    if not valid:
        with pytest.raises(ValidationError):
            other._validate(resource)


# ------------------------------------------------------------------------------ one pass by type


def test_by_type_is_of_type_for_every_kind() -> None:
    """Overlapping keys (the same Observation in two searches), resources without ids, and types
    the record does not read."""
    obs = [{"resourceType": "Observation", "id": f"o{i}"} for i in range(5)]
    no_id = {"resourceType": "Observation", "status": "final"}
    data = GatheredData(
        {
            "a": KeyResult("a", KeyState.PREFETCHED, [obs[0], obs[1], no_id, {"resourceType": "Patient", "id": "p"}]),
            "b": KeyResult("b", KeyState.PREFETCHED, [obs[1], obs[2], no_id, {"resourceType": "Encounter", "id": "e"}]),
            "c": KeyResult("c", KeyState.FETCHED, [obs[3], obs[0], {"resourceType": "Condition", "id": "c"}]),
        }
    )

    class Call:
        pass

    call: Any = Call()
    call.data = data
    got = WorkupService.by_type(None, call)  # type: ignore[arg-type]
    expected = {kind: data.of_type(kind) for kind in RECORD_TYPES if data.of_type(kind)}
    assert got == expected
    assert [id(r) for r in got["Observation"]] == [id(r) for r in expected["Observation"]]
