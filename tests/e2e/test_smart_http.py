"""The SMART app's endpoints over HTTP on the real server process: error pages (status, readable
text, security headers), the allow-list refusing before any request, and the JWKS endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import CdsServer, FhirServer, run_cds_server

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def server(fhir_open: FhirServer) -> Iterator[CdsServer]:
    # SEKMET is allow-listed but has no SMART configuration: discovery must fail readably.
    with run_cds_server({"CDS_SMART_ALLOWED_ISS": json.dumps([fhir_open.base])}) as s:
        yield s


def get(server: CdsServer, path: str, **kw: object) -> httpx.Response:
    return httpx.get(server.url(path), follow_redirects=False, timeout=30, **kw)  # type: ignore[arg-type]


def check_page(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    assert text in r.text and "<script" not in r.text
    csp = r.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'sha256-") and "frame-ancestors 'self'" in csp
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"


def test_launch_without_iss(server: CdsServer) -> None:
    check_page(get(server, "/smart/launch?launch=abc"), 400, "no iss")


def test_iss_not_allowed(server: CdsServer) -> None:
    check_page(get(server, "/smart/launch?iss=https%3A%2F%2Fevil.example%2Ffhir&launch=x"), 403, "allow-list")


def test_allowed_iss_without_smart_configuration(server: CdsServer, fhir_open: FhirServer) -> None:
    r = get(server, "/smart/launch", params={"iss": fhir_open.base, "launch": "x"})
    check_page(r, 502, "SMART configuration")


def test_callback_error_and_unknown_state(server: CdsServer) -> None:
    r = get(server, "/smart/callback?error=access_denied&error_description=User+said+no&state=s1")
    check_page(r, 401, "access_denied: User said no")
    check_page(get(server, "/smart/callback?code=c&state=never-issued"), 400, "wrong or expired state")
    check_page(get(server, "/smart/callback?code=c"), 400, "Launch not recognised")


def test_error_description_is_escaped(server: CdsServer) -> None:
    r = get(server, "/smart/callback", params={"error": "<b>x</b>", "error_description": "<img src=x>"})
    check_page(r, 401, "&lt;img src=x&gt;")
    assert "<img" not in r.text


def test_app_without_session(server: CdsServer) -> None:
    check_page(get(server, "/smart/app"), 401, "No active session")
    check_page(get(server, "/smart/app", cookies={"cds_smart_session": "forged"}), 401, "No active session")


def test_start_page_and_jwks(server: CdsServer, fhir_open: FhirServer) -> None:
    r = get(server, "/smart")
    check_page(r, 200, fhir_open.base)
    assert get(server, "/smart/jwks.json").json() == {"keys": []}


def test_app_off_without_allow_list() -> None:
    with run_cds_server() as s:
        check_page(get(s, "/smart/launch?iss=https%3A%2F%2Fehr.example%2Ffhir&launch=x"), 404, "not configured")
