"""One function that checks a CDS Hooks response against every rule the spec puts on a service.

It works on the wire JSON (not our pydantic models) so the same check serves our own responses at
run time (setting ``CDS_VALIDATE_RESPONSES``), every response in the test suite, and the conformance
checker pointed at somebody else's service. Each problem names the rule it breaks (checklist section
or the 3.0 invariant key that restates the 2.0 text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

INDICATORS = frozenset({"info", "warning", "critical"})
SELECTION = frozenset({"at-most-one", "any"})
ACTION_TYPES = frozenset({"create", "update", "delete"})
LINK_TYPES = frozenset({"absolute", "smart"})
# Arrays the spec allows to be empty; every other empty value is forbidden (rule 1.3/1.4).
EMPTY_ALLOWED = frozenset({"cards", "services"})


class ResponseInvalid(ValueError):
    """Raised when our own response breaks the spec; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _empties(value: Any, path: str) -> Iterator[str]:
    """Yield paths holding null or an empty string/array/object (forbidden on the wire)."""
    if value is None:
        yield f"{path}: null is not allowed (1.3)"
    elif isinstance(value, dict):
        if not value:
            yield f"{path}: empty object is not allowed (1.4)"
        for k, v in value.items():
            child = f"{path}.{k}" if path else k
            if k in EMPTY_ALLOWED and v == []:
                continue
            yield from _empties(v, child)
    elif isinstance(value, list):
        if not value:
            yield f"{path}: empty array is not allowed (1.4)"
        for i, v in enumerate(value):
            yield from _empties(v, f"{path}[{i}]")
    elif isinstance(value, str) and value == "":
        yield f"{path}: empty string is not allowed (1.4)"


def _is_abs_url(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("https://") or value.startswith("http://"))


def _coding_problems(c: Any, path: str, need_display: bool) -> list[str]:
    if not isinstance(c, dict):
        return [f"{path}: Coding must be an object"]
    out = []
    for f in ("system", "code"):
        if not isinstance(c.get(f), str) or not c.get(f):
            out.append(f"{path}.{f}: required in a Coding")
    if need_display and not (isinstance(c.get("display"), str) and c["display"]):
        out.append(f"{path}.display: required on every override reason (cds-resp-4)")
    return out


def _action_problems(a: Any, path: str) -> list[str]:
    if not isinstance(a, dict):
        return [f"{path}: Action must be an object"]
    out = []
    if a.get("type") not in ACTION_TYPES:
        out.append(f"{path}.type: must be one of create, update, delete")
    if not (isinstance(a.get("description"), str) and a["description"]):
        out.append(f"{path}.description: required (cds-resp-5)")
    t = a.get("type")
    res = a.get("resource")
    if t in ("create", "update") and not (isinstance(res, dict) and isinstance(res.get("resourceType"), str)):
        out.append(f"{path}.resource: {t} needs a whole FHIR resource (6.1 Action)")
    if t == "delete":
        if not (isinstance(a.get("resourceId"), str) and "/" in a["resourceId"]):
            out.append(f"{path}.resourceId: delete needs a relative reference Type/id (cds-resp-2)")
        if res is not None:
            out.append(f"{path}.resource: delete must not carry a resource (cds-resp-2)")
    return out


