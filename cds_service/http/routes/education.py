"""``GET /education/{name}``: patient education pages a topic publishes (issue 19 section 3),
linked from its cards and, later, from the SMART app; the URL is stable.

Why a strict Content-Security-Policy: the page is handed to patients and may be opened inside an
EHR; it needs nothing but its own inline style, so everything else (scripts, images, fonts,
frames, forms, other origins) is refused, and the style is allowed by its hash, not by
``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

from cds_service.http.deps import BaseUrlDep, RuntimeDep
from cds_service.protocol.errors import NotFound

router = APIRouter(include_in_schema=False)
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


@lru_cache(maxsize=32)
def content_security_policy(html: str) -> str:
    """The policy for one page: only its own inline ``<style>`` blocks, by SHA-256 hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in _STYLE.findall(html)
    )
    return (
        f"default-src 'none'; style-src {hashes or chr(39) + 'none' + chr(39)}; img-src 'none'; "
        "script-src 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
    )


@router.get("/education/{name}")
async def education(rt: RuntimeDep, base: BaseUrlDep, name: str) -> Response:
    """A patient education page, self-contained HTML under a strict CSP."""
    page = rt.registry.education.get(name)
    if page is None:
        raise NotFound(f"No education page '{name}'")
    html = page(base)
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": content_security_policy(html),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "public, max-age=3600",
        },
    )
