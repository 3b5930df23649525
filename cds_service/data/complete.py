"""Is a prefetched search complete? Helpers the prefetch engine uses to never treat a cut-off
search as the whole record (issue 17, section 1).

A searchset Bundle is incomplete when it carries a ``next`` link (the engine follows it from
``fhirServer``), and also when it has no ``next`` link but its ``total`` counts more matches than
it holds: some EHRs cut the prefetch to a size limit and drop the link. Such a Bundle is fetched
again in full from ``fhirServer`` when we may; otherwise the key is reported as partial, never as
whole.

Why it matters: the cheap first check (is there a fasciculation at all?) runs on the gathered
data. On a cut-off Condition search it sees page 1 only, and a patient whose fasciculation is on a
later page would get a silent "no cards" answer. A partial required key therefore never yields a
silent answer: the handler answers 412 when the partial data show no fasciculation, or cards that
name the missing data when they do (see ``GatheredData.incomplete_required``).
"""

from __future__ import annotations

from typing import Any

from cds_service.jsonshape import items


def matched_count(bundle: dict[str, Any]) -> int:
    """Entries that are search matches (``_include``/outcome entries are not counted by ``total``)."""
    n = 0
    for e in items(bundle.get("entry")):
        search = e.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        res = e.get("resource")
        if (
            mode in (None, "match")
            and isinstance(res, dict)
            and res.get("resourceType") != "OperationOutcome"
        ):
            n += 1
    return n


def cut_without_link(bundle: dict[str, Any]) -> str | None:
    """Why a searchset Bundle without a ``next`` link is nevertheless incomplete, or None.

    Only a searchset with an integer ``total`` larger than its matches is judged; a Bundle without
    ``total`` cannot be judged and is taken as given (the spec makes ``total`` optional).
    """
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
        return None
    total = bundle.get("total")
    if isinstance(total, bool) or not isinstance(total, int):
        return None
    held = matched_count(bundle)
    if total > held:
        return f"prefetch holds {held} of {total} matches and no next link"
    return None


def merge_pages(first: list[dict[str, Any]], more: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``first`` then the resources of ``more`` not already in it (by type and id): a search
    fetched again in full repeats what the client had already sent."""
    if not first:
        return more
    seen = {(r.get("resourceType"), r.get("id")) for r in first if isinstance(r.get("id"), str)}
    return first + [r for r in more if (r.get("resourceType"), r.get("id")) not in seen]
