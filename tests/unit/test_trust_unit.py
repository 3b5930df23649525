"""The trust building blocks in isolation: configuration rules, URL normalisation, JSON limits, the
JWK Set cache and replay cache (with a controllable clock), clock-skew edges, and log redaction."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cds_service.ops.observability import JsonFormatter, configure_logging, redact_value
from cds_service.protocol.errors import CdsError
from cds_service.settings import Settings
from cds_service.trust.client_jwt import AuthFailure, TokenVerifier, normalize_url
from cds_service.trust.config import PRESETS_DIR, IssuerConfig, TrustConfigError, load_issuers
from cds_service.trust.jwks import JwksCache, KeySetUnavailable, parse_jwks
from cds_service.trust.limits import check_json_shape
from cds_service.trust.metrics import Reason, count_failure, failure_count
from cds_service.trust.replay import MemoryReplayCache, ReplayCacheUnavailable
from tests.support.jwt_client import claims_for, jwks, mint, new_key
from tests.support.trust_env import jwks_file


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(**kw: Any) -> Settings:
    return Settings(database_url="sqlite+aiosqlite://", patient_hash_key="k", **kw)


# ------------------------------------------------------------------------------------ configuration


def test_sandbox_preset_uses_the_pinned_public_key_set() -> None:
    issuer = IssuerConfig.model_validate({"preset": "sandbox"})
    assert issuer.iss == "https://sandbox.cds-hooks.org"
    assert issuer.jku == ("https://sandbox.cds-hooks.org/.well-known/jwks.json",)
    assert issuer.algorithms == ("ES384",) and issuer.dev_only
    assert issuer.jwks_file is not None and issuer.jwks_file.parent == PRESETS_DIR
    keys = parse_jwks(json.loads(issuer.jwks_file.read_text()))
    assert list(keys) == ["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]
    assert keys["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"].alg == "ES384"
    assert all("d" not in k for k in json.loads(issuer.jwks_file.read_text())["keys"])  # public only


def test_vendor_presets() -> None:
    epic = IssuerConfig.model_validate(
        {"preset": "epic", "iss": "https://e.example.org", "jku": ["https://e/k"]}
    )
    assert epic.algorithms == ("RS384",) and epic.require_nbf
    oracle = IssuerConfig.model_validate({"preset": "oracle-health", "jwks_url": "https://o.example.org/k"})
    assert oracle.iss == "https://cds-hooks.cerner.com"
    with pytest.raises(ValidationError):
        IssuerConfig.model_validate({"preset": "oracle-health"})  # key location is per organisation


@pytest.mark.parametrize(
    "entry",
    [
        {"iss": "x", "jku": ["http://evil.example.org/k"]},
        {"iss": "x", "jwks_url": "ftp://x/k"},
        {"iss": "x", "jku": ["https://x/k"], "algorithms": ["none"]},
        {"iss": "x", "jku": ["https://x/k"], "algorithms": ["HS256"]},
        {"iss": "x", "jwks_file": "/no/such/file.json"},
        {"iss": "x"},
        {"iss": "x", "jku": ["https://x/k"], "unknown_option": 1},
    ],
)
def test_bad_issuer_entries_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IssuerConfig.model_validate(entry)


def test_loopback_http_key_urls_and_origin_normalisation() -> None:
    issuer = IssuerConfig.model_validate(
        {
            "iss": "x",
            "jku": ["http://127.0.0.1:8111/jwks.json", "http://localhost/k", "http://[::1]:9/k"],
            "fhir_server_origins": ["HTTPS://FHIR.Example.org:443/r4/", "http://127.0.0.1:8080/fhir"],
        }
    )
    assert issuer.fhir_server_origins == ("https://fhir.example.org", "http://127.0.0.1:8080")


@pytest.mark.parametrize("algs", [["HS256"], ["none"], [], ["ES384", "HS512"]])
def test_weak_global_algorithms_are_refused(algs: list[str]) -> None:
    with pytest.raises(ValidationError):
        settings(jwt_algorithms=algs)


def test_load_issuers_rules(tmp_path: Path) -> None:
    entry = {"iss": "https://a.example.org", "jwks_url": "https://a.example.org/k"}
    with pytest.raises(TrustConfigError, match="configured twice"):
        load_issuers(settings(trusted_issuers=[entry, entry]))
    with pytest.raises(TrustConfigError, match="dev only"):
        load_issuers(
            settings(
                profile="production", public_base_url="https://c", trusted_issuers=[{"preset": "sandbox"}]
            )
        )
    assert load_issuers(settings()) == {}  # dev with nothing configured is fine
    with pytest.raises(TrustConfigError, match="no trusted issuer"):
        load_issuers(settings(require_client_jwt=True))
    yaml_file = tmp_path / "trust.yaml"
    yaml_file.write_text("issuers:\n  - iss: https://b.example.org\n    jku: [https://b.example.org/k]\n")
    both = load_issuers(settings(trusted_issuers=[entry], trust_config_file=yaml_file))
    assert sorted(both) == ["https://a.example.org", "https://b.example.org"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TrustConfigError, match="not valid JSON/YAML"):
        load_issuers(settings(trust_config_file=tmp_path / "bad.json"))


def test_profile_defaults() -> None:
    assert not settings().jwt_required and not settings().https_fhir_only
    prod = settings(profile="production")
    assert prod.jwt_required and prod.https_fhir_only
    assert not settings(profile="production", fhir_server_require_https=False).https_fhir_only


# ------------------------------------------------------------------------------- URLs and limits


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://cds.example.org/cds-services/", "https://cds.example.org/cds-services"),
        ("HTTPS://CDS.example.org:443/cds-services", "https://cds.example.org/cds-services"),
        ("https://cds.example.org//cds-services//x", "https://cds.example.org/cds-services/x"),
        ("http://127.0.0.1:80/cds-services", "http://127.0.0.1/cds-services"),
    ],
)
def test_normalize_url_equal(a: str, b: str) -> None:
    assert normalize_url(a) == normalize_url(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://cds.example.org/cds-services", "http://cds.example.org/cds-services"),
        ("https://cds.example.org:8443/cds-services", "https://cds.example.org/cds-services"),
        ("https://cds.example.org/cds-services/A", "https://cds.example.org/cds-services/a"),
        ("https://cds.example.org/cds-services/x", "https://cds.example.org/cds-services"),
    ],
)
def test_normalize_url_different(a: str, b: str) -> None:
    assert normalize_url(a) != normalize_url(b)


def test_json_shape_limits() -> None:
    def nest(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels - 1):
            value = [value]
        return value

    check_json_shape(nest(10), max_depth=10, max_elements=100)
    with pytest.raises(CdsError) as too_deep:
        check_json_shape(nest(11), max_depth=10, max_elements=100)
    assert too_deep.value.status == 400
    check_json_shape({"a": list(range(99))}, max_depth=10, max_elements=101)
    with pytest.raises(CdsError) as too_many:
        check_json_shape({"a": list(range(100))}, max_depth=10, max_elements=100)
    assert too_many.value.status == 413
    check_json_shape(nest(50_000), max_depth=100_000, max_elements=100_000)  # no recursion limit


# --------------------------------------------------------------------------------- key set cache


async def test_jwks_cache_rotation_refresh_interval_and_ttl(tmp_path: Path) -> None:
    k1, k2 = new_key("ES384", "k1"), new_key("ES384", "k2")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(k1)))
    clock = Clock(1000.0)
    cache = JwksCache(ttl=3600, min_refresh=60, timeout=1, clock=clock)
    source = f"file:{path}"
    assert (await cache.get(source, "k1")) is not None
    path.write_text(json.dumps(jwks(k2)))
    assert (await cache.get(source, "k1")) is not None  # cached, the file is not re-read
    assert (await cache.get(source, "k2")) is not None  # unknown kid: one refresh
    assert (await cache.get(source, "k1")) is None  # dropped with the refresh
    path.write_text(json.dumps(jwks(k1, k2)))
    assert (await cache.get(source, "k1")) is None  # within the interval: no second refresh
    clock.now += 61
    assert (await cache.get(source, "k1")) is not None  # interval over: refresh allowed
    path.write_text(json.dumps(jwks(k2)))
    clock.now += 3600
    assert (await cache.get(source, "k1")) is None  # TTL expired: reloaded, k1 gone


async def test_jwks_cache_keeps_old_keys_when_refresh_fails(tmp_path: Path) -> None:
    k1 = new_key("ES384", "k1")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(k1)))
    clock = Clock()
    cache = JwksCache(ttl=100, min_refresh=10, timeout=1, clock=clock)
    assert await cache.get(f"file:{path}", "k1") is not None
    path.write_text("<html>down</html>")
    clock.now += 200
    assert await cache.get(f"file:{path}", "k1") is not None
    with pytest.raises(KeySetUnavailable):
        await cache.get(f"file:{tmp_path}/missing.json", "k1")


async def test_jwks_fetch_has_a_timeout() -> None:
    """A key server that accepts the connection and never answers cannot hang a request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    cache = JwksCache(ttl=100, min_refresh=10, timeout=0.3)
    await cache.start()
    try:
        with pytest.raises(KeySetUnavailable):
            await cache.get(f"http://127.0.0.1:{port}/jwks.json", "k1")
    finally:
        listener.close()
        await cache.close()


