"""Compare two CDS responses card for card: everything but the per-call ``uuid`` values."""

from __future__ import annotations

from typing import Any


def comparable(value: Any) -> Any:
    """The response with every ``uuid`` member removed, at any depth (cards and suggestions get
    fresh uuids on each call; everything else must be identical)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value
