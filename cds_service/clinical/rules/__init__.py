"""The clinical rules, registered in evaluation order (importing the modules registers them)."""

from cds_service.clinical.rules import management, redflags, workup  # noqa: F401  (registration)
from cds_service.clinical.rules.base import RULES, Hit, Rule, RuleContext

__all__ = ["RULES", "Hit", "Rule", "RuleContext"]
