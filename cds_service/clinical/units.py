"""Unit normalisation for the lab values the rules compare against thresholds.

Each lab concept has one canonical unit (the one its thresholds are written in). A value in a
unit we cannot convert is kept but gets no numeric value, so a rule falls back to the lab's own
interpretation flag rather than comparing apples with oranges. Factors are the standard ones
listed in the clinical specification (section 4).
"""

from __future__ import annotations

from collections.abc import Callable

Convert = Callable[[float], float]


def _same(v: float) -> float:
    return v


def _unit_key(unit: str) -> str:
    return unit.replace(" ", "").replace("µ", "u").replace("μ", "u").lower()


# concept -> (canonical unit, {accepted unit spelling (lower-case, no spaces): converter})
CANONICAL: dict[str, tuple[str, dict[str, Convert]]] = {
    "ck": ("U/L", {"u/l": _same, "iu/l": _same, "[iu]/l": _same, "ukat/l": lambda v: v * 60}),
    "tsh": (
        "m[IU]/L",
        {"m[iu]/l": _same, "miu/l": _same, "uiu/ml": _same, "u[iu]/ml": _same, "mu/l": _same, "uu/ml": _same},
    ),
    "vitamin_b12": ("pg/mL", {"pg/ml": _same, "ng/l": _same, "pmol/l": lambda v: v / 0.738}),
    "hba1c": ("%", {"%": _same, "mmol/mol": lambda v: 0.0915 * v + 2.15}),
    "fasting_glucose": ("mg/dL", {"mg/dl": _same, "mmol/l": lambda v: v * 18.016}),
    "magnesium_serum": (
        "mg/dL",
        {"mg/dl": _same, "mmol/l": lambda v: v * 2.431, "meq/l": lambda v: v * 1.2155},
    ),
    "calcium": ("mg/dL", {"mg/dl": _same, "mmol/l": lambda v: v * 4.008}),
    "potassium": ("mmol/L", {"mmol/l": _same, "meq/l": _same}),
    "ferritin": ("ng/mL", {"ng/ml": _same, "ug/l": _same}),
    "crp": ("mg/L", {"mg/l": _same, "mg/dl": lambda v: v * 10}),
    "folate": ("ng/mL", {"ng/ml": _same, "ug/l": _same, "nmol/l": lambda v: v / 2.265}),
    "gad7_total": ("{score}", {"{score}": _same, "": _same, "1": _same, "{#}": _same}),
    "phq9_total": ("{score}", {"{score}": _same, "": _same, "1": _same, "{#}": _same}),
    "abi_result": ("{ratio}", {"{ratio}": _same, "": _same, "1": _same, "ratio": _same}),
}


def normalise(concept: str, value: float, unit: str | None) -> tuple[float | None, str | None]:
    """(value in the canonical unit, canonical unit), or (None, None) if the unit is unknown."""
    spec = CANONICAL.get(concept)
    if spec is None:
        return value, unit
    canonical, table = spec
    conv = table.get(_unit_key(unit or ""))
    if conv is None:
        return None, None
    return round(conv(value), 4), canonical


def normalise_range(concept: str, value: float | None, unit: str | None) -> float | None:
    if value is None:
        return None
    out, _ = normalise(concept, value, unit)
    return out
