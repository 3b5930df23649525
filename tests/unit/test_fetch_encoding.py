"""Prefetch templates rendered for fetching: every query value percent-encoded (RFC 3986), paths
untouched (issue 12). Unit tests on our real templates; the end-to-end proof through the SMART App
Launcher's ``//``-collapsing proxy is tests/test_smart_launcher.py."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from cds_service.clinical.services import prefetch_templates
from cds_service.clinical.terminology import terminology
from cds_service.data.templates import render, render_for_fetch, token_values

CONTEXT = {"patientId": "pt/1 x&y", "userId": "Practitioner/dr-1"}
UNRESERVED_OR_ESCAPE = re.compile(r"^(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*$")


def test_every_query_value_of_our_templates_is_percent_encoded() -> None:
    values = token_values(CONTEXT)
    for spec in prefetch_templates(terminology()):
        url = render_for_fetch(spec.template, values)
        assert url is not None, spec.key
        path, _, query = url.partition("?")
        assert "//" not in url, (spec.key, url)
        for part in query.split("&") if query else []:
            name, _, value = part.partition("=")
            assert UNRESERVED_OR_ESCAPE.match(value), (spec.key, value)
            assert re.match(r"^[A-Za-z_][A-Za-z0-9_:\-.]*$", name), name
        # same meaning: decoding the encoded query gives the parameters of the template itself
        params = [p.split("=", 1) for p in spec.template.partition("?")[2].split("&") if p]
        want = [(n, v.replace("{{context.patientId}}", CONTEXT["patientId"])) for n, v in params]
        assert parse_qsl(query, keep_blank_values=True) == want, spec.key
        assert path == (render(spec.template.partition("?")[0], values) or "")


def test_token_system_survives_a_proxy_that_collapses_double_slashes() -> None:
    url = render_for_fetch("Observation?patient={{context.patientId}}&code=http://loinc.org|3016-3", {"context.patientId": "p1"})
    assert url == "Observation?patient=p1&code=http%3A%2F%2Floinc.org%7C3016-3"
    collapsed = re.sub(r"/\s*/", "/", "http://h/fhir/" + (url or ""))  # the launcher proxy's rewrite
    assert urlsplit(collapsed).query == urlsplit("http://h/fhir/" + (url or "")).query


def test_paths_modifiers_and_unresolved_tokens() -> None:
    values = token_values(CONTEXT)
    assert render_for_fetch("Patient/{{context.patientId}}", values) == "Patient/pt/1%20x%26y"
    assert render_for_fetch("{{context.userId}}", values) == "Practitioner/dr-1"
    assert render_for_fetch("Practitioner/{{userPractitionerId}}", values) == "Practitioner/dr-1"
    assert render_for_fetch("Condition?code:in=http://vs.example/x&_count=5", values) == (
        "Condition?code:in=http%3A%2F%2Fvs.example%2Fx&_count=5"
    )
    assert render_for_fetch("Encounter?_id={{context.encounterId}}", values) is None
    assert render_for_fetch("Encounter/{{context.encounterId}}", values) is None
    assert render_for_fetch("Observation?patient={{context.patientId}}&status=final,amended", values) == (
        "Observation?patient=pt%2F1%20x%26y&status=final%2Camended"
    )
