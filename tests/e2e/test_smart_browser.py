"""The SMART app end to end, as a clinician's browser meets it: Debian's Chromium (playwright-core)
opens the app's launch URL; the official SMART App Launcher (in front of SEKMET, loaded with the
project's fixtures) authorises it with PKCE; the app reads the patient through the launcher's FHIR
proxy and renders the page. Asserts are on what the page shows, on every request the browser made
(only the service and the launcher), on axe-core (no serious or critical violation) and on the
error pages; screenshots are saved under test-artefacts/smart/."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cds_tools import fixtures
from tests.support.servers import CdsServer, FhirServer, free_port, run_cds_server
from tests.support.smart import (
    ARTEFACTS,
    Launcher,
    browse,
    ensure_chromium,
    ensure_playwright,
    launch_code,
    run_launcher,
    sim_iss,
)

pytestmark = [pytest.mark.e2e, pytest.mark.node]

PATIENTS = ["r01-weakness", "r04-pending-cbc", "r20-reassurance", "no-trigger", "r09-abnormal-emg"]
STANDALONE = launch_code(2, "fx-r20-reassurance")  # provider standalone; the launcher picks the patient


@pytest.fixture(scope="module", autouse=True)
def _parts() -> None:
    """Skip before starting anything when Node, the kit or Chromium cannot be had."""
    ensure_playwright()
    ensure_chromium()


@pytest.fixture(scope="module")
def loaded(fhir_open: FhirServer) -> dict[str, fixtures.Fixture]:
    out = {}
    for name in PATIENTS:
        fx = fixtures.load(fixtures.ROOT / "patients" / f"{name}.json")
        fhir_open.load(fx.bundle)
        out[name] = fx
    return out


@pytest.fixture(scope="module")
def launcher(fhir_open: FhirServer, loaded: dict[str, Any]) -> Iterator[Launcher]:
    with run_launcher(fhir_open.base) as lch:
        yield lch


@pytest.fixture(scope="module")
def short_launcher(fhir_open: FhirServer, loaded: dict[str, Any]) -> Iterator[Launcher]:
    """Tokens of 6 seconds: a real expiry (long enough for the first page under load)."""
    with run_launcher(fhir_open.base, token_minutes=0.1) as lch:
        yield lch


@pytest.fixture(scope="module")
def service(launcher: Launcher, short_launcher: Launcher) -> Iterator[CdsServer]:
    allowed = [launcher.fhir_base, short_launcher.fhir_base, sim_iss(launcher, STANDALONE)]
    port = free_port()  # known in advance: it is the public base URL, so cards carry the app's link
    env = {"CDS_SMART_ALLOWED_ISS": json.dumps(allowed), "CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    with run_cds_server(env, port=port) as s:
        yield s


@pytest.fixture(scope="module")
def confidential(launcher: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdsServer]:
    """The same service registered as a confidential client (private_key_jwt, our JWKS)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("smart-key") / "client.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    env = {"CDS_SMART_ALLOWED_ISS": json.dumps([launcher.fhir_base]), "CDS_SMART_CLIENT_KEY_FILE": str(path)}
    with run_cds_server(env) as s:
        yield s


def ehr_launch(service: CdsServer, launcher: Launcher, patient: str, **code: Any) -> str:
    return service.url("/smart/launch?" + urlencode({"iss": launcher.fhir_base, "launch": launch_code(0, patient, **code)}))


def origins(report: dict[str, Any]) -> set[str]:
    return {f"{urlsplit(r['url']).scheme}://{urlsplit(r['url']).netloc}" for r in report["requests"]}


def section(text: str, title: str, nxt: str) -> str:
    """The visible text of one section (between its heading and the next one)."""
    start = text.index("\n" + title + "\n", text.index("Decision support cards") + 1 if title != "Decision support cards" else 0)
    end = text.find("\n" + nxt + "\n", start + 1) if nxt else len(text)
    return text[start : end if end > 0 else len(text)]


def row(text: str, test: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(test + "\t"))


def check_clean(report: dict[str, Any], service: CdsServer, launcher: Launcher) -> None:
    """Only the service and the launcher were contacted; no CSP violation; axe clean."""
    assert origins(report) <= {service.base, launcher.base}, origins(report)
    assert not [m for m in report["console"] if "Content Security Policy" in m], report["console"]
    if report["axe"] is not None:
        bad = [v for v in report["axe"] if v["impact"] in ("serious", "critical")]
        assert not bad, bad