def card_problems(card: Any, path: str = "card") -> list[str]:
    """Every spec problem of one card."""
    if not isinstance(card, dict):
        return [f"{path}: card must be an object"]
    out: list[str] = []
    summary = card.get("summary")
    if not isinstance(summary, str) or not summary:
        out.append(f"{path}.summary: required")
    elif len(summary) >= 140:
        out.append(f"{path}.summary: {len(summary)} characters, must be < 140 (6.1)")
    if card.get("indicator") not in INDICATORS:
        out.append(f"{path}.indicator: {card.get('indicator')!r} is not info|warning|critical")
    if "detail" in card and not isinstance(card["detail"], str):
        out.append(f"{path}.detail: must be a Markdown string")
    if "uuid" in card and not isinstance(card["uuid"], str):
        out.append(f"{path}.uuid: must be a string")
    src = card.get("source")
    if not isinstance(src, dict) or not (isinstance(src.get("label"), str) and src["label"]):
        out.append(f"{path}.source.label: required")
    else:
        for f in ("url", "icon"):
            if f in src and not _is_abs_url(src[f]):
                out.append(f"{path}.source.{f}: must be an absolute URL")
        if "topic" in src:
            out += _coding_problems(src["topic"], f"{path}.source.topic", need_display=False)
    sugg = card.get("suggestions")
    if sugg is not None:
        if not isinstance(sugg, list):
            out.append(f"{path}.suggestions: must be an array")
            sugg = []
        if card.get("selectionBehavior") not in SELECTION:
            out.append(f"{path}.selectionBehavior: required with suggestions, at-most-one|any (cds-resp-6)")
        recommended = 0
        for i, s in enumerate(sugg):
            sp = f"{path}.suggestions[{i}]"
            if not isinstance(s, dict):
                out.append(f"{sp}: must be an object")
                continue
            if not (isinstance(s.get("label"), str) and s["label"]):
                out.append(f"{sp}.label: required")
            if "isRecommended" in s and not isinstance(s["isRecommended"], bool):
                out.append(f"{sp}.isRecommended: must be boolean")
            recommended += s.get("isRecommended") is True
            for j, a in enumerate(s.get("actions") or []):
                out += _action_problems(a, f"{sp}.actions[{j}]")
        if card.get("selectionBehavior") == "at-most-one" and recommended > 1:
            out.append(f"{path}: {recommended} suggestions isRecommended with at-most-one (cds-resp-1)")
    elif "selectionBehavior" in card and card["selectionBehavior"] not in SELECTION:
        out.append(f"{path}.selectionBehavior: must be at-most-one|any")
    for i, r in enumerate(card.get("overrideReasons") or []):
        out += _coding_problems(r, f"{path}.overrideReasons[{i}]", need_display=True)
    for i, link in enumerate(card.get("links") or []):
        lp = f"{path}.links[{i}]"
        if not isinstance(link, dict):
            out.append(f"{lp}: must be an object")
            continue
        if not (isinstance(link.get("label"), str) and link["label"]):
            out.append(f"{lp}.label: required")
        if not _is_abs_url(link.get("url")):
            out.append(f"{lp}.url: required absolute URL")
        if link.get("type") not in LINK_TYPES:
            out.append(f"{lp}.type: must be absolute|smart")
        if "appContext" in link and link.get("type") != "smart":
            out.append(f"{lp}.appContext: only on smart links (cds-resp-3)")
        if "autolaunchable" in link and not isinstance(link["autolaunchable"], bool):
            out.append(f"{lp}.autolaunchable: must be boolean")
    return out


def response_problems(body: Any) -> list[str]:
    """Every spec problem of a service response ``{cards, systemActions?}``; empty list = conformant."""
    if not isinstance(body, dict):
        return ["response must be a JSON object"]
    out = list(_empties(body, ""))
    cards = body.get("cards")
    if not isinstance(cards, list):
        out.append("cards: required array (6)")
        cards = []
    uuids: list[str] = []
    for i, card in enumerate(cards):
        out += card_problems(card, f"cards[{i}]")
        if isinstance(card, dict):
            if isinstance(card.get("uuid"), str):
                uuids.append(card["uuid"])
            for s in card.get("suggestions") or []:
                if isinstance(s, dict) and isinstance(s.get("uuid"), str):
                    uuids.append(s["uuid"])
    if len(uuids) != len(set(uuids)):
        out.append("uuids of cards and suggestions must be unique within a response")
    sa = body.get("systemActions")
    if sa is not None:
        if not isinstance(sa, list):
            out.append("systemActions: must be an array")
        else:
            for i, a in enumerate(sa):
                out += _action_problems(a, f"systemActions[{i}]")
    extra = set(body) - {"cards", "systemActions", "extension"}
    if extra:
        out.append(f"unknown top-level members {sorted(extra)}")
    return out


