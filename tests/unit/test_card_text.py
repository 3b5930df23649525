"""Card text seen in the Sandbox (issue 12): a "Based on" list cites each resource once, and a card
that counts missing tests says where every one of them can be ordered (its own buttons, or
another card), so the count, the buttons and the "order all" label agree. Checked on every fixture."""

from __future__ import annotations

import re

import pytest

from cds_service.clinical.review import evaluate_bundle
from cds_tools import fixtures

NAMES = [p.stem for p in fixtures.all_fixtures()]


def cards(name: str) -> list[tuple[str, dict[str, object]]]:
    path = fixtures.ROOT / "patients" / f"{name}.json"
    return [(rule, card.model_dump(exclude_none=True)) for rule, card in evaluate_bundle(path, as_fixture=True)]


@pytest.mark.parametrize("name", NAMES)
def test_based_on_cites_each_resource_once(name: str) -> None:
    for rule, card in cards(name):
        detail = str(card["detail"])
        if "**Based on**" not in detail:
            continue
        block = detail.split("**Based on**", 1)[1].split("\n\n")[1]
        refs = re.findall(r"`([^`]+)`\)$", block, re.M)
        assert refs and len(refs) == len(set(refs)), (name, rule, block)


@pytest.mark.parametrize("name", NAMES)
def test_missing_count_matches_buttons_and_pointers(name: str) -> None:
    for rule, card in cards(name):
        m = re.search(r"\((\d+) missing\)", str(card["summary"]))
        if m is None:
            continue
        count = int(m.group(1))
        suggestions = card.get("suggestions") or []
        assert isinstance(suggestions, list)
        single = [s for s in suggestions if len(s["actions"]) == 1]
        elsewhere = re.findall(r"^- .+ is offered on the (R\w+) card \(.+\), not here\.$", str(card["detail"]), re.M)
        assert count == len(single) + len(elsewhere), (name, rule, card["summary"], elsewhere)
        for s in suggestions:
            if len(s["actions"]) > 1:
                assert s["label"] == f"Order all {len(single)} tests listed here"
        rules_here = {r for r, _ in cards(name)}
        assert set(elsewhere) <= rules_here, "the pointer names a card of the same response"


def test_weakness_points_ck_to_the_red_flag_card() -> None:
    by_rule = dict(cards("r01-weakness"))
    gaps = by_rule["R04"]
    assert "(10 missing)" in str(gaps["summary"])
    assert "- Creatine kinase (CK) is offered on the R01 card (" in str(gaps["detail"])
    red = by_rule["R01"]
    assert any("creatine kinase" in s["label"].lower() for s in red["suggestions"])  # type: ignore[attr-defined]
