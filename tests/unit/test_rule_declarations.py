"""Hooks and rule policy declared once (issue 14, moves 3 and 4), without a server.

* the card catalogue is strict: a misspelt key or a wrong value fails start-up, naming file and key;
  a rule can only give a card an indicator its file declares (R13: info, warning);
* every rule declares its moments, rank and suppression on ``@rule``; the rule book refuses
  inconsistent declarations and the engine obeys them (it names no rule itself);
* a hook is one ``Hook`` member with its context model; serving ``encounter-start`` is one line in
  the topic's hook table plus its rules (``tests/support/encounter_start_service.py``);
* the topic's settings are its own, read from the same environment variables as before.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds_service.clinical import engine, services
from cds_service.clinical.cards import (
    CARD_EXTENSION,
    Catalogue,
    CatalogueError,
    RenderContext,
    Renderer,
    default_cards_dir,
)
from cds_service.clinical.moments import CHART, HOOK_MOMENTS, Moment
from cds_service.clinical.pipeline import Situation, Topic, collect
from cds_service.clinical.record_model import PatientRecord
from cds_service.clinical.rules import RULES, RuleBook
from cds_service.clinical.rules.base import Hit, RuleContext
from cds_service.clinical.settings import TopicSettings
from cds_service.clinical.terminology import terminology
from cds_service.protocol.models import CONTEXT_MODELS, GenericContext, Hook, context_model_of
from cds_service.registry import Registry
from cds_service.settings import Settings
from cds_tools import fixtures
from tests.support import encounter_start_service

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TOPIC = Topic()


# ------------------------------------------------------------------ strict card catalogue


def _cards_with(tmp_path: Path, name: str, text: str) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(default_cards_dir(), target)
    (target / name).write_text(text)
    return target


GOOD = """id: extra-card
rule: R20
indicator: info
summary: "A summary"
detail: "A detail."
topic: {code: t, display: T}
"""


def test_the_real_catalogue_loads() -> None:
    assert len(Catalogue.load().kinds) >= len(RULES)


def test_a_misspelt_key_fails_start_up_naming_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cards = _cards_with(tmp_path, "extra-card.yaml", GOOD.replace("detail:", "detial:"))
    monkeypatch.setenv("CDS_CARDS_DIR", str(cards))
    with pytest.raises(CatalogueError) as err:
        services.register(Registry(), Settings())  # what the app does at start-up
    message = str(err.value)
    assert "cards/extra-card.yaml" in message and "detial" in message and "unknown key" in message
    assert "detail: Field required" in message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("indicator: info", "indicator: severe"), "indicator"),
        (("selection", "selection"), None),  # no-op control: the good file loads
        (("topic: {code: t, display: T}", "topic: {code: t}"), "topic.display"),
        (("rule: R20", "rule: r20"), "rule"),
    ],
)
def test_card_values_are_checked(tmp_path: Path, change: tuple[str, str], key: str | None) -> None:
    cards = _cards_with(tmp_path, "extra-card.yaml", GOOD.replace(*change))
    if key is None:
        assert "extra-card" in Catalogue.load(cards).kinds
        return
    with pytest.raises(CatalogueError, match=re.escape(f"cards/extra-card.yaml: {key}")):
        Catalogue.load(cards)


def test_duplicate_card_ids_fail(tmp_path: Path) -> None:
    cards = _cards_with(tmp_path, "zz-copy.yaml", (default_cards_dir() / "reassurance.yaml").read_text())
    with pytest.raises(CatalogueError, match="duplicate card id reassurance"):
        Catalogue.load(cards)


def test_r13_card_declares_the_indicators_its_rule_gives() -> None:
    """knowledge.md, R13: info, upgraded to warning when low electrolytes (R05g) fire too; the code
    did that all along, the card file said only info."""
    kind = Catalogue.load().kinds["drug-causes"]
    assert kind.indicators == ("info", "warning") and kind.indicator == "info"


def test_a_rule_cannot_give_a_card_an_undeclared_indicator() -> None:
    renderer = Renderer(Catalogue.load(), terminology())
    rc = RenderContext("p", None, NOW, "http://x", "proposal", None, [])
    assert renderer.render(Hit("R13", "drug-causes", "warning"), rc).indicator == "warning"
    with pytest.raises(CatalogueError, match="declares"):
        renderer.render(Hit("R13", "drug-causes", "critical"), rc)


# ------------------------------------------------------------------ rule declarations


def _fn(rule_id: str, calls: list[str]) -> object:
    def fn(rec: PatientRecord, ctx: RuleContext) -> Hit | None:
        calls.append(rule_id)
        return Hit(rule_id, "reassurance", "info")

    return fn


def _book(*decls: tuple[str, int, tuple[str, ...]]) -> tuple[RuleBook, list[str]]:
    book, calls = RuleBook(), list[str]()
    for rule_id, rank, suppressed_by in decls:
        book.rule(rule_id, "t", CHART, "f", (), needs_trigger=False, rank=rank, suppressed_by=suppressed_by)(
            _fn(rule_id, calls)  # type: ignore[arg-type]
        )
    return book, calls


def test_rules_run_in_rank_order_and_declared_suppression_is_obeyed() -> None:
    book, calls = _book(("B", 20, ("A",)), ("A", 10, ()), ("C", 30, ()))
    rec = PatientRecord("p", NOW)
    result = engine.evaluate(rec, Moment.CHART, NOW, {}, 10, rules=book.ordered())
    assert calls == ["A", "C"]  # B was not even run: A fired
    assert [h.rule for h in result.hits] == ["A", "C"]
    assert engine.evaluate(rec, Moment.SIGNING, NOW, {}, 10, rules=book.ordered()).hits == []  # CHART only


@pytest.mark.parametrize(
    ("decls", "message"),
    [
        ((("A", 10, ()), ("A", 20, ())), "declared twice"),
        ((("A", 10, ()), ("B", 10, ())), "share rank"),
        ((("A", 10, ("B",)), ("B", 20, ())), "must rank before"),
        ((("A", 10, ("Z",)),), "unknown rule Z"),
    ],
)
def test_inconsistent_declarations_are_refused(decls: tuple[tuple[str, int, tuple[str, ...]], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _book(*decls)[0].ordered()


def test_the_engine_and_the_rule_registry_name_no_rule() -> None:
    """Order, suppression and folding come from the declarations, not from id lists in code."""
    for module in (engine, services):
        source = Path(module.__file__ or "").read_text()
        assert not re.search(r"[\"']R\d\d[a-z]?[\"']", source), module.__name__
    init = Path(RULES[0].fn.__code__.co_filename).parent / "__init__.py"
    assert "EVALUATION_ORDER" not in init.read_text()


def test_the_topic_rules_declare_what_the_engine_used_to_hard_code() -> None:
    by_id = {r.id: r for r in RULES}
    assert {r.id for r in RULES if r.yields_to_critical} == {"R09", "R11", "R20"}
    fold = by_id["R05a"].folds_into
    assert fold is not None and fold.into == "R01" and fold.indicator == "critical"
    assert [r.id for r in RULES][:3] == ["R03", "R02", "R01"]  # GBS and stroke pathways shown first


# ------------------------------------------------------------------ hooks


def test_every_hook_has_its_context_model() -> None:
    assert set(CONTEXT_MODELS) == set(Hook)
    assert context_model_of("patient-view") is Hook.PATIENT_VIEW.context_model
    assert context_model_of("some-future-hook") is GenericContext


def test_the_topic_registers_one_service_per_hook_of_its_table() -> None:
    """One service per hook of the table, each under its own id (real clients key services by id)."""
    registry = Registry()
    services.register(registry, Settings(), TOPIC)
    assert sorted((s.hook, s.id) for s in registry.all()) == sorted(
        (hook, services.SERVICE_IDS[hook]) for hook in HOOK_MOMENTS
    )
    with pytest.raises(ValueError, match="does not serve hook"):
        TOPIC.assess({}, Situation(Hook.ENCOUNTER_START, NOW, "p"))


def _assess(topic: Topic, name: str, hook: Hook) -> list[tuple[str, str]]:
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
    assessment = topic.assess(collect([fx.resources()]), Situation(hook, NOW, fx.patient_id))
    for card, why in zip(assessment.cards, assessment.issued, strict=True):
        assert card.extension is not None and card.extension[CARD_EXTENSION]["rule"] == why.rule
    return [(why.rule, why.indicator) for why in assessment.issued]


def test_encounter_start_is_one_table_line_plus_its_rules() -> None:
    test_topic = encounter_start_service.topic()
    registry = Registry()
    encounter_start_service.register(registry, Settings())
    assert registry.hooks_of("fasciculation-encounter-start") == [Hook.ENCOUNTER_START]  # its own id
    at_start = _assess(test_topic, "r20-reassurance", Hook.ENCOUNTER_START)
    assert ("ENC1", "warning") in at_start  # its own rule
    assert at_start == _assess(test_topic, "r20-reassurance", Hook.PATIENT_VIEW)  # a chart moment
    assert "ENC1" not in {r for r, _ in _assess(TOPIC, "r20-reassurance", Hook.PATIENT_VIEW)}  # test-only


# ------------------------------------------------------------------ topic settings


def test_topic_settings_keep_their_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_CARD_BUDGET", "2")
    monkeypatch.setenv("CDS_ORDER_INTENT", "order")
    monkeypatch.setenv("CDS_LAB_LOOKBACK_DAYS", '{"tsh": 100}')
    monkeypatch.setenv("CDS_TRIGGER_FREE_TEXT", "true")
    s = TopicSettings()
    assert (s.card_budget, s.order_intent, s.trigger_free_text) == (2, "order", True)
    assert s.lookbacks["tsh"] == 100 and s.lookbacks["cbc"] == 180
    assert not {"card_budget", "order_intent", "lab_lookback_days", "trigger_free_text"} & set(Settings.model_fields)
