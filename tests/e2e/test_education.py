"""The patient education page (issue 19 section 3) through the real server process.

It must be reachable at a stable URL, linked from the reassurance and follow-up cards, readable at
a reading age of about 12 (Flesch-Kincaid grade computed here, independently of the page's code),
accessible (language, headings, landmarks, a labelled table), printable, self-contained and served
under a strict Content-Security-Policy; and it must say only what the seeds support.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterator

import httpx
import pytest

from cds_tools import fixtures
from tests.support.client import checked, hook_body, rule_of
from tests.support.servers import CdsServer, run_cds_server

pytestmark = pytest.mark.e2e

PATH = "/education/fasciculations"
SERVICE = "/cds-services/fasciculation-workup"
MAX_GRADE = 7.0  # US grade 7 is a reading age of about 12-13


@pytest.fixture(scope="module")
def server() -> Iterator[CdsServer]:
    with run_cds_server() as s:
        yield s


@pytest.fixture(scope="module")
def page(server: CdsServer) -> httpx.Response:
    return httpx.get(server.url(PATH))


def _syllables(word: str) -> int:
    """Vowel groups, minus a silent final e: the usual approximation of Flesch-Kincaid counters."""
    w = word.lower().strip("'")
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and n > 1:
        n -= 1
    return max(n, 1)


def flesch_kincaid_grade(text: str) -> float:
    sentences = [s for s in re.split(r"[.!?]+(?:\s|$)", text) if re.search(r"[A-Za-z]", s)]
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", text)
    syllables = sum(_syllables(w) for w in words)
    return 0.39 * len(words) / len(sentences) + 11.8 * syllables / len(words) - 15.59


def visible_main_text(doc: str) -> str:
    """The text a patient reads in <main>: comments and tags removed, every block (paragraph, list
    item, heading, table cell, caption) ended as a sentence so list items are not one long one."""
    main = re.search(r"<main\b.*?</main>", doc, re.S)
    assert main is not None
    text = re.sub(r"<!--.*?-->", " ", main.group(0), flags=re.S)
    text = re.sub(r"</(p|li|h[1-6]|th|td|caption)>", ". ", text)
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"_{3,}", " ", text)
    return html.unescape(re.sub(r"\s+", " ", text))


def test_readability_formula_is_sane() -> None:
    """The formula separates plain from dense text, so the bound below can fail."""
    plain = "The cat sat on the mat. It was a warm day. We went home."
    dense = (
        "Electrophysiological characterisation of fasciculation potentials necessitates comprehensive "
        "neuromuscular investigation incorporating quantitative electromyography."
    )
    assert flesch_kincaid_grade(plain) < 3 < 15 < flesch_kincaid_grade(dense)


def test_page_is_plain_language(page: httpx.Response) -> None:
    grade = flesch_kincaid_grade(visible_main_text(page.text))
    assert grade <= MAX_GRADE, f"Flesch-Kincaid grade {grade:.1f}"


def test_page_is_served_with_a_strict_policy(page: httpx.Response) -> None:
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    styles = re.findall(r"<style>(.*?)</style>", page.text, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp, "the inline style is allowed by its hash"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_page_is_self_contained_and_printable(page: httpx.Response) -> None:
    doc = page.text
    assert not re.search(r"<(script|img|link|iframe|object|embed|form)\b", doc, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", doc, re.I), "no external resources"
    assert "@media print" in doc
    assert not re.search(r"\bstyle\s*=", doc), "no inline style attributes (the CSP would block them)"


def test_page_is_accessible(page: httpx.Response) -> None:
    doc = page.text
    assert re.search(r'<html lang="en">', doc)
    assert "<title>" in doc and 'name="viewport"' in doc
    assert len(re.findall(r"<h1\b", doc)) == 1
    assert len(re.findall(r"<h2\b", doc)) >= 6
    for landmark in ("<header", "<main", "<footer", "<nav aria-label="):
        assert landmark in doc, landmark
    assert 'href="#main"' in doc and 'id="main"' in doc, "skip link"
    # In-page links all lead somewhere on the page.
    for target in re.findall(r'href="#([^"]+)"', doc):
        assert f'id="{target}"' in doc, target
    assert "<caption>" in doc and '<th scope="col">' in doc


def test_page_says_what_the_seeds_say(page: httpx.Response) -> None:
    text = visible_main_text(page.text)
    for phrase in (
        "Twitches are common",
        "Stress and worry",
        "Exercise",
        "93 to 98 out of every 100",
        "about half",
        "8 months to a few years",
        "only in a few single cases",
        "fear and stress can keep the twitches going",
        "Most people need no treatment",
        "little proof",
        "gets weak",
        "swallow",
        "how you speak",
        "all of a sudden",
        "EMG",
        "not done again",
        "Twitch diary",
    ):
        assert phrase in text, phrase
    # Advice the seeds do not give is either labelled or absent.
    assert "General advice (not from the sources this page is based on)" in text
    for absent in ("caffeine", "coffee", "sleep", "alcohol"):
        assert absent not in text.lower(), absent


def test_unknown_page_is_404_operation_outcome(server: CdsServer) -> None:
    r = httpx.get(server.url("/education/nope"))
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("fixture", "rules"),
    [("r20-reassurance", {"R20", "R14"}), ("sc1-hb-low", {"R14"}), ("r01-weakness", set())],
)
def test_cards_link_to_the_page(server: CdsServer, fixture: str, rules: set[str]) -> None:
    """The reassurance and follow-up cards link to the page with an absolute URL that resolves;
    other cards (flagged results, red flags) do not."""
    fx = fixtures.load(fixtures.ROOT / "patients" / f"{fixture}.json")
    discovery = checked(httpx.get(server.url("/cds-services")))
    svc = next(s for s in discovery["services"] if s["hook"] == "patient-view")
    body = hook_body(patient=fx.patient_id, prefetch=fixtures.prefetch_for(fx, svc["prefetch"]))
    cards = checked(httpx.post(server.url(SERVICE), json=body, timeout=30))["cards"]
    linking = {rule_of(c) for c in cards if any(link["url"].endswith(PATH) for link in c.get("links", []))}
    assert linking == rules
    if not rules:
        return
    url = next(link["url"] for c in cards for link in c.get("links", []) if link["url"].endswith(PATH))
    assert url == server.url(PATH) and httpx.get(url).status_code == 200
