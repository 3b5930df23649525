"""The response validator catches every rule a service must follow."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.protocol.models import Action, Card, CdsResponse, Coding, Link, Source, Suggestion, dump
from cds_service.protocol.validate import (
    ResponseInvalid,
    assert_valid_response,
    discovery_problems,
    response_problems,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "spec" / "examples"


def good() -> dict[str, Any]:
    card = Card(
        uuid="c1",
        summary="Order EMG",
        detail="**why**",
        indicator="critical",
        source=Source(
            label="Fasciculation CDS", url="https://example.org/src", topic=Coding(system="s", code="c")
        ),
        suggestions=[
            Suggestion(
                label="EMG",
                uuid="s1",
                isRecommended=True,
                actions=[
                    Action(type="create", description="create", resource={"resourceType": "ServiceRequest"}),
                    Action(type="delete", description="drop draft", resourceId="ServiceRequest/1"),
                ],
            ),
            Suggestion(label="Neuro", uuid="s2"),
        ],
        selectionBehavior="at-most-one",
        overrideReasons=[Coding(system="http://x", code="a", display="A")],
        links=[
            Link(label="Evidence", url="https://example.org/e", type="absolute"),
            Link(label="App", url="https://example.org/app", type="smart", appContext="x"),
        ],
    )
    return dump(CdsResponse(cards=[card]))


def test_good_response_passes() -> None:
    assert response_problems(good()) == []
    assert response_problems({"cards": []}) == []


BREAKS = {
    "summary 140 chars": (lambda b: b["cards"][0].update(summary="x" * 140), "must be < 140"),
    "summary missing": (lambda b: b["cards"][0].pop("summary"), "summary: required"),
    "bad indicator": (lambda b: b["cards"][0].update(indicator="hard-stop"), "indicator"),
    "no selectionBehavior": (lambda b: b["cards"][0].pop("selectionBehavior"), "cds-resp-6"),
    "bad selectionBehavior": (lambda b: b["cards"][0].update(selectionBehavior="all"), "cds-resp-6"),
    "two recommended": (
        lambda b: b["cards"][0]["suggestions"][1].update(isRecommended=True),
        "cds-resp-1",
    ),
    "override without display": (lambda b: b["cards"][0]["overrideReasons"][0].pop("display"), "cds-resp-4"),
    "appContext on absolute": (lambda b: b["cards"][0]["links"][0].update(appContext="x"), "cds-resp-3"),
    "delete without resourceId": (
        lambda b: b["cards"][0]["suggestions"][0]["actions"][1].pop("resourceId"),
        "cds-resp-2",
    ),
    "action without description": (
        lambda b: b["cards"][0]["suggestions"][0]["actions"][0].pop("description"),
        "cds-resp-5",
    ),
    "create without resource": (
        lambda b: b["cards"][0]["suggestions"][0]["actions"][0].pop("resource"),
        "whole FHIR resource",
    ),
    "null value": (lambda b: b["cards"][0].update(detail=None), "null"),
    "empty suggestions": (lambda b: b["cards"][0].update(suggestions=[]), "empty array"),
    "empty string": (lambda b: b["cards"][0].update(detail=""), "empty string"),
    "empty links": (lambda b: b["cards"][0].update(links=[]), "empty array"),
    "no source label": (lambda b: b["cards"][0].update(source={"url": "https://x"}), "source.label"),
    "relative source url": (lambda b: b["cards"][0]["source"].update(url="/x"), "absolute URL"),
    "link type": (lambda b: b["cards"][0]["links"][0].update(type="web"), "absolute|smart"),
    "duplicate uuid": (lambda b: b["cards"][0]["suggestions"][1].update(uuid="c1"), "unique"),
    "no cards": (lambda b: b.pop("cards"), "cards: required"),
    "unknown top level": (lambda b: b.update(foo=1), "unknown top-level"),
    "empty systemActions": (lambda b: b.update(systemActions=[]), "empty array"),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_break_is_caught(name: str) -> None:
    body = copy.deepcopy(good())
    mutate, expected = BREAKS[name]
    mutate(body)
    problems = response_problems(body)
    assert any(expected in p for p in problems), problems
    with pytest.raises(ResponseInvalid):
        assert_valid_response(body)


def test_model_dump_drops_none() -> None:
    body = dump(CdsResponse(cards=[Card(summary="s", indicator="info", source=Source(label="l"))]))
    assert body == {"cards": [{"summary": "s", "indicator": "info", "source": {"label": "l"}}]}


def test_discovery_rules() -> None:
    assert discovery_problems({"services": []}) == []
    assert discovery_problems({"services": [{"hook": "patient-view", "id": "x"}]}) == [
        "services[0].description: required"
    ]
    dup = {"hook": "patient-view", "id": "x", "description": "d"}
    assert any("duplicate" in p for p in discovery_problems({"services": [dup, dup]}))
    assert discovery_problems([]) != []


@pytest.mark.skipif(not EXAMPLES.exists(), reason="shared spec examples not beside the project")
def test_spec_examples() -> None:
    """The spec's own response examples pass, except the systemActions one that omits the
    REQUIRED Action.description (a known inconsistency of 2.0.1)."""
    ok = json.loads((EXAMPLES / "response-example.json").read_text())
    assert response_problems(ok) == []
    sys_actions = json.loads((EXAMPLES / "response-systemActions-example.json").read_text())
    assert any("description" in p for p in response_problems(sys_actions))
    disc = json.loads((EXAMPLES / "discovery-response.json").read_text())
    assert discovery_problems(disc) == []
