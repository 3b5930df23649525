"""The EHR simulator end to end, as a user runs it: ``cds-fasciculation ehr ...`` processes against
real SEKMET FHIR servers (open and bearer-protected) and our real service. These are the commands
of docs/testing.md (with free ports instead of the documented ones)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cds_service.clinical.services import SERVICE_IDS
from tests.support.ehr_cli import cds_cli, jwt_server, ok
from tests.support.servers import FHIR_TOKEN, ROOT, CdsServer, FhirServer, run_cds_server, stop, wait_http

pytestmark = pytest.mark.e2e

SERVICE = SERVICE_IDS["patient-view"]
WEAK = "fx-r01-weakness"  # fasciculation with weakness: a critical R01 card with suggestions
QUIET = "fx-r20-reassurance"  # benign picture: where a cyclobenzaprine order draws the R10 card
CYCLOBENZAPRINE = {
    "resourceType": "MedicationRequest",
    "id": "mr-1",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": f"Patient/{QUIET}"},
    "medicationCodeableConcept": {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}]
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server() as s:
        yield s


@pytest.fixture(scope="module")
def fhir(fhir_open: FhirServer) -> str:
    out = ok(cds_cli("ehr", "load", "r01-weakness", "r20-reassurance", "--fhir", fhir_open.base))
    assert f"patient {WEAK}, dates shifted to today" in out
    assert f"patient {QUIET}" in out
    return fhir_open.base


@contextlib.contextmanager
def jwks_process(keys: Path, port: int) -> Iterator[str]:
    """``cds-fasciculation ehr jwks`` running in the background; yields its JWK Set URL."""
    exe = Path(sys.executable).parent / "cds-fasciculation"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cds_service"]
    proc = subprocess.Popen([*cmd, "ehr", "jwks", "--key-dir", str(keys), "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    try:
        wait_http(url, proc)
        yield url
    finally:
        stop(proc)


def call(server: CdsServer, *args: str, patient: str = WEAK) -> tuple[int, str, str]:
    hook = args[args.index("--hook") + 1] if "--hook" in args else "patient-view"  # one id per hook
    proc = cds_cli(
        "ehr", "call", server.url("/cds-services"), "--service", SERVICE_IDS[hook], "--patient", patient, *args
    )
    return proc.returncode, proc.stdout, proc.stderr


def summaries(stdout: str) -> list[str]:
    """The cards of a --json response, as (indicator, summary) text, in response order."""
    return [f"{c['indicator']}: {c['summary']}" for c in json.loads(stdout)["cards"]]


def test_discover(server: CdsServer) -> None:
    out = ok(cds_cli("ehr", "discover", server.url("/cds-services")))
    for hook in ("patient-view", "order-select", "order-sign"):
        assert f"{SERVICE_IDS[hook]}  hook={hook}" in out
    assert "prefetch conditions: Condition?patient={{context.patientId}}" in out
    raw = json.loads(ok(cds_cli("ehr", "discover", server.url(""), "--json")))  # base URL works too
    assert {s["hook"] for s in raw["services"]} == {"patient-view", "order-select", "order-sign"}


def test_call_prints_the_cards(server: CdsServer, fhir: str) -> None:
    rc, out, err = call(server, "--fhir", fhir)
    assert rc == 0, err
    assert re.search(r"^\[1\] CRITICAL  Fasciculations with weakness", out, re.M)
    assert "1.1 Order EMG (electromyography; add nerve conduction studies per local protocol) (urgent) (recommended)" in out
    assert "override reasons:" in out and "links:" in out and "(absolute)" in out
    assert "\033[" not in out  # no TTY: plain text
    assert re.search(r"prefetch conditions\s+ok\s+-> Bundle \(\d+\)", err)


def test_get_and_post_search_give_the_same_cards(server: CdsServer, fhir: str) -> None:
    got = {}
    for mode in ("get", "post"):
        rc, out, err = call(server, "--fhir", fhir, "--search", mode, "--json")
        assert rc == 0, err
        got[mode] = summaries(out)
    assert got["get"] == got["post"]
    assert got["get"][0].startswith("critical: Fasciculations with weakness")


@pytest.mark.parametrize(
    ("mode", "expect_rc", "expect_err"),
    [
        (["--prefetch", "none"], 0, "-> not sent"),  # the service fetches everything from fhirServer
        (["--prefetch", "none", "--no-fhir-server"], 1, "HTTP 412"),  # no data at all: 412
        (["--only", "patient", "conditions"], 0, "labs"),  # partial: the rest is fetched
        (["--omit", "labs", "findings"], 0, "-> omitted"),
        (["--outcome", "conditions"], 0, "-> OperationOutcome"),  # re-fetched from fhirServer
        (["--outcome", "conditions", "--no-fhir-server"], 1, "HTTP 412"),  # required, cannot re-fetch
        (["--null", "conditions"], 0, "-> null"),  # "no data": no trigger, no cards
    ],
)
def test_prefetch_modes(
    server: CdsServer, fhir: str, mode: list[str], expect_rc: int, expect_err: str
) -> None:
    rc, out, err = call(server, "--fhir", fhir, "--json", *mode)
    assert rc == expect_rc, err
    assert expect_err in err
    if rc == 0 and "--null" not in mode:
        assert summaries(out)[0].startswith("critical: Fasciculations with weakness")
    if "--null" in mode:
        assert summaries(out) == []


def test_prefetch_command_shows_exactly_what_is_sent(server: CdsServer, fhir: str) -> None:
    out = ok(
        cds_cli(
            "ehr", "prefetch", server.url("/cds-services"), "--service", SERVICE, "--patient", WEAK,
            "--fhir", fhir, "--search", "post", "--null", "reports", "--outcome", "procedures", "--omit", "exams",
        )
    )  # fmt: skip
    sent = json.loads(out)
    assert sent["patient"]["id"] == WEAK
    assert sent["conditions"]["resourceType"] == "Bundle" and sent["conditions"]["entry"]
    assert sent["reports"] is None and sent["procedures"]["resourceType"] == "OperationOutcome"
    assert "exams" not in sent
    bad = cds_cli(
        "ehr", "prefetch", server.url(""), "--service", SERVICE, "--patient", WEAK, "--omit", "labz"
    )
    assert bad.returncode == 2 and "labz" in bad.stderr


def test_fhir_authorization_against_a_protected_fhir_server(
    server: CdsServer, fhir_bearer: FhirServer
) -> None:
    base = fhir_bearer.base
    ok(cds_cli("ehr", "load", "r01-weakness", "--fhir", base, "--fhir-token", FHIR_TOKEN))
    # The simulator reads with its token and sends the data as prefetch.
    rc, out, err = call(server, "--fhir", base, "--fhir-token", FHIR_TOKEN, "--json")
    assert rc == 0, err
    assert summaries(out)[0].startswith("critical")
    # No prefetch: the service fetches with the token it is handed in fhirAuthorization.
    rc, out, err = call(server, "--fhir", base, "--fhir-token", FHIR_TOKEN, "--fhir-authorization", "--prefetch", "none", "--json")  # fmt: skip
    assert rc == 0, err
    assert summaries(out)[0].startswith("critical")
    # Without fhirAuthorization the service's own fetch is refused by the FHIR server: 412.
    rc, _, err = call(server, "--fhir", base, "--fhir-token", FHIR_TOKEN, "--prefetch", "none")
    assert rc == 1 and "HTTP 412" in err
    assert FHIR_TOKEN not in server.logs()


def test_order_hooks_take_drafts_from_a_file(server: CdsServer, fhir: str, tmp_path: Path) -> None:
    drafts = tmp_path / "drafts.json"
    drafts.write_text(json.dumps([CYCLOBENZAPRINE]))
    rc, out, err = call(
        server, "--fhir", fhir, "--hook", "order-sign", "--drafts", str(drafts), patient=QUIET
    )
    assert rc == 0, err
    assert "WARNING" in out and "delete: MedicationRequest/mr-1" in out
    bundle = tmp_path / "drafts-bundle.json"
    bundle.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": CYCLOBENZAPRINE}]})
    )
    rc, out, err = call(server, "--fhir", fhir, "--hook", "order-select", "--drafts", str(bundle), "--selections", "MedicationRequest/mr-1", patient=QUIET)  # fmt: skip
    assert rc == 0, err
    assert "delete: MedicationRequest/mr-1" in out
    rc, _, err = call(server, "--fhir", fhir, "--hook", "order-sign", patient=QUIET)
    assert rc == 2 and "--drafts" in err


def test_feedback_accept_override_dismiss(server: CdsServer, fhir: str, tmp_path: Path) -> None:
    saved = tmp_path / "response.json"
    rc, _, err = call(server, "--fhir", fhir, "--save", str(saved))
    assert rc == 0, err
    cards = json.loads(saved.read_text())["cards"]
    reason = cards[1]["overrideReasons"][0]["code"]
    before = httpx.get(server.url("/analytics/feedback")).json()["totals"]
    base = ["ehr", "feedback", server.url("/cds-services"), "--service", SERVICE, "--response", str(saved)]
    assert "feedback accepted" in ok(cds_cli(*base, "--card", "1", "--accept", "1", "2"))
    out = ok(cds_cli(*base, "--card", cards[1]["uuid"], "--override", reason, "--comment", "done elsewhere"))
    assert f"feedback overridden {reason}" in out
    assert "HTTP 200" in ok(cds_cli(*base, "--card", "2", "--dismiss"))
    after = httpx.get(server.url("/analytics/feedback")).json()["totals"]
    assert after["accepted"] == before["accepted"] + 1
    assert after["overridden"] >= before["overridden"] + 1  # the same card twice counts once
    wrong = cds_cli(*base, "--card", "1", "--override", "no-such-reason")
    assert wrong.returncode == 2 and "it offers" in wrong.stderr


def test_signed_calls_es384_via_jku_and_rs384_via_jwks_file(fhir: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    rs_jwks = tmp_path / "rs384-jwks.json"
    rs_iss = "https://ehr-rs.example.test"
    rs_entry = json.loads(ok(cds_cli("ehr", "keys", "--key-dir", str(keys), "--alg", "RS384", "--iss", rs_iss, "--no-jku", "--write-jwks", str(rs_jwks), "--issuer-json")))  # fmt: skip
    with jwt_server(keys) as (server, port):
        # this server trusts the ES384 key via its jku; the RS384 key (jwks_file) is tried below
        url = server.url("/cds-services")
        sign = ["--sign", "ES384", "--key-dir", str(keys), "--jwks-port", str(port)]
        assert f"{SERVICE}  hook=patient-view" in ok(cds_cli("ehr", "discover", url, *sign))
        unsigned = cds_cli("ehr", "discover", url)
        assert unsigned.returncode == 1 and "HTTP 401" in unsigned.stderr
        rc, _, err = call(server, "--fhir", fhir)
        assert rc == 1 and "HTTP 401" in err
        rc, out, err = call(server, "--fhir", fhir, *sign)
        assert rc == 0, err
        assert "CRITICAL" in out
        # 'ehr jwks' serves the key set on its own; a signed command then finds its port taken by
        # a server already publishing its key, and uses it.
        with jwks_process(keys, port) as jku:
            kid = httpx.get(jku).json()["keys"][0]["kid"]
            assert kid in ok(cds_cli("ehr", "keys", "--key-dir", str(keys)))
            rc, _, err = call(server, "--fhir", fhir, *sign)
            assert rc == 0, err  # binding the taken port would have failed it otherwise
        assert not re.search(r"eyJ[\w-]+\.eyJ", server.logs())  # no JWT in the service's log
    es_entry = json.loads(ok(cds_cli("ehr", "keys", "--key-dir", str(keys), "--issuer-json")))
    env = {"CDS_TRUSTED_ISSUERS": json.dumps(es_entry + rs_entry), "CDS_REQUIRE_CLIENT_JWT": "true"}
    with run_cds_server(env) as server:
        rs_sign = ["--sign", "RS384", "--key-dir", str(keys), "--iss", rs_iss, "--no-jku", "--jwks-port", "0"]
        rc, out, err = call(server, "--fhir", fhir, *rs_sign)
        assert rc == 0, err
        assert "CRITICAL" in out