def test_ehr_launch_red_flag_patient(service: CdsServer, launcher: Launcher) -> None:
    report = browse([{"goto": ehr_launch(service, launcher, "fx-r01-weakness")}], "red-flag-patient.png", axe=True)
    page = report["steps"][-1]
    assert page["status"] == 200 and urlsplit(page["url"]).path == "/smart/app", page["url"]
    text = page["text"]
    assert "R01 Weakness Synthetic" in text and "58 years" in text
    flags = section(text, "Red flags", "Work-up checklist")
    assert "Muscle weakness (generalized)" in flags and "objective, active" in flags
    assert "None recorded" not in flags
    assert "Read-only." in text and "does not write to the EHR" in text
    cards = section(text, "Decision support cards", "")
    assert "urgent EMG/NCS and neurology referral" in cards and "Why this card" in cards
    assert row(text, "Vitamin B12").split("\t")[2] == "missing"
    assert page["sections"] == ["red-flags", "workup", "trends", "emg", "medications", "orders", "follow-up", "cards"]
    # the browser went to the launcher to authorise (PKCE S256, aud = iss) and back, nowhere else
    auth = next(r["url"] for r in report["requests"] if "/auth/authorize" in r["url"])
    assert "code_challenge_method=S256" in auth and "code_challenge=" in auth and "state=" in auth
    assert f"aud={launcher.fhir_base.replace(':', '%3A').replace('/', '%2F')}" in auth
    assert not any("access_token" in r["url"] for r in report["requests"])
    check_clean(report, service, launcher)
    assert (ARTEFACTS / "red-flag-patient.png").stat().st_size > 10_000


def test_lab_gaps_with_pending_tests(service: CdsServer, launcher: Launcher) -> None:
    report = browse([{"goto": ehr_launch(service, launcher, "fx-r04-pending-cbc")}], "lab-gaps-pending.png", axe=True)
    text = report["steps"][-1]["text"]
    cbc = row(text, "Complete blood count").split("\t")
    assert cbc[2] == "pending" and "CBC panel" in cbc[7]
    for test in ("Vitamin B12", "TSH", "Magnesium", "Serum protein electrophoresis"):
        assert row(text, test).split("\t")[2] == "missing", test
    assert "CBC panel - Blood by Automated count" in section(text, "Orders pending", "Follow-up")
    assert "First-tier work-up incomplete" in text and "CBC is pending" in text
    check_clean(report, service, launcher)


def test_normal_workup(service: CdsServer, launcher: Launcher) -> None:
    report = browse([{"goto": ehr_launch(service, launcher, "fx-r20-reassurance")}], "complete-workup.png", axe=True)
    page = report["steps"][-1]
    text = page["text"]
    for test in ("HbA1c or fasting glucose", "Complete blood count", "Comprehensive metabolic panel", "Vitamin B12",
                 "TSH", "Serum protein electrophoresis", "Magnesium"):
        assert row(text, test).split("\t")[2] == "done", test
    tsh = row(text, "TSH").split("\t")
    assert tsh[3] == "1.8 m[IU]/L" and "0.4" in tsh[4] and tsh[6] == "365 days"
    assert "None recorded: no weakness" in text
    assert "consistent with benign fasciculation syndrome" in text
    charts = {s["title"]: s["desc"] for s in page["svgs"]}
    assert "TSH over time (mIU/L)" in charts or any(t.startswith("TSH over time") for t in charts), charts
    tsh_desc = next(d for t, d in charts.items() if t.startswith("TSH over time"))
    assert "latest 1.8" in tsh_desc and "Reference band 0.4 to 4.5" in tsh_desc
    check_clean(report, service, launcher)


def test_no_fasciculation(service: CdsServer, launcher: Launcher) -> None:
    report = browse([{"goto": ehr_launch(service, launcher, "fx-no-trigger")}], axe=True)
    text = report["steps"][-1]["text"]
    assert "No fasciculation is recorded for this patient" in text and "gives no cards" in text
    assert "Work-up checklist" not in text
    check_clean(report, service, launcher)


