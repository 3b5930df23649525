"""Why client authentication failed, as a closed set of reasons and a Prometheus counter.

The reason goes to the log and to ``cds_auth_failures_total{reason=...}`` (in the default
prometheus_client registry, so any ``/metrics`` endpoint built on it exports it); the client only
ever sees "Unauthorized". A closed set keeps the label cardinality bounded: nothing a caller sends
can create a new time series.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import REGISTRY, Counter


class Reason(StrEnum):
    NO_TOKEN = "no_token"  # noqa: S105 - a reason label, not a secret
    NOT_BEARER = "not_bearer"
    DUPLICATE_AUTHORIZATION = "duplicate_authorization"
    MALFORMED = "malformed_token"
    TOO_LARGE = "token_too_large"
    ALG_NONE = "alg_none"
    ALG_HMAC = "alg_hmac"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    BAD_TYP = "typ_not_jwt"
    NO_KID = "missing_kid"
    NO_ISS = "missing_iss"
    UNTRUSTED_ISSUER = "untrusted_issuer"
    JKU_NOT_ALLOWED = "jku_not_allowed"
    JKU_REQUIRED = "jku_required"
    UNKNOWN_KID = "unknown_kid"
    KEY_ALG_MISMATCH = "key_alg_mismatch"
    BAD_SIGNATURE = "bad_signature"
    WRONG_AUD = "wrong_aud"
    NO_EXP = "missing_exp"
    EXPIRED = "expired"
    NO_IAT = "missing_iat"
    IAT_FUTURE = "iat_in_future"
    TOO_OLD = "too_old"
    NO_NBF = "missing_nbf"
    NOT_YET_VALID = "not_yet_valid"
    NO_JTI = "missing_jti"
    REPLAY = "replayed_jti"
    BEFORE_REPLAY_EPOCH = "issued_before_replay_epoch"  # Redis lost its memory after this token's iat
    BAD_TENANT = "tenant_not_allowed"
    KEYS_UNAVAILABLE = "keys_unavailable"
    REPLAY_CACHE_UNAVAILABLE = "replay_cache_unavailable"


AUTH_FAILURES = Counter(
    "cds_auth_failures",
    "CDS client calls refused by client-JWT verification, by reason",
    ["reason"],
)
AUTH_SUCCESSES = Counter("cds_auth_successes", "CDS client calls with a verified client JWT")


def count_failure(reason: Reason) -> float:
    """Count one refusal; returns the running total for that reason in this process (for the log)."""
    child = AUTH_FAILURES.labels(reason=reason.value)
    child.inc()
    return failure_count(reason)


def failure_count(reason: Reason) -> float:
    value = REGISTRY.get_sample_value("cds_auth_failures_total", {"reason": reason.value})
    return value or 0.0
