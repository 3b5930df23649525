"""Prefetch template rendering, exactly as CDS Hooks 2.0 defines the tokens.

Only ``{{context.<field>}}`` for root-level primitive context fields and the four user tokens
(``userPractitionerId``, ``userPractitionerRoleId``, ``userPatientId``, ``userRelatedPersonId``,
derived from ``context.userId``) are 2.0 tokens. FHIRPath and ``{{today()}}`` are 3.0-ballot and are
refused at registration time, so a 2.0 EHR can always satisfy our templates. A template with a
token the request cannot resolve renders to ``None``: the key is skipped, never sent with a
literal ``{{...}}``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
_CONTEXT_FIELD = re.compile(r"^context\.([A-Za-z][A-Za-z0-9_]*)$")


def check_template(template: str) -> None:
    """Refuse a template that uses anything but 2.0 tokens (raises ValueError at start-up)."""
    for token in TOKEN.findall(template):
        if token in USER_TOKENS or _CONTEXT_FIELD.match(token):
            continue
        raise ValueError(f"prefetch token {{{{{token}}}}} is not a CDS Hooks 2.0 token")
    if "{{" in TOKEN.sub("", template) or "}}" in TOKEN.sub("", template):
        raise ValueError(f"unbalanced prefetch token in {template!r}")


def token_values(context: dict[str, Any]) -> dict[str, str]:
    """Values for every token this context can resolve."""
    values: dict[str, str] = {}
    for name, value in context.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            continue  # only root-level primitives are tokenizable; bools are not ids
        values[f"context.{name}"] = str(value)
    user = context.get("userId")
    if isinstance(user, str) and "/" in user:
        rtype, _, rid = user.partition("/")
        for token, wanted in USER_TOKENS.items():
            if rtype == wanted and rid:
                values[token] = rid
    return values


def render(template: str, values: dict[str, str]) -> str | None:
    """Substitute tokens (URL-encoded); ``None`` when any token cannot be resolved."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(m.group(1).strip())
        if value is None or value == "":
            missing = True
            return ""
        return quote(value, safe="/")  # keep Type/id references (context.userId) usable in paths

    out = TOKEN.sub(sub, template)
    return None if missing else out


def render_for_fetch(template: str, values: dict[str, str]) -> str | None:
    """The template as a URL to GET: like ``render``, but every query value is percent-encoded
    (RFC 3986: all but the unreserved characters), the path left as it is.

    A FHIR token search such as ``code=http://loinc.org|3016-3`` is legal unencoded, but proxies and
    gateways rewrite URLs: the SMART App Launcher's FHIR proxy collapses every ``//`` in the URL it
    forwards, so the search reached the FHIR server as ``http:/loinc.org|...``, matched nothing and
    came back empty with 200 (wrong cards, no error). Encoded, nothing is left for them to rewrite.
    Names keep ``:`` (modifiers such as ``code:in``); the FHIR server decodes values before it
    splits them on ``,`` (OR lists) and ``|`` (system|code), so their meaning is unchanged.
    """
    path, sep, query = template.partition("?")
    rendered_path = render(path, values)
    if rendered_path is None:
        return None
    if not sep:
        return rendered_path
    params: list[str] = []
    for part in query.split("&"):
        if not part:
            continue
        raw_name, eq, raw_value = part.partition("=")
        name, value = _substitute(raw_name, values), _substitute(raw_value, values)
        if name is None or value is None:
            return None
        params.append(f"{quote(name, safe=':')}{eq}{quote(value, safe='')}")
    return rendered_path + "?" + "&".join(params)


def _substitute(text: str, values: dict[str, str]) -> str | None:
    """``text`` with its tokens replaced by their raw (unencoded) values; None when one is missing."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(m.group(1).strip())
        if not value:
            missing = True
            return ""
        return value

    out = TOKEN.sub(sub, text)
    return None if missing else out
