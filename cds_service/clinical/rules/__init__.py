"""The clinical rules, in the order their declarations give.

Each rule states its rank on its ``@rule``; ``RULES`` is the topic's rule book in rank order, and
``BOOK.ordered()`` refuses at import a duplicate id or rank, or a suppression that names a rule
not evaluated earlier. Import order of the modules below does not matter.
"""

from cds_service.clinical.rules import findings, management, orders, redflags, safety, workup  # noqa: F401  (registers the rules)
from cds_service.clinical.rules.base import BOOK, Hit, Rule, RuleBook, RuleContext

RULES: list[Rule] = BOOK.ordered()

__all__ = ["BOOK", "RULES", "Hit", "Rule", "RuleBook", "RuleContext"]