def test_emg_reading_with_its_sentence(service: CdsServer, launcher: Launcher, fhir_open: FhirServer) -> None:
    """The EMG section shows the class of clinical/emg.py (the one R21 acts on) and the sentence it
    was read from; R21's card opens the app at that section."""
    cards = hook_cards(service, fhir_open, "fx-r09-abnormal-emg")
    r21 = next(c for c in cards if c["summary"].startswith("EMG shows active denervation"))
    link = next(lk for lk in r21["links"] if lk["type"] == "smart")
    assert link["appContext"] == "emg"
    url = link["url"] + "?" + urlencode({"iss": launcher.fhir_base, "launch": launch_code(0, "fx-r09-abnormal-emg")})
    report = browse([{"goto": url}])
    emg = section(report["steps"][-1]["text"], "EMG/NCS", "Medications that can cause or worsen fasciculations")
    assert "Abnormal: latest report shows active denervation or widespread neurogenic change" in emg
    assert "active-denervation" in emg
    assert "Fibrillation potentials and positive sharp waves in two limbs." in emg


def test_standalone_launch(service: CdsServer, launcher: Launcher) -> None:
    iss = sim_iss(launcher, STANDALONE)
    start = service.url("/smart")
    report = browse([{"goto": start}, {"goto": service.url("/smart/launch?" + urlencode({"iss": iss}))}])
    assert iss in report["steps"][0]["text"]
    page = report["steps"][-1]
    assert page["status"] == 200 and "R20 Reassurance Synthetic" in page["text"]
    auth = next(r["url"] for r in report["requests"] if "/auth/authorize" in r["url"])
    assert "launch%2Fpatient" in auth and "launch=" not in auth.split("?", 1)[1].replace("launch%2F", "")
    check_clean(report, service, launcher)


def test_denied_authorization(service: CdsServer, launcher: Launcher) -> None:
    report = browse([{"goto": ehr_launch(service, launcher, "fx-r01-weakness", auth_error="auth_invalid_scope")}])
    page = report["steps"][-1]
    assert page["status"] == 401 and "Authorization not granted" in page["text"] and "invalid_scope" in page["text"]
    assert "R01 Weakness" not in page["text"]


def test_wrong_state(service: CdsServer, launcher: Launcher) -> None:
    report = browse([{"goto": service.url("/smart/callback?code=abc&state=forged-state")}])
    page = report["steps"][-1]
    assert page["status"] == 400 and "wrong or expired state" in page["text"]


def test_expired_token(service: CdsServer, short_launcher: Launcher) -> None:
    report = browse([{"goto": ehr_launch(service, short_launcher, "fx-r01-weakness")}, {"reload": True, "waitMs": 7000}])
    first, again = report["steps"]
    assert first["status"] == 200 and "R01 Weakness Synthetic" in first["text"]
    assert again["status"] == 401 and "Session expired" in again["text"] and "R01 Weakness" not in again["text"]


