"""Play the EHR: the prefetch a FHIR server would produce for the service's discovery templates.

Each search template is answered from one patient's resources with the filters the service's
templates use (resource type, ``code``, ``status``, ``category``, ``_sort=-date``); a read template
gets the resource. With ``page_size`` a search holding more matches is cut to its first page with a
``next`` link and ``total``, as an EHR sends when it does not page through itself: that is how the
report measures what happens on incomplete data (the link points at a server the offline run does
not give, so it cannot be followed).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from cds_service.data.prefetch import PrefetchSpec

# Where the cut-off searches' next links point; never contacted (the request carries no fhirServer).
UNREACHABLE_FHIR = "https://ehr.invalid/fhir"


def _codes(cc: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(cc, dict):
        for c in cc.get("coding") or ():
            if isinstance(c, dict):
                out.add(f"{c.get('system')}|{c.get('code')}")
    return out


def _date(res: dict[str, Any]) -> str:
    for name in ("effectiveDateTime", "issued", "authoredOn", "performedDateTime", "recordedDate", "date"):
        v = res.get(name)
        if isinstance(v, str):
            return v
    for name in ("effectivePeriod", "performedPeriod"):
        v = res.get(name)
        if isinstance(v, dict) and isinstance(v.get("start"), str):
            return str(v["start"])
    return ""


def matches(res: dict[str, Any], rtype: str, params: dict[str, list[str]]) -> bool:
    """Would a FHIR server return ``res`` for this search (one patient's data already)?"""
    if res.get("resourceType") != rtype:
        return False
    if "code" in params and not _codes(res.get("code")) & set(params["code"][0].split(",")):
        return False
    if "status" in params and res.get("status") not in params["status"][0].split(","):
        return False
    if "category" in params:
        wanted = set(params["category"][0].split(","))
        cats = res.get("category")
        found = {
            c.get("code")
            for cc in (cats if isinstance(cats, list) else [cats])
            if isinstance(cc, dict)
            for c in cc.get("coding") or ()
            if isinstance(c, dict)
        }
        if not found & wanted:
            return False
    return True


def searchset(found: list[dict[str, Any]], query: str, page_size: int | None) -> dict[str, Any]:
    page = found if page_size is None else found[:page_size]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r.get('id')}", "resource": r, "search": {"mode": "match"}}
            for r in page
        ],
    }
    if len(page) < len(found):
        bundle["link"] = [{"relation": "next", "url": f"{UNREACHABLE_FHIR}/{query}&_page=2"}]
    return bundle


def prefetch_for(
    resources: list[dict[str, Any]], specs: tuple[PrefetchSpec, ...], patient_id: str, page_size: int | None
) -> dict[str, Any]:
    """Every key of ``specs`` answered from ``resources`` (a read that finds nothing is left out,
    as the Sandbox does with a 404)."""
    out: dict[str, Any] = {}
    for spec in specs:
        template = spec.template.replace("{{context.patientId}}", patient_id)
        path, _, query = template.partition("?")
        if "/" in path:  # a read: Type/id
            rtype, _, rid = path.partition("/")
            hit = next((r for r in resources if r.get("resourceType") == rtype and r.get("id") == rid), None)
            if hit is not None:
                out[spec.key] = hit
            continue
        params = parse_qs(urlsplit("?" + query).query)
        found = [r for r in resources if matches(r, path, params)]
        if params.get("_sort") == ["-date"]:
            found.sort(key=_date, reverse=True)
        out[spec.key] = searchset(found, template, page_size)
    return out
