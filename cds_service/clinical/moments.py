"""When in the clinician's work the topic speaks, and which hook brings each moment.

Rules declare the *moments* they serve (``@rule(..., moments=CHART)``), not hook names, so a new
hook that means "the chart is open" needs one line here and no change to any rule. The core knows
hooks (``protocol.models.Hook``); only this table relates them to the topic.
"""

from __future__ import annotations

from enum import StrEnum

from cds_service.protocol.models import Hook


class Moment(StrEnum):
    CHART = "chart"  # the chart is open: work-up, results, management
    SELECTING = "selecting"  # orders are being chosen
    SIGNING = "signing"  # orders are about to be signed


CHART = (Moment.CHART,)
ORDERING = (Moment.SELECTING, Moment.SIGNING)
ALWAYS = (Moment.CHART, Moment.SELECTING, Moment.SIGNING)

# The hooks the topic serves, in discovery order, and the moment each one is.
HOOK_MOMENTS: dict[Hook, Moment] = {
    Hook.PATIENT_VIEW: Moment.CHART,
    Hook.ORDER_SELECT: Moment.SELECTING,
    Hook.ORDER_SIGN: Moment.SIGNING,
}


def hooks_for(moments: tuple[Moment, ...], table: dict[Hook, Moment] = HOOK_MOMENTS) -> list[Hook]:
    """The hooks that bring any of these moments, in the table's order (for review pages)."""
    return [hook for hook, moment in table.items() if moment in moments]