def test_parse_jwks_skips_symmetric_private_and_foreign_keys() -> None:
    good = new_key("RS384", "rs")
    private = dict(good.public_jwk(), kid="with-d", d="AAAA")
    data = {
        "keys": [
            good.public_jwk(),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            dict(good.public_jwk(), kid="enc", use="enc"),
            {"kid": "broken", "kty": "EC", "crv": "P-384"},
            private,
        ]
    }
    keys = parse_jwks(data)
    assert sorted(keys) == ["rs", "with-d"]  # the private member is stripped, the key kept public
    with pytest.raises(ValueError):
        parse_jwks({"not": "a set"})


# ------------------------------------------------------------------------------- replay and skew


async def test_memory_replay_cache() -> None:
    clock = Clock()
    cache = MemoryReplayCache(max_entries=1000, clock=clock)
    assert await cache.first_use("iss", "j1", 60)
    assert not await cache.first_use("iss", "j1", 60)
    assert await cache.first_use("other-iss", "j1", 60)  # jti is per issuer
    clock.now += 61
    assert await cache.first_use("iss", "j1", 60)  # expired entries are forgotten
    for i in range(1000 - len(cache)):
        assert await cache.first_use("iss", f"fill-{i}", 600)
    with pytest.raises(ReplayCacheUnavailable):
        await cache.first_use("iss", "one-too-many", 600)  # full: refuse, never forget a live jti


