"""Issue 16, point 7: the HTTP edge of the real server process.

Duplicate Authorization headers, non-JSON Content-Types, oversized or too many headers, stalled
headers and bodies, unparsable requests, CORS refusals and a fhirServer with user information:
each gets its own status with an OperationOutcome body. Raw sockets are used where an HTTP client
would refuse to send what an attacker sends."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cds_service.trust.edges import is_json_media_type
from tests.support.client import hook_body
from tests.support.servers import CdsServer, run_cds_server
from tests.support.trust_env import LocalIssuer, production_env

SVC = "/cds-services/probe"
FEEDBACK = "/cds-services/probe/feedback"
ORIGIN = "https://ehr-ui.example.test"


@pytest.fixture(scope="module")
def client() -> LocalIssuer:
    return LocalIssuer.create()


@pytest.fixture(scope="module")
def server(client: LocalIssuer) -> Iterator[CdsServer]:
    env = production_env(
        [client.config()],
        CDS_HEADER_TIMEOUT_SECONDS="2",
        CDS_BODY_TIMEOUT_SECONDS="2",
        CDS_CORS_ALLOW_ORIGINS=json.dumps([ORIGIN]),
        CDS_FHIR_SERVER_REQUIRE_HTTPS="false",
    )
    with run_cds_server(env) as s:
        yield s


def good_body() -> dict[str, Any]:
    return hook_body(patient="pt-1", prefetch={"patient": {"resourceType": "Patient", "id": "pt-1"}})


def outcome(status: int, body: bytes | str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)
    assert data["resourceType"] == "OperationOutcome", data
    assert data["issue"][0]["diagnostics"]
    return data


@contextlib.contextmanager
def raw(server: CdsServer) -> Iterator[socket.socket]:
    port = int(server.base.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        yield sock
    finally:
        sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (reads until the connection closes or the
    declared length is in)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send a huge request while reading the answer: the server may answer and close early."""

    def run() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------- Authorization


def test_two_authorization_headers_are_refused(server: CdsServer, client: LocalIssuer) -> None:
    valid = client.headers(SVC)["Authorization"]
    for pair in ([valid, "Bearer garbage"], ["Bearer garbage", valid], [valid, valid]):
        headers = [("Authorization", v) for v in pair] + [("Content-Type", "application/json")]
        r = httpx.post(server.url(SVC), content=json.dumps(good_body()), headers=headers, timeout=30)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        outcome(401, r.content)
    assert httpx.post(server.url(SVC), json=good_body(), headers=client.headers(SVC)).status_code == 200


# --------------------------------------------------------------------------------- Content-Type


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; b=x",
        "json",
    ],
)
def test_non_json_content_type_is_415(server: CdsServer, client: LocalIssuer, ctype: str | None) -> None:
    headers = dict(client.headers(SVC))
    if ctype is not None:
        headers["Content-Type"] = ctype
    r = httpx.post(server.url(SVC), content=json.dumps(good_body()).encode(), headers=headers, timeout=30)
    assert r.status_code == 415, r.text
    outcome(415, r.content)


@pytest.mark.parametrize(
    "ctype", ["application/json", "application/fhir+json", "Application/JSON; charset=utf-8"]
)
def test_json_content_types_are_accepted(server: CdsServer, client: LocalIssuer, ctype: str) -> None:
    headers = {**client.headers(SVC), "Content-Type": ctype}
    r = httpx.post(server.url(SVC), content=json.dumps(good_body()).encode(), headers=headers, timeout=30)
    assert r.status_code == 200, r.text


def test_media_type_rule() -> None:
    assert is_json_media_type("application/json")
    assert is_json_media_type("application/cds-hooks+json;charset=utf-8")
    assert not is_json_media_type("application/+json")
    assert not is_json_media_type("text/json")
    assert not is_json_media_type("application/jsonp")


# -------------------------------------------------------------------------------- header limits


