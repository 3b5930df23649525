"""Cards, discovery and prefetch as plain text for a terminal.

The output must read well in a pipe or a CI log with no TTY, so colour is only an optional layer
(ANSI codes around the indicator and headings, never needed to understand the text). Cards are
numbered as ``ehr feedback`` expects them: card ``[2]``, suggestion ``2.1``. The detail is
Markdown and is printed as written (wrapped), not rendered.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from typing import Any, TextIO

from cds_tools.ehr.prefetch import Fetched

_COLOURS = {"critical": "\033[1;31m", "warning": "\033[1;33m", "info": "\033[1;36m", "dim": "\033[2m"}
_RESET = "\033[0m"
_ORDER = {"critical": 0, "warning": 1, "info": 2}
WIDTH = 100


def use_colour(choice: str, stream: TextIO = sys.stdout) -> bool:
    """``always``/``never``, or ``auto``: a TTY and no ``NO_COLOR`` (https://no-color.org)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return stream.isatty() and not os.environ.get("NO_COLOR")


class _Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, style: str) -> str:
        if not self.colour or style not in _COLOURS:
            return text
        return f"{_COLOURS[style]}{text}{_RESET}"


_BLOCK_START = re.compile(r"^\s*([-*+] |\d+[.)] |#|>|\||```)")


def _logical_lines(text: str) -> list[str]:
    """Markdown source lines joined into paragraphs (a soft line break is a space in Markdown);
    list items, headings, quotes, tables and blank lines keep their own lines."""
    out: list[str] = []
    joinable = False
    for line in text.splitlines():
        if not line.strip():
            out.append("")
            joinable = False
        elif joinable and not _BLOCK_START.match(line):
            out[-1] = f"{out[-1]} {line.strip()}"
        else:
            out.append(line.rstrip())
            joinable = not line.lstrip().startswith(("|", "```", "#"))
    return out


def _wrap(text: str, indent: str) -> list[str]:
    out: list[str] = []
    for line in _logical_lines(text) or [""]:
        if not line.strip():
            out.append("")
            continue
        lead = line[: len(line) - len(line.lstrip())]
        hang = "  " if _BLOCK_START.match(line) else ""  # list items hang under their text
        out += textwrap.wrap(
            line.strip(),
            WIDTH,
            initial_indent=indent + lead,
            subsequent_indent=indent + lead + hang,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [indent]
    return out


def _resource_text(resource: Any) -> str:
    if not isinstance(resource, dict):
        return ""
    code = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    coding = (code.get("coding") or [{}])[0] if isinstance(code, dict) else {}
    what = code.get("text") if isinstance(code, dict) else None
    label = what or coding.get("display") or ""
    system_code = f"{coding.get('system')}|{coding.get('code')}" if coding.get("code") else ""
    parts = [str(resource.get("resourceType", "?")), label, f"[{system_code}]" if system_code else ""]
    return " ".join(p for p in parts if p)


def format_card(card: dict[str, Any], number: int, colour: bool = False) -> str:
    paint = _Painter(colour)
    indicator = str(card.get("indicator", "?"))
    lines = [f"[{number}] {paint(indicator.upper(), indicator)}  {card.get('summary', '(no summary)')}"]
    pad = "    "
    source = card.get("source") or {}
    src = str(source.get("label", "?")) + (f" <{source['url']}>" if source.get("url") else "")
    lines.append(paint(f"{pad}source: {src}", "dim"))
    if card.get("uuid"):
        lines.append(paint(f"{pad}uuid: {card['uuid']}", "dim"))
    if card.get("detail"):
        lines.append("")
        lines += _wrap(str(card["detail"]), pad)
    suggestions = card.get("suggestions") or []
    if suggestions:
        lines += ["", f"{pad}suggestions ({card.get('selectionBehavior', 'no selectionBehavior')}):"]
        for j, s in enumerate(suggestions, 1):
            mark = " (recommended)" if s.get("isRecommended") else ""
            lines.append(f"{pad}  {number}.{j} {s.get('label', '?')}{mark}")
            for a in s.get("actions") or []:
                target = a.get("resourceId") or _resource_text(a.get("resource"))
                lines.append(paint(f"{pad}       {a.get('type', '?')}: {target}", "dim"))
    reasons = card.get("overrideReasons") or []
    if reasons:
        lines += ["", f"{pad}override reasons:"]
        lines += [f"{pad}  {r.get('code')}  {r.get('display', '')}".rstrip() for r in reasons]
    links = card.get("links") or []
    if links:
        lines += ["", f"{pad}links:"]
        for link in links:
            extra = f", appContext {link['appContext']}" if link.get("appContext") else ""
            lines.append(
                f"{pad}  {link.get('label', '?')} <{link.get('url', '?')}> ({link.get('type', '?')}{extra})"
            )
    return "\n".join(lines)


def format_response(body: dict[str, Any], colour: bool = False) -> str:
    """Every card, most urgent first (as the Sandbox orders them), numbered in response order so
    the numbers stay what ``ehr feedback --card N`` refers to."""
    cards = body.get("cards") or []
    if not cards:
        text = "No cards (the service has no guidance for this patient and hook)."
    else:
        numbered = sorted(
            enumerate(cards, 1), key=lambda nc: (_ORDER.get(str(nc[1].get("indicator")), 3), nc[0])
        )
        text = "\n\n".join(format_card(card, n, colour) for n, card in numbered)
    actions = body.get("systemActions") or []
    if actions:
        text += "\n\nsystem actions:\n" + "\n".join(
            f"    {a.get('type', '?')}: {a.get('description', '')} "
            f"{a.get('resourceId') or _resource_text(a.get('resource'))}".rstrip()
            for a in actions
        )
    return text


def format_discovery(body: dict[str, Any]) -> str:
    services = body.get("services") or []
    if not services:
        return "The server lists no CDS services."
    lines = []
    for s in services:
        lines.append(f"{s.get('id')}  hook={s.get('hook')}  {s.get('title', '')}".rstrip())
        lines += _wrap(str(s.get("description", "")), "    ")
        prefetch = s.get("prefetch") or {}
        for key, template in prefetch.items():
            short = template if len(template) <= 90 else template[:87] + "..."
            lines.append(f"    prefetch {key}: {short}")
        lines.append("")
    return "\n".join(lines).rstrip()


def format_prefetch(fetched: list[Fetched], sent: dict[str, Any] | None) -> str:
    """One line per template: what was read and what is sent (to stderr, beside the cards)."""
    lines = []
    for f in fetched:
        if sent is None:
            state = "not sent (no prefetch)"
        elif f.key not in sent:
            state = "omitted"
        elif sent[f.key] is None:
            state = "null"
        elif sent[f.key].get("resourceType") == "OperationOutcome":
            state = "OperationOutcome"
        else:
            value = sent[f.key]
            count = len(value.get("entry") or []) if value.get("resourceType") == "Bundle" else 1
            state = f"{value['resourceType']} ({count})"
        lines.append(f"prefetch {f.key:<16} {f.note:<16} -> {state}")
    return "\n".join(lines)