async def test_clock_skew_edges(tmp_path: Path) -> None:
    key = new_key("ES384", "k")
    issuer = IssuerConfig(iss="https://i.example.org", jwks_file=jwks_file(key))
    clock = Clock()
    cache = JwksCache(ttl=100, min_refresh=10, timeout=1)
    verifier = TokenVerifier(
        {issuer.iss: issuer},
        cache,
        MemoryReplayCache(1000),
        algorithms=("ES384",),
        skew=60,
        max_age=3600,
        clock=clock,
    )
    aud = "https://cds.example.org/cds-services"
    now = int(clock.now)

    async def outcome(**claims: Any) -> str:
        body = claims_for(issuer.iss, aud)
        body.update(claims)
        try:
            client = await verifier.verify(mint(key, body), aud)
        except AuthFailure as failure:
            return failure.reason.value
        assert client.iss == issuer.iss
        return "ok"

    assert await outcome(iat=now - 400, exp=now - 30) == "ok"  # expired 30 s ago: within skew
    assert await outcome(iat=now - 400, exp=now - 61) == "expired"
    assert await outcome(iat=now + 59, exp=now + 300) == "ok"
    assert await outcome(iat=now + 61, exp=now + 300) == "iat_in_future"
    assert await outcome(iat=now - 3659, exp=now + 300) == "ok"
    assert await outcome(iat=now - 3661, exp=now + 300) == "too_old"
    assert await outcome(iat=now, exp=now + 300, nbf=now + 61) == "not_yet_valid"
    assert await outcome(iat=now, exp=now + 300, nbf="soon") == "malformed_token"
    assert await outcome(iat=True, exp=now + 300) == "missing_iat"


# ---------------------------------------------------------------------------------- observability


def test_failure_counter() -> None:
    before = failure_count(Reason.BAD_TENANT)
    assert count_failure(Reason.BAD_TENANT) == before + 1


def test_structured_fields_are_redacted() -> None:
    jwt_like = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    fields = {"a": f"Bearer {jwt_like}", "nested": [{"t": jwt_like}], "n": 3}
    assert jwt_like not in json.dumps(redact_value(fields))
    record = logging.LogRecord("cds.x", logging.INFO, __file__, 1, "m", None, None)
    record.fields = fields
    assert jwt_like not in JsonFormatter().format(record)


def test_redaction_fast_path_is_exact() -> None:
    """``redact`` skips its substitutions when no pattern's required text is present (issue 15):
    for texts with and without each needle, in any case, it answers what the five substitutions
    alone answer."""
    import random

    from cds_service.ops import observability
    from cds_service.ops.observability import redact

    def slow(text: str) -> str:
        for pattern, repl in observability._SECRETS:
            text = pattern.sub(repl, text)
        return text

    rng = random.Random(15)  # noqa: S311  # test data, not secrets
    pieces = ["Bearer abc.def", "BEARER x", "eyJabcdefgh.ijklmnop.qrs", "EYJ", "access_token=s3cr3t",
              '"ACCESS_TOKEN": "v"', "[parameters: (1, 2)]", "Failing row contains (a, b)",
              "Key (id)=(7) already exists", "plain words", "", "é€", "keyed (", "bear er"]
    for _ in range(2000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
        assert redact(text) == slow(text), text


def test_debug_level_is_for_our_loggers_only() -> None:
    configure_logging("debug")
    try:
        assert logging.getLogger("cds.trust").isEnabledFor(logging.DEBUG)
        for chatty in ("aiosqlite", "sqlalchemy.engine", "httpcore", "redis"):
            assert not logging.getLogger(chatty).isEnabledFor(logging.DEBUG)
    finally:
        configure_logging("info")