def discovery_problems(body: Any) -> list[str]:
    """Every spec problem of a discovery document."""
    if not isinstance(body, dict) or not isinstance(body.get("services"), list):
        return ["discovery must be an object with a services array (2.2)"]
    out = list(_empties(body, ""))
    seen: set[tuple[str, str]] = set()
    for i, s in enumerate(body["services"]):
        p = f"services[{i}]"
        if not isinstance(s, dict):
            out.append(f"{p}: must be an object")
            continue
        for f in ("hook", "description", "id"):
            if not (isinstance(s.get(f), str) and s[f]):
                out.append(f"{p}.{f}: required")
        key = (str(s.get("id")), str(s.get("hook")))
        if key in seen:
            out.append(f"{p}: duplicate (id, hook) {key}")
        seen.add(key)
        pre = s.get("prefetch")
        if pre is not None:
            if not isinstance(pre, dict):
                out.append(f"{p}.prefetch: must be an object")
            else:
                for k, v in pre.items():
                    if not isinstance(v, str):
                        out.append(f"{p}.prefetch.{k}: template must be a string")
    return out


def assert_valid_response(body: Any) -> None:
    """Raise ``ResponseInvalid`` listing every problem; used at run time and by the tests."""
    problems = response_problems(body)
    if problems:
        raise ResponseInvalid(problems)


# --------------------------------------------------------------------------- per-rule view
# The conformance checker (cds_tools/ehr/conformance.py) reports pass/fail per checklist rule;
# these helpers map every problem text above to its rule, so the rules live in one place only.

_TAGGED = re.compile(r"\((cds-resp-\d|1\.3|1\.4)\)$")
_RULE_BY_PATH: tuple[tuple[str, str], ...] = (
    ("uuids", "6.1-card"),
    (".uuid", "6.1-card"),
    (".detail", "6.1-card"),
    (".summary", "6.1-summary"),
    (".indicator", "6.1-indicator"),
    (".source", "6.1-source"),
    ("overrideReasons[", "6.1-overrideReasons"),
    (".links[", "6.1-links"),
    ("actions[", "6.1-action"),
    ("suggestions", "6.1-suggestions"),
    ("selectionBehavior", "6.1-suggestions"),
)


def rule_of(problem: str) -> str:
    """The checklist rule a problem from ``response_problems``/``discovery_problems`` breaks:
    ``1.3/1.4``, ``cds-resp-N``, ``2.2`` (discovery), ``6.1-<part>`` (card fields) or ``6``
    (the response as a whole)."""
    tagged = _TAGGED.search(problem)
    if tagged:
        return "1.3/1.4" if tagged.group(1) in ("1.3", "1.4") else tagged.group(1)
    if problem.startswith(("services", "discovery")):
        return "2.2"
    head = problem.split(":", 1)[0]
    for marker, rule in _RULE_BY_PATH:
        if marker in head:
            return rule
    return "6"


def card_recommendations(card: Any, path: str = "card") -> list[str]:
    """What a card lacks that is recommended rather than required: a ``uuid`` on the card and on
    each suggestion. Without them a client cannot send feedback (spec L880) and the Sandbox shows
    no Dismiss button, so a conformant card can still be useless for feedback."""
    if not isinstance(card, dict):
        return []
    out = []
    if not (isinstance(card.get("uuid"), str) and card["uuid"]):
        out.append(f"{path}.uuid: missing; needed for feedback (6.1 rec.)")
    for i, s in enumerate(card.get("suggestions") or []):
        if isinstance(s, dict) and not (isinstance(s.get("uuid"), str) and s["uuid"]):
            out.append(f"{path}.suggestions[{i}].uuid: missing; needed for accepted feedback (6.1 rec.)")
    return out
