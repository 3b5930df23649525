"""Type-safe reads of untrusted JSON (prefetch, FHIR search results, draft orders).

The service keeps EHR data as raw JSON on purpose (real clients send DSTU2/STU3 shapes and invalid
FHIR), so every reader meets values of the wrong type: a number where an array belongs, a string
where an object belongs, a list as a ``status``. A plain ``x.get("coding") or ()`` then raises, and a
raise inside a hook call is a 500 for the whole response. These helpers turn any such value into
"nothing usable here", and read a lone object where FHIR R4 wants an array as a one-element array
(STU3 ``Observation.interpretation``, sloppy ``note``, ``performer``), which is what it means.
"""

from __future__ import annotations

from typing import Any


def items(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (other members skipped); a lone object as ``[object]``; else ``[]``."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def obj(value: Any) -> dict[str, Any]:
    """The value when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def string(value: Any) -> str | None:
    """The value when it is a string, else None (so it can be compared with sets of codes)."""
    return value if isinstance(value, str) else None
