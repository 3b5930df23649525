"""The clinical rules, in an explicit evaluation order.

Order matters: some rules read the hits of rules evaluated before them (R04 checks R02/R03, R06
checks R01, R13 checks R05g, R20 checks nearly everything). The order is therefore stated here,
not left to module import order, and a missing or unknown rule id fails at import.
"""

from cds_service.clinical.rules import management, orders, redflags, safety, workup  # noqa: F401  (registers the rules)
from cds_service.clinical.rules.base import RULES, Hit, Rule, RuleContext

EVALUATION_ORDER = (
    "R01", "R02", "R02b", "R03",  # critical pathways first
    "R04", "R05a", "R05b", "R05c", "R05d", "R05e", "R05f", "R05g", "R05h", "R05i", "R07", "R19",  # labs
    "R21", "R22",  # abnormal EMG report, child: read by R11 and R20
    "R06", "R08", "R11", "R12", "R13", "R14", "R17", "R18",  # management
    "R09", "R10", "R15a", "R15b", "R16",  # order checks
    "R20",  # reassurance last: it depends on every other outcome
)  # fmt: skip

_registered = {r.id for r in RULES}
if _registered != set(EVALUATION_ORDER) or len(RULES) != len(EVALUATION_ORDER):
    raise RuntimeError(
        f"rule registry and EVALUATION_ORDER disagree: {sorted(_registered ^ set(EVALUATION_ORDER))}"
    )
RULES.sort(key=lambda r: EVALUATION_ORDER.index(r.id))

__all__ = ["EVALUATION_ORDER", "RULES", "Hit", "Rule", "RuleContext"]
