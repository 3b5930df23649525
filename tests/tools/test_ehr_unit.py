"""The EHR simulator's parts without a CDS server: prefetch shaping, tokens, keys and JWTs (checked
with PyJWT against the served JWK Set), draft files, feedback items, card text, rule mapping."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import jwt
import pytest

from cds_service.protocol.validate import card_recommendations, response_problems, rule_of
from cds_tools.ehr import client as cl
from cds_tools.ehr import render, signing
from cds_tools.ehr.conformance import exercised
from cds_tools.ehr.prefetch import Fetched, Plan, resolve, shape
from cds_tools.ehr.rules import RULES, Report

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "me": "Practitioner/{{userPractitionerId}}",
    "encounter": "Encounter/{{context.encounterId}}",
}
CTX = {"patientId": "p 1", "userId": "Practitioner/dr-1"}


def test_without_fhir_server_templates_resolve_to_a_patient_without_data() -> None:
    got = {f.key: f for f in resolve(TEMPLATES, CTX, None)}
    assert got["patient"].query == "Patient/p%201"  # token values are URL-encoded
    assert got["patient"].value == {"resourceType": "Patient", "id": "p 1"}
    assert got["conditions"].value == {"resourceType": "Bundle", "type": "searchset", "total": 0}
    assert got["me"].query == "Practitioner/dr-1"
    assert not got["encounter"].satisfied  # no encounterId in the context: the key is not satisfied


def test_prefetch_modes() -> None:
    fetched = resolve(TEMPLATES, CTX, None)
    full = shape(fetched, Plan())
    assert full is not None
    assert set(full) == {"patient", "conditions", "me"}  # unresolved token: key left out, never sent
    assert shape(fetched, Plan(send=False)) is None
    assert set(shape(fetched, Plan(only=frozenset({"patient"}))) or {}) == {"patient"}
    assert set(shape(fetched, Plan(omit=frozenset({"patient"}))) or {}) == {"conditions", "me"}
    nulls = shape(fetched, Plan(null=frozenset({"conditions"}))) or {}
    assert nulls["conditions"] is None and nulls["patient"]["resourceType"] == "Patient"
    outcome = shape(fetched, Plan(outcome=frozenset({"patient"}))) or {}
    assert outcome["patient"]["resourceType"] == "OperationOutcome"
    # Nothing left to send: no empty object on the wire (rule 1.4), the member is left out.
    assert shape(fetched, Plan(only=frozenset({"encounter"}))) is None


def test_plan_refuses_unknown_and_clashing_keys() -> None:
    with pytest.raises(ValueError, match="not declared"):
        Plan(omit=frozenset({"labz"})).check(TEMPLATES)
    with pytest.raises(ValueError, match="only one"):
        Plan(null=frozenset({"patient"}), outcome=frozenset({"patient"})).check(TEMPLATES)
    Plan(null=frozenset({"patient"})).check(TEMPLATES)


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_key_is_kept_and_tokens_verify_against_the_served_jwks(tmp_path: Path, alg: str) -> None:
    key = signing.load_or_create(tmp_path / "keys", alg)
    pem = tmp_path / "keys" / f"{alg.lower()}-private.pem"
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    again = signing.load_or_create(tmp_path / "keys", alg)
    assert again.kid == key.kid  # the same key on the next run: a service keeps trusting it
    jwk = key.public_jwk()
    assert jwk["kid"] == key.kid and jwk["alg"] == alg and "d" not in jwk
    with signing.serving_jwks(key, 0) as jku:
        served = httpx.get(jku).json()
        signer = signing.Signer(key, iss="https://ehr.test", jku=jku, tenant="t1")
        token = signer.token("http://127.0.0.1:1/cds-services/x")
    assert served == key.jwks()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "JWT", "kid": key.kid, "jku": jku}
    public = jwt.PyJWK(served["keys"][0])
    claims = jwt.decode(token, public, algorithms=[alg], audience="http://127.0.0.1:1/cds-services/x")
    assert claims["iss"] == "https://ehr.test" and claims["tenant"] == "t1"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]
    assert signer.token("a") != signer.token("a")  # a fresh jti every time


def test_key_file_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    es = signing.load_or_create(tmp_path, "ES384")
    (tmp_path / "rs384-private.pem").write_bytes((tmp_path / "es384-private.pem").read_bytes())
    assert es.kid
    with pytest.raises(ValueError, match="RS384"):
        signing.load_or_create(tmp_path, "RS384")


def test_unsigned_token_has_alg_none(tmp_path: Path) -> None:
    signer = signing.Signer(signing.load_or_create(tmp_path, "ES384"))
    token = signer.unsigned("https://x.test/cds-services")
    assert token.endswith(".")
    assert jwt.get_unverified_header(token)["alg"] == "none"


def test_issuer_config_is_what_the_service_accepts(tmp_path: Path) -> None:
    from cds_service.trust.config import IssuerConfig

    key = signing.load_or_create(tmp_path, "ES384")
    entry = signing.issuer_config(key, "https://ehr.test", signing.jku_for_port(8111))
    assert IssuerConfig.model_validate(entry).jku == ("http://127.0.0.1:8111/.well-known/jwks.json",)


def test_drafts_from_list_bundle_or_resource(tmp_path: Path) -> None:
    mr = {"resourceType": "MedicationRequest", "id": "m1", "status": "draft"}
    for name, data in (
        ("list.json", [mr]),
        ("bundle.json", {"resourceType": "Bundle", "entry": [{"resource": mr}]}),
        ("one.json", mr),
    ):
        (tmp_path / name).write_text(json.dumps(data))
        bundle = cl.load_drafts(tmp_path / name)
        assert bundle["entry"][0]["resource"] == mr
        assert cl.selections_of(bundle) == ["MedicationRequest/m1"]
    (tmp_path / "bad.json").write_text("[1")
    with pytest.raises(ValueError):
        cl.load_drafts(tmp_path / "bad.json")


def test_contexts_per_hook() -> None:
    assert cl.hook_context("patient-view", "p1") == {"userId": cl.DEFAULT_USER, "patientId": "p1"}
    select = cl.hook_context("order-select", "p1", encounter="e1")
    assert select["selections"] == ["MedicationRequest/ehr-sim-draft-1"]
    assert select["encounterId"] == "e1"
    assert "selections" not in cl.hook_context("order-sign", "p1")
    auth = cl.fhir_authorization("tok", "p1")
    assert auth["patient"] == "p1" and auth["token_type"] == "Bearer"
    assert "patient" not in cl.fhir_authorization("tok", "p1", scope="user/*.read")


CARD = {
    "uuid": "c1",
    "summary": "Something to do",
    "indicator": "warning",
    "source": {"label": "Test"},
    "detail": "First line\nsame paragraph.\n\n- item one\n- item two",
    "selectionBehavior": "at-most-one",
    "suggestions": [
        {
            "label": "Do A",
            "uuid": "s1",
            "isRecommended": True,
            "actions": [{"type": "delete", "description": "Remove", "resourceId": "MedicationRequest/m1"}],
        },
        {"label": "Do B", "uuid": "s2"},
    ],
    "overrideReasons": [{"system": "urn:r", "code": "no", "display": "Not now"}],
    "links": [{"label": "More", "url": "https://x.test/more", "type": "absolute"}],
}


def test_feedback_items() -> None:
    cards = [CARD]
    assert cl.pick_card(cards, "1") is CARD and cl.pick_card(cards, "c1") is CARD
    item = cl.accepted(CARD, [cl.pick_suggestion(CARD, "2")])
    assert item["acceptedSuggestions"] == [{"id": "s2"}] and item["outcomeTimestamp"].endswith("Z")
    over = cl.overridden(CARD, cl.pick_reason(CARD, "urn:r|no"), "seen elsewhere")
    assert over["overrideReason"] == {
        "reason": {"system": "urn:r", "code": "no"},
        "userComment": "seen elsewhere",
    }
    assert "overrideReason" not in cl.overridden(CARD)
    with pytest.raises(ValueError, match="offers: no"):
        cl.pick_reason(CARD, "other")
    with pytest.raises(ValueError, match="no card"):
        cl.pick_card(cards, "2")
    with pytest.raises(ValueError, match="no uuid"):
        cl.overridden({"summary": "x"})


def test_card_text_is_plain_without_colour() -> None:
    text = render.format_response({"cards": [{**CARD, "indicator": "info", "summary": "Later"}, CARD]})
    assert "\033[" not in text
    assert text.index("[2] WARNING") < text.index("[1] INFO")  # most urgent first, numbers kept
    assert "First line same paragraph." in text  # Markdown soft breaks joined
    assert "2.1 Do A (recommended)" in text and "delete: MedicationRequest/m1" in text
    assert "no  Not now" in text and "<https://x.test/more> (absolute)" in text
    assert "\033[1;33m" in render.format_card(CARD, 1, colour=True)
    assert render.format_response({"cards": []}).startswith("No cards")


def test_prefetch_summary_lines() -> None:
    fetched = [
        Fetched("a", "Patient/1", {"resourceType": "Patient"}, "ok"),
        Fetched("b", None, None, "unresolved token"),
    ]
    text = render.format_prefetch(fetched, {"a": {"resourceType": "Patient"}})
    assert "a" in text and "Patient (1)" in text and "omitted" in text


def test_every_problem_maps_to_a_reported_rule() -> None:
    ids = {r.id for r in RULES}
    bad = {
        "cards": [
            {
                **CARD,
                "summary": "x" * 150,
                "links": None,
                "selectionBehavior": None,
                "indicator": "hard-stop",
            },
            {
                "summary": "s",
                "indicator": "info",
                "source": {"label": "l", "url": "/rel"},
                "suggestions": [{"label": "x", "actions": [{"type": "create"}]}],
            },
        ],
        "extra": 1,
    }
    problems = response_problems(bad)
    rules = {rule_of(p) for p in problems}
    assert rules <= ids
    assert {
        "6.1-summary",
        "1.3/1.4",
        "cds-resp-6",
        "6.1-indicator",
        "6.1-source",
        "6.1-action",
        "cds-resp-5",
        "6",
    } <= rules
    assert rule_of("services[0].description: required") == "2.2"
    assert card_recommendations({"summary": "s", "suggestions": [{"label": "x"}]}) == [
        "card.uuid: missing; needed for feedback (6.1 rec.)",
        "card.suggestions[0].uuid: missing; needed for accepted feedback (6.1 rec.)",
    ]


def test_exercised_rules_follow_the_cards() -> None:
    assert exercised({"cards": []}) == {"6", "1.3/1.4"}
    got = exercised({"cards": [CARD]})
    assert {"cds-resp-1", "cds-resp-2", "cds-resp-3", "cds-resp-4", "cds-resp-5", "cds-resp-6"} <= got


def test_report_levels_and_exit_codes() -> None:
    report = Report("x")
    report.ok("2.1")
    report.problem("9.3-cors", "no preflight")
    statuses = report.statuses()
    assert statuses["2.1"] == "pass" and statuses["9.3-cors"] == "warn" and statuses["cds-resp-1"] == "skip"
    assert report.exit_code() == 0 and report.exit_code(strict=True) == 1
    report.problem("6.1-summary", "too long")
    assert report.exit_code() == 1
    assert "FAIL  6.1-summary" in report.format_text()
    assert report.as_json()["rules"][0]["rule"] == "1.1"


def test_bad_inputs_are_usage_errors_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cds_service.cli import main

    drafts = tmp_path / "drafts.yaml"
    drafts.write_text("entry: [")
    assert main(["conformance", "http://127.0.0.1:9/cds-services", "--drafts", str(drafts)]) == 2
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "es384-private.pem").write_text("not a key")
    assert main(["ehr", "keys", "--key-dir", str(tmp_path / "keys")]) == 2
    response = tmp_path / "response.json"
    response.write_text("[]")
    argv = [
        "ehr",
        "feedback",
        "http://127.0.0.1:9",
        "--service",
        "s",
        "--response",
        str(response),
        "--card",
        "1",
        "--dismiss",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "drafts" in err and "signing key" in err and "expected a JSON object" in err
    assert "Traceback" not in err
