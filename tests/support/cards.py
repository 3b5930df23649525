"""Compare two CDS responses card for card: everything but what differs between any two calls."""

from __future__ import annotations

from typing import Any

PER_CALL = frozenset({"uuid", "authoredOn"})  # fresh ids; suggested orders are authored "now"


def comparable(value: Any) -> Any:
    """The response without its per-call members (``uuid`` of cards and suggestions,
    ``authoredOn`` of suggested resources), at any depth; everything else must be identical."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in PER_CALL}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value