class Sentinel:
    """A listener that counts connections: proof that a refused iss is never contacted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits = 0
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_iss_not_allowed(service: CdsServer, launcher: Launcher) -> None:
    sentinel = Sentinel()
    try:
        evil = f"http://127.0.0.1:{sentinel.port}/fhir"
        url = service.url("/smart/launch?" + urlencode({"iss": evil, "launch": "x"}))
        report = browse([{"goto": url}], axe=True)
    finally:
        sentinel.close()
    page = report["steps"][-1]
    assert page["status"] == 403 and "not on the service's allow-list" in page["text"]
    assert sentinel.hits == 0
    assert origins(report) == {service.base}
    check_clean(report, service, launcher)


def test_confidential_client_private_key_jwt(confidential: CdsServer, launcher: Launcher) -> None:
    jwks_url = confidential.url("/smart/jwks.json")
    ok = browse([{"goto": ehr_launch(confidential, launcher, "fx-r01-weakness", client_type=2, jwks_url=jwks_url)}])
    assert ok["steps"][-1]["status"] == 200 and "R01 Weakness Synthetic" in ok["steps"][-1]["text"]
    # the launcher verifies our assertion: against another key set it refuses the token
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(other.public_key()))
    jwk.update({"kid": "cds-fasciculation-smart-1", "alg": "RS384"})
    bad = browse([{"goto": ehr_launch(confidential, launcher, "fx-r01-weakness", client_type=2,
                                      jwks=json.dumps({"keys": [jwk]}))}])
    assert bad["steps"][-1]["status"] == 401 and "Sign-in failed" in bad["steps"][-1]["text"]



def test_state_is_bound_to_the_browser_and_single_use(service: CdsServer, launcher: Launcher) -> None:
    """The launch by hand (httpx as the browser): cookies are HttpOnly/SameSite on /smart; a callback
    from another browser (no launch cookie) is refused; a replayed callback is refused."""
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        r = browser.get(ehr_launch(service, launcher, "fx-r01-weakness"))
        assert r.status_code == 302 and r.headers["location"].startswith(launcher.base + "/v/r4/auth/authorize")
        set_cookie = r.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/smart" in set_cookie
        r = browser.get(r.headers["location"])
        assert r.status_code == 302
        callback = r.headers["location"]
        assert callback.startswith(service.url("/smart/callback?")) and "state=" in callback
        other = httpx.get(callback, follow_redirects=False, timeout=30)  # a different browser: no cookie
        assert other.status_code == 400 and "different browser" in other.text
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        r = browser.get(ehr_launch(service, launcher, "fx-r01-weakness"))
        callback = browser.get(r.headers["location"]).headers["location"]
        done = browser.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/smart/app"
        session_cookie = next(v for v in done.headers.get_list("set-cookie") if v.startswith("cds_smart_session="))
        assert "httponly" in session_cookie.lower() and "samesite=lax" in session_cookie.lower()
        assert browser.get(service.url("/smart/app")).status_code == 200
        replay = browser.get(callback)
        assert replay.status_code == 400 and "wrong or expired state" in replay.text
    logs = service.logs()
    assert "smart session opened" in logs and "eyJ" not in logs  # no token, code or id_token in the log


def hook_cards(service: CdsServer, fhir: FhirServer, patient: str) -> list[dict[str, Any]]:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir.base,
        "context": {"patientId": patient, "userId": "Practitioner/dr-1"},
    }
    r = httpx.post(service.url("/cds-services/fasciculation-workup"), json=body, timeout=30)
    assert r.status_code == 200, r.text
    cards: list[dict[str, Any]] = r.json()["cards"]
    return cards


def test_card_smart_link_opens_the_app(service: CdsServer, launcher: Launcher, fhir_open: FhirServer) -> None:
    """Done when: the hook's card carries the smart link; followed as an EHR does (url + iss +
    launch) it opens the app, and the page shows the cards the hook gave."""
    cards = hook_cards(service, fhir_open, "fx-r01-weakness")
    links = {c["summary"][:20]: [lk for lk in c["links"] if lk["type"] == "smart"] for c in cards}
    red = next(v for k, v in links.items() if k.startswith("Fasciculations with"))
    assert red == [{"label": "Open the whole work-up (SMART app)", "url": service.url("/smart/launch"),
                    "type": "smart", "appContext": "red-flags"}]
    assert next(v for k, v in links.items() if k.startswith("First-tier"))[0]["appContext"] == "workup"
    url = red[0]["url"] + "?" + urlencode({"iss": launcher.fhir_base, "launch": launch_code(0, "fx-r01-weakness")})
    text = browse([{"goto": url}])["steps"][-1]["text"]
    for card in cards:
        assert card["summary"] in text


def test_page_shows_the_same_cards_as_the_hook(service: CdsServer, launcher: Launcher, fhir_open: FhirServer) -> None:
    """The app reads through the launcher's proxy (which collapses an unencoded // in queries), the
    hook here straight from SEKMET: with the queries percent-encoded, both see every lab result."""
    cards = hook_cards(service, fhir_open, "fx-r20-reassurance")
    assert [c["summary"][:40] for c in cards] and not any("First-tier" in c["summary"] for c in cards)
    text = browse([{"goto": ehr_launch(service, launcher, "fx-r20-reassurance")}])["steps"][-1]["text"]
    shown = section(text, "Decision support cards", "")
    for card in cards:
        assert card["summary"] in shown
    assert shown.count("Why this card") == len(cards)
