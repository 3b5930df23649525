"""FHIR reads of the app: the service's own prefetch queries, run with the SMART access token.

The queries are the prefetch templates of the patient-view service (so the page and the cards
see the same data), rendered for the launch patient and sent in parallel. Every query value is
percent-encoded: real proxies rewrite URLs (the SMART App Launcher collapses ``//`` anywhere in
the URL, turning ``code=http://loinc.org|...`` into a search that silently matches nothing), and
an encoded ``%2F%2F`` survives them. ``next`` links are re-encoded the same way and followed only
on the FHIR server's own origin. The token goes only in the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from cds_service.data.prefetch import PrefetchSpec
from cds_service.data.templates import render, token_values

ACCEPT = "application/fhir+json, application/json;q=0.9"
PAGE_CAP = 10


class TokenRejected(Exception):
    """The FHIR server refused the access token (401/403): the session is over."""


def encode_url(url: str) -> str:
    """``url`` with every query name and value percent-encoded (``/``, ``:``, ``|`` and ``,`` too)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode(pairs, quote_via=quote, safe="")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _next(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


async def _read(client: httpx.AsyncClient, url: str, token: str, home: str) -> dict[str, Any] | None:
    """One query and its next pages, merged into one searchset Bundle (a read returns the resource).
    None when the server answered with an error (the key is then reported as missing)."""
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    merged: dict[str, Any] | None = None
    next_url: str | None = encode_url(url)
    pages = 0
    while next_url is not None and pages < PAGE_CAP:
        if urlsplit(next_url).netloc != home:
            break
        try:
            resp = await client.get(next_url, headers=headers)
        except httpx.HTTPError:
            return merged
        if resp.status_code in (401, 403):
            raise TokenRejected
        if resp.status_code != 200:
            return merged
        try:
            body = resp.json()
        except ValueError:
            return merged
        if not isinstance(body, dict) or body.get("resourceType") == "OperationOutcome":
            return merged
        if body.get("resourceType") != "Bundle":
            return body
        if merged is None:
            merged = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        merged["entry"] += [e for e in body.get("entry") or () if isinstance(e, dict)]
        pages += 1
        nxt = _next(body)
        next_url = encode_url(nxt) if nxt else None
    return merged


async def read_patient_data(
    client: httpx.AsyncClient, iss: str, token: str, patient_id: str, specs: tuple[PrefetchSpec, ...]
) -> dict[str, Any]:
    """Prefetch-shaped data for ``patient_id``: key -> resource or Bundle. Keys the server could not
    answer are left out, so the pipeline reports them as missing (a required one stops the page)."""
    values = token_values({"patientId": patient_id})
    home = urlsplit(iss).netloc
    keys: list[str] = []
    reads = []
    for spec in specs:
        rendered = render(spec.template, values)
        if rendered is None:
            continue
        keys.append(spec.key)
        reads.append(_read(client, iss.rstrip("/") + "/" + rendered.lstrip("/"), token, home))
    results = await asyncio.gather(*reads, return_exceptions=True)
    for result in results:
        if isinstance(result, TokenRejected):
            raise TokenRejected
        if isinstance(result, BaseException):
            raise result
    return {k: r for k, r in zip(keys, results, strict=True) if isinstance(r, dict)}
