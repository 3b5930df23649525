"""The JWS algorithms a client JWT may use; kept free of imports so settings can check them too."""

from __future__ import annotations

from collections.abc import Iterable

# Asymmetric JWS algorithms we know how to verify. ``none`` and every HMAC algorithm are refused by
# the spec (a symmetric key would have to be shared, and a public key used as an HMAC secret is
# the classic algorithm-confusion attack), so they cannot even be configured.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)


def check_algorithms(algorithms: Iterable[str]) -> None:
    """Refuse ``none``, HMAC and unknown algorithms in any configuration (ValueError)."""
    chosen = list(algorithms)
    if not chosen:
        raise ValueError("at least one JWT algorithm must be allowed")
    bad = [a for a in chosen if a not in ASYMMETRIC_ALGORITHMS]
    if bad:
        raise ValueError(
            f"JWT algorithms {bad} are not allowed (only {sorted(ASYMMETRIC_ALGORITHMS)}; never none or HS*)"
        )
