"""The SMART app's parts without a browser: PKCE, the authorisation request, percent-encoding of
FHIR queries, token rejection, private_key_jwt, the session store, the card links and the offline
``evaluate --html`` page."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.cli import main
from cds_service.clinical import emg
from cds_service.clinical.record_model import Order
from cds_service.protocol.validate import response_problems
from cds_service.registry import Registry, load_services
from cds_service.settings import Settings
from cds_service.smart import auth
from cds_service.smart.fhir import TokenRejected, encode_url, read_patient_data
from cds_service.smart.pipeline import cards_offline, patient_view_specs, prefetch_from_bundle
from cds_service.smart.router import section_of
from cds_service.smart.session import PendingLaunch, SessionStore
from cds_service.smart.view import emg_reading
from cds_service.smart_settings import SmartSettings
from cds_tools import fixtures

ISS = "https://ehr.example/fhir"
CFG = auth.SmartConfiguration("https://ehr.example/auth/authorize", "https://ehr.example/auth/token", None, None)


def test_pkce_pair_is_s256() -> None:
    verifier, challenge = auth.pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected
    assert auth.pkce_pair()[0] != verifier


@pytest.mark.parametrize("launch", ["abc123", None])
def test_authorize_request(launch: str | None) -> None:
    url = auth.authorize_url(CFG, SmartSettings(), "https://cds.example/smart/callback", ISS, "st", "ch", launch)
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["aud"] == ISS and q["state"] == "st" and q["code_challenge"] == "ch"
    assert q["code_challenge_method"] == "S256" and q["response_type"] == "code"
    scopes = q["scope"].split()
    assert ("launch" in scopes) == (launch is not None) and ("launch/patient" in scopes) == (launch is None)
    assert q.get("launch") == launch
    data = [s for s in scopes if s.startswith("patient/")]
    assert data and all(s.endswith(".rs") and "*" not in s for s in data)  # read and search only


def test_scopes_cover_exactly_what_the_pipeline_reads() -> None:
    settings = Settings()
    registry = Registry()
    load_services(registry, settings.service_modules, settings)
    read = {s.template.split("?")[0].split("/")[0] for s in patient_view_specs(registry)}
    scoped = {s.split("/")[1].split(".")[0] for s in SmartSettings().scopes.split() if s.startswith("patient/")}
    assert read == scoped


def test_queries_are_percent_encoded() -> None:
    url = f"{ISS}/Observation?patient=p1&code=http://loinc.org|3016-3,http://loinc.org|2157-6&_count=200"
    encoded = encode_url(url)
    query = urlsplit(encoded).query
    assert "//" not in query and "%2F%2Floinc.org%7C3016-3%2Chttp" in query
    assert parse_qs(query)["code"] == ["http://loinc.org|3016-3,http://loinc.org|2157-6"]
    assert encode_url(f"{ISS}/Patient/p1") == f"{ISS}/Patient/p1"


def _specs() -> Any:
    settings = Settings()
    registry = Registry()
    load_services(registry, settings.service_modules, settings)
    return patient_view_specs(registry)


def test_reads_send_the_token_encode_queries_and_stop_on_401() -> None:
    specs = _specs()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p1"})
        nxt = {"relation": "next", "url": "https://evil.example/fhir/Observation?page=2"}
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "link": [nxt], "entry": []})

    async def run(status: int | None) -> dict[str, Any]:
        with respx.mock(assert_all_called=False) as mock:
            route = mock.route(host="ehr.example")
            route.side_effect = answer if status is None else httpx.Response(status)
            async with httpx.AsyncClient() as client:
                return await read_patient_data(client, ISS, "tok-1", "p1", specs)

    data = asyncio.run(run(None))
    assert data["patient"]["id"] == "p1" and set(data) == {s.key for s in specs}
    assert all(r.headers["Authorization"] == "Bearer tok-1" for r in seen)
    assert all("//" not in r.url.query.decode() for r in seen)
    assert not any(r.url.host == "evil.example" for r in seen)  # next link off-origin: not followed
    assert len(seen) == len(specs)
    with pytest.raises(TokenRejected):
        asyncio.run(run(401))


def test_discovery_requires_pkce_s256() -> None:
    async def run(body: dict[str, Any]) -> auth.SmartConfiguration:
        with respx.mock() as mock:
            mock.get(f"{ISS}/.well-known/smart-configuration").respond(200, json=body)
            async with httpx.AsyncClient() as client:
                return await auth.discover(client, ISS)

    good = {"authorization_endpoint": CFG.authorization_endpoint, "token_endpoint": CFG.token_endpoint,
            "code_challenge_methods_supported": ["S256"]}
    assert asyncio.run(run(good)).token_endpoint == CFG.token_endpoint
    with pytest.raises(auth.SmartError, match="PKCE"):
        asyncio.run(run({**good, "code_challenge_methods_supported": ["plain"]}))
    with pytest.raises(auth.SmartError):
        asyncio.run(run({**good, "token_endpoint": "http://evil.example/token"}))


def test_private_key_jwt_assertion_verifies_with_our_jwks(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "k.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cfg = SmartSettings(client_key_file=path, client_key_alg="ES384", client_id="app-1")
    token = auth.client_assertion(cfg, CFG.token_endpoint)
    jwks = auth.public_jwks(cfg)
    assert len(jwks["keys"]) == 1 and "d" not in jwks["keys"][0]
    header = jwt.get_unverified_header(token)
    assert header["kid"] == cfg.client_key_id and header["typ"] == "JWT" and header["alg"] == "ES384"
    pub = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, pub, algorithms=["ES384"], audience=CFG.token_endpoint)
    assert claims["iss"] == claims["sub"] == "app-1" and claims["jti"] and claims["exp"] - claims["iat"] <= 300
    assert auth.public_jwks(SmartSettings()) == {"keys": []}


def test_launch_state_is_single_use_and_expires() -> None:
    store = SessionStore()
    pending = PendingLaunch(ISS, "l", "v", "b", CFG, "https://cds.example/smart/callback", time.time() + 60)
    store.start_launch("state-1", pending)
    assert store.finish_launch("state-1") == pending
    assert store.finish_launch("state-1") is None  # a replayed callback finds nothing
    store.start_launch("state-2", PendingLaunch(ISS, None, "v", "b", CFG, "r", time.time() - 1))
    assert store.finish_launch("state-2") is None
    assert "state-1" not in str(store.launches._items)  # keyed by hash, never the secret


def test_allow_list_and_sections() -> None:
    cfg = SmartSettings(allowed_iss=[ISS + "/"])
    assert cfg.iss_allowed(ISS) and cfg.iss_allowed(ISS + "/") and not cfg.iss_allowed("https://ehr.example/fhir2")
    assert not SmartSettings().enabled
    assert section_of("workup") == "workup" and section_of('{"section": "emg"}') == "emg"
    assert section_of("javascript:alert(1)") is None and section_of(None) is None


def _cards(name: str, settings: Settings) -> list[dict[str, Any]]:
    registry = Registry()
    load_services(registry, settings.service_modules, settings)
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
    prefetch, patient = prefetch_from_bundle(patient_view_specs(registry), fx.bundle)
    now = datetime.now(UTC)
    return asyncio.run(cards_offline(registry, settings, prefetch, patient, now, "https://cds.example"))


def test_cards_link_the_app_only_with_a_public_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_SMART_ALLOWED_ISS", json.dumps([ISS]))
    with_base = _cards("r01-weakness", Settings(public_base_url="https://cds.example"))
    smart = {c["summary"][:30]: [lk for lk in c["links"] if lk["type"] == "smart"] for c in with_base}
    red = next(v for k, v in smart.items() if k.startswith("Fasciculations with weakness"))
    assert red == [{"label": "Open the whole work-up (SMART app)", "url": "https://cds.example/smart/launch",
                    "type": "smart", "appContext": "red-flags"}]
    gaps = next(v for k, v in smart.items() if k.startswith("First-tier work-up"))
    assert gaps[0]["appContext"] == "workup"
    assert not response_problems({"cards": with_base})
    without = _cards("r01-weakness", Settings())
    assert without and all(lk["type"] == "absolute" for c in without for lk in c["links"])
    monkeypatch.delenv("CDS_SMART_ALLOWED_ISS")
    unconfigured = _cards("r01-weakness", Settings(public_base_url="https://cds.example"))
    assert all(lk["type"] == "absolute" for c in unconfigured for lk in c["links"])


def test_evaluate_html_writes_a_standalone_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page.html"
    assert main(["evaluate", str(fixtures.ROOT / "patients" / "r01-weakness.json"), "--fixture", "--html", str(out)]) == 0
    assert "card(s)" in capsys.readouterr().out
    html = out.read_text()
    meta = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert meta and unescape(meta.group(1)).startswith("default-src 'none'; style-src 'sha256-")
    assert "<script" not in html and " src=" not in html and "style=" not in html
    assert "Muscle weakness (generalized)" in html and "urgent EMG/NCS" in html and "Read-only." in html
    none = tmp_path / "none.html"
    assert main(["evaluate", str(fixtures.ROOT / "patients" / "no-trigger.json"), "--fixture", "--html", str(none)]) == 0
    assert "No fasciculation is recorded" in none.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Patient"}')
    assert main(["evaluate", str(bad), "--html", str(tmp_path / "x.html")]) == 2


def test_mrc_grades_are_shown_as_deficits() -> None:
    """Strength graded 3/5 (found by text: no verified code exists) is shown as an objective
    deficit, and the page no longer says 'None recorded'."""
    from cds_service.smart.offline import bundle_page

    fx = fixtures.load(fixtures.ROOT / "patients" / "r20-reassurance.json")
    patient = next(e["resource"]["id"] for e in fx.bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    grade = {
        "resourceType": "Observation", "id": "mrc-1", "status": "final",
        "code": {"text": "Muscle strength (MRC), left deltoid"},
        "bodySite": {"text": "left deltoid"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": fx.bundle["timestamp"], "valueInteger": 3,
    }
    normal = {**grade, "id": "mrc-2", "valueString": "5/5", "valueInteger": None}
    bundle = {**fx.bundle, "entry": [*fx.bundle["entry"], {"resource": grade}, {"resource": normal}]}
    html, _ = bundle_page(bundle, "b.json", Settings())
    assert "Muscle strength (MRC), left deltoid (left deltoid): 3/5" in html and "objective, reduced" in html
    assert ": 5/5" in html and "objective, normal" in html
    assert "None recorded: no weakness" not in html


def _report(conclusion: str, codes: frozenset[str] = frozenset(), concepts: frozenset[str] = frozenset()) -> Order:
    return Order(frozenset({"emg"}), "DiagnosticReport/x", "DiagnosticReport", "final", None, "EMG", False, True,
                 conclusion, codes, frozenset(), concepts)


@pytest.mark.parametrize(
    ("conclusion", "cls", "sentence"),
    [
        ("Fibrillation potentials and positive sharp waves in two limbs.", emg.DENERVATION,
         "Fibrillation potentials and positive sharp waves in two limbs."),
        # the negation covers the whole list: a normal report, never 'denervation'
        ("Fasciculation potentials in the calves. No fibrillation potentials or positive sharp waves. "
         "Normal study.", emg.NORMAL, "Fasciculation potentials in the calves."),
        ("Normal nerve conduction. Short-duration, small-amplitude motor units in proximal muscles.",
         emg.MYOPATHIC, "Short-duration, small-amplitude motor units in proximal muscles."),
        ("Mild chronic neurogenic changes in one calf muscle only.", emg.NEUROGENIC,
         "Mild chronic neurogenic changes in one calf muscle only."),
        ("Study limited by patient tolerance.", emg.INDETERMINATE, "Study limited by patient tolerance."),
    ],
)
def test_emg_reading_is_the_rules_classifier(conclusion: str, cls: str, sentence: str) -> None:
    """The page's EMG class is clinical/emg.py's (the class R09/R11/R20/R21 act on), with the
    sentence it can be read from."""
    got_cls, got_sentence = emg_reading(_report(conclusion))
    assert got_cls == cls == emg.classify(_report(conclusion))
    if cls != emg.NORMAL:
        assert got_sentence == sentence
    else:  # the class of the whole report: the first sentence that alone reads normal
        assert emg.classify_text(got_sentence) == emg.NORMAL


def test_emg_reading_names_a_coded_conclusion() -> None:
    assert emg_reading(_report("", codes=frozenset({emg.NORMAL_CODE}))) == (emg.NORMAL, "(coded conclusion)")


def test_abnormal_emg_page_and_r21_card_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """R21 (abnormal EMG) opens the app at the EMG section; the page shows the class and sentence."""
    from cds_service.smart.offline import bundle_page

    monkeypatch.setenv("CDS_SMART_ALLOWED_ISS", json.dumps([ISS]))
    cards = _cards("r09-abnormal-emg", Settings(public_base_url="https://cds.example"))
    r21 = [c for c in cards if c["summary"].startswith("EMG shows active denervation")]
    assert r21 and [lk["appContext"] for lk in r21[0]["links"] if lk["type"] == "smart"] == ["emg"]
    fx = fixtures.load(fixtures.ROOT / "patients" / "r09-abnormal-emg.json")
    html, count = bundle_page(fx.bundle, "r09.json", Settings())
    assert count == len(cards)
    assert "<td>active-denervation</td>" in html and "Abnormal: latest report shows active denervation" in html
    assert "<q>Fibrillation potentials and positive sharp waves in two limbs.</q>" in html


def test_the_app_is_a_plug_in_router() -> None:
    """The default service modules mount /smart through Registry.routers (the HTTP layer never
    imports the app); without the plug-in /smart is the service's plain 404."""
    from cds_service.http.app import create_app

    settings = Settings()
    assert settings.service_modules[-1] == "cds_service.smart.plugin"

    async def launch(modules: list[str]) -> httpx.Response:
        registry = Registry()
        load_services(registry, modules, settings)
        app = create_app(settings, registry)  # no lifespan: these answers need no runtime
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/smart/launch", params={"iss": "https://x.example/fhir"})

    mounted = asyncio.run(launch(settings.service_modules))
    assert mounted.status_code == 404 and mounted.headers["content-type"].startswith("text/html")
    assert "App not configured" in mounted.text  # the app's own page, not rewritten by OutcomeErrors
    bare = asyncio.run(launch(["cds_service.clinical.services"]))
    assert bare.status_code == 404 and bare.json()["resourceType"] == "OperationOutcome"
