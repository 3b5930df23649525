"""Override memory on the topic's side (issue 17 section 3): which cards to hold back because the
clinician already answered them for this patient.

Storage finds the patient's remembered answers (feedback ``overridden`` within the configured
period; ``accepted`` up to a cap) and hands them in as :class:`~cds_service.registry.Snooze`; the
topic decides here, per card, whether one still holds:

* ``overridden``: while the card would be issued on the same inputs. The fingerprint covers the
  rule, card kind, indicator, the "based on" facts (reference and date) and the values the card
  shows; a new result, diagnosis or prescription changes it and the card comes back.
* ``accepted``: while the suggested order is open. It ends when a result for a suggested concept
  arrives after the card was issued, or such an order is completed, cancelled or revoked (or when
  the inputs change, as above).

A critical card is never held back, whatever storage returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta

from cds_service.clinical.record_model import PatientRecord
from cds_service.clinical.rules.base import Hit
from cds_service.registry import Snooze

# An order cancelled this long before the card was issued still counts as the accepted one
# (EHR and service clocks differ; the order is created when the suggestion is accepted).
CLOCK_SLACK = timedelta(hours=1)


def fingerprint(hit: Hit) -> str:
    """A stable digest of what the card was issued on (not of its wording)."""
    basis = sorted((b.ref, b.when.isoformat() if b.when else "", b.text) for b in hit.basis)
    doc = {"r": hit.rule, "c": hit.card, "i": hit.indicator, "b": basis, "v": sorted(hit.values.items())}
    return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()[:32]


def suggested_concepts(hit: Hit) -> tuple[str, ...]:
    return tuple(sorted({s.concept for s in hit.suggest}))


class Memory:
    """The patient's remembered answers, asked once per card."""

    def __init__(self, snoozes: Sequence[Snooze], rec: PatientRecord) -> None:
        self.snoozes = list(snoozes)
        self.rec = rec

    def holds(self, hit: Hit) -> Snooze | None:
        """The remembered answer that holds this card back, if any (never for a critical card)."""
        if hit.indicator == "critical" or not self.snoozes:
            return None
        fp = fingerprint(hit)
        for s in self.snoozes:
            if s.rule_id != hit.rule or s.fingerprint != fp or self.rec.now >= s.until:
                continue
            if s.outcome == "overridden" or (s.outcome == "accepted" and not self._resolved(s)):
                return s
        return None

    def _resolved(self, s: Snooze) -> bool:
        """The accepted order has been resulted, completed, cancelled or revoked since the card."""
        wanted = set(s.concepts)
        if not wanted:
            return False
        since = s.issued_at - CLOCK_SLACK
        for concept in wanted:
            if any(r.when is not None and r.when >= since for r in self.rec.results(concept)):
                return True
        closed = [o for o in self.rec.done_orders(*wanted)] + [
            o for o in self.rec.withdrawn if o.concepts & wanted
        ]
        return any(o.when is not None and o.when >= since for o in closed)