@pytest.mark.parametrize(
    ("label", "extra"),
    [
        ("one 1 MB header", b"X-Big: " + b"a" * 1_000_000 + b"\r\n"),
        ("one 16 MB header", b"X-Big: " + b"a" * 16_000_000 + b"\r\n"),
        ("100,000 headers", b"".join(b"X-H%d: v\r\n" % i for i in range(100_000))),
        ("101 headers", b"".join(b"X-H%d: v\r\n" % i for i in range(101))),
        ("40 KB in 40 headers", b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(40))),
    ],
)
def test_header_limits(server: CdsServer, label: str, extra: bytes) -> None:
    with raw(server) as sock:
        request = b"GET /cds-services HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"
        sender = send_in_background(sock, request)
        status, headers, body = read_response(sock)
        sender.join(30)
    assert status == 431, label
    assert headers["connection"] == "close"
    outcome(431, body)


def test_headers_under_the_limits_pass(server: CdsServer, client: LocalIssuer) -> None:
    headers = {**client.headers("/cds-services"), **{f"X-H{i}": "v" * 100 for i in range(90)}}
    assert httpx.get(server.url("/cds-services"), headers=headers, timeout=30).status_code == 200


# ---------------------------------------------------------------------------- slow or stalled


def test_stalled_headers_get_408_and_the_connection_is_cut(server: CdsServer) -> None:
    with raw(server) as sock:
        sock.sendall(b"GET /cds-services HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        status, _, body = read_response(sock)
        waited = time.monotonic() - started
        assert sock.recv(1) == b""  # closed
    print(f"stalled headers: 408 after {waited:.2f} s")
    assert status == 408
    outcome(408, body)


def test_idle_connection_is_cut(server: CdsServer) -> None:
    """A connection that never sends a byte is not held forever either."""
    with raw(server) as sock:
        status, _, body = read_response(sock)
    assert status == 408
    outcome(408, body)


def test_stalled_body_gets_408(server: CdsServer, client: LocalIssuer) -> None:
    token = client.headers(SVC)["Authorization"]
    with raw(server) as sock:
        sock.sendall(
            b"POST " + SVC.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + token.encode() + b'\r\nContent-Length: 1000\r\n\r\n{"hook": '
        )
        started = time.monotonic()
        status, headers, body = read_response(sock)
        waited = time.monotonic() - started
    print(f"stalled body: 408 after {waited:.2f} s")
    assert status == 408
    assert headers["connection"] == "close"
    outcome(408, body)


def test_trickling_body_gets_408(server: CdsServer, client: LocalIssuer) -> None:
    """One byte every half second: each read is quick, the whole body is not."""
    token = client.headers(SVC)["Authorization"]
    with raw(server) as sock:
        sock.sendall(
            b"POST " + SVC.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + token.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
        )
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                time.sleep(0.5)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        status, _, body = read_response(sock)
        stop.set()
    assert status == 408
    outcome(408, body)


# ------------------------------------------------------------------- parse errors and CORS


def test_unparsable_request_is_an_operation_outcome(server: CdsServer) -> None:
    with raw(server) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    outcome(400, body)


def test_cors_refusal_is_an_operation_outcome(server: CdsServer) -> None:
    r = httpx.options(
        server.url(SVC),
        headers={"Origin": "https://evil.example.test", "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    outcome(400, r.content)
    ok = httpx.options(
        server.url(SVC), headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}, timeout=30
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN


# ------------------------------------------------------------------------- fhirServer userinfo


@pytest.mark.parametrize(
    "fhir", ["https://user:secret@fhir.example.test/r4", "https://token@fhir.example.test/r4"]
)
def test_fhir_server_with_userinfo_is_412(server: CdsServer, client: LocalIssuer, fhir: str) -> None:
    body = hook_body(fhir_server=fhir, token="t")
    r = httpx.post(server.url(SVC), json=body, headers=client.headers(SVC), timeout=30)
    assert r.status_code == 412, r.text
    data = outcome(412, r.content)
    assert "user information" in data["issue"][0]["diagnostics"]
    assert "secret" not in r.text


def test_post_without_body_or_type_is_the_endpoints_400(server: CdsServer, client: LocalIssuer) -> None:
    """Nothing to type: the endpoint's own answer (body is empty) is more useful than a 415."""
    r = httpx.post(server.url(SVC), headers=client.headers(SVC), timeout=30)
    assert r.status_code == 400, r.text
    assert "empty" in outcome(400, r.content)["issue"][0]["diagnostics"]
