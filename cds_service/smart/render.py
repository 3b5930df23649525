"""HTML and SVG of the app, rendered on the server.

No script at all, no external resource: the stylesheet is inline and allowed by its hash in the
Content-Security-Policy (header for the served page, ``<meta>`` for the offline file), SVG uses
presentation attributes only (no ``style=``), and every value from the EHR is escaped. Charts
carry ``<title>``/``<desc>`` and a data table; status is written in words, never colour alone.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from html import escape
from typing import Any

from cds_service.smart.view import ChecklistRow, EmgItem, PageModel, RedFlag, Trend

CSS = """
:root{--ink:#1b1b1b;--muted:#4a4a4a;--line:#c8c8c8;--crit:#8a1010;--warn:#6b4400;--ok:#14532d;--info:#1e3a8a}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0;background:#fff}
header.banner{background:#eef2f7;border-bottom:1px solid var(--line);padding:.8em 1.2em}
header.banner h1{font-size:1.3em;margin:0 0 .3em}
dl.patient{display:flex;flex-wrap:wrap;gap:.2em 1.6em;margin:0}
dl.patient div{display:flex;gap:.4em}
dl.patient dt{font-weight:600}
dl.patient dd{margin:0}
main{padding:0 1.2em 2em;max-width:70em}
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1em}
a{color:#0b3d91}
section{border-top:1px solid var(--line);margin-top:1.2em}
h2{font-size:1.15em;margin:.8em 0 .4em}
h3{font-size:1em;margin:.6em 0 .2em}
table{border-collapse:collapse;width:100%;margin:.3em 0}
th,td{border:1px solid var(--line);padding:.25em .45em;text-align:left;vertical-align:top}
th{background:#f3f4f6}
.none{font-weight:600}
.readonly{border:1px solid var(--line);background:#f8f8f8;padding:.5em .8em}
.status{font-weight:600}
.st-done{color:var(--ok)}.st-missing,.st-out-of-date{color:var(--crit)}.st-pending{color:var(--warn)}
.st-not-indicated{color:var(--muted)}
.card{border:1px solid var(--line);border-left-width:6px;padding:.4em .8em;margin:.5em 0}
.card.critical{border-left-color:var(--crit)}.card.warning{border-left-color:var(--warn)}.card.info{border-left-color:var(--info)}
.card .ind{font-weight:700;text-transform:uppercase;font-size:.85em}
.card p{margin:.3em 0}
.trends{display:grid;grid-template-columns:repeat(auto-fill,minmax(21em,1fr));gap:.8em}
figure{margin:0;border:1px solid var(--line);padding:.4em}
figcaption{font-weight:600}
svg{max-width:100%;height:auto}
.focus{outline:3px solid #0b3d91;outline-offset:4px}
footer{color:var(--muted);font-size:.9em;padding:1em 1.2em}
@media print{
 nav,.noprint{display:none}
 body{font-size:11pt}
 header.banner{background:none;border-bottom:2px solid #000}
 section{break-inside:avoid-page}
 figure,table,.card{break-inside:avoid}
 a{color:inherit;text-decoration:none}
 a[href^="http"]::after{content:" <" attr(href) ">";font-size:.8em}
 .trends{grid-template-columns:1fr 1fr}
}
""".strip()
CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()


def csp(frame_ancestors: str | None = "'self'") -> str:
    """The one policy: nothing may load but the inline stylesheet; no script, no form post away."""
    policy = (
        f"default-src 'none'; style-src '{CSS_HASH}'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'self'"
    )
    return policy + (f"; frame-ancestors {frame_ancestors}" if frame_ancestors else "")


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _doc(title: str, body: str, meta_csp: bool) -> str:
    meta = f'<meta http-equiv="Content-Security-Policy" content="{_e(csp(None))}">' if meta_csp else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="referrer" content="no-referrer">{meta}<title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


def error_page(title: str, message: str, relaunch: str | None = None) -> str:
    extra = f'<p><a href="{_e(relaunch)}">Start the app again</a></p>' if relaunch else ""
    body = (
        f'<header class="banner"><h1>Fasciculation work-up: {_e(title)}</h1></header>'
        f'<main><p role="alert">{_e(message)}</p>{extra}'
        "<p>No patient data was shown or stored. This app only reads from the EHR.</p></main>"
    )
    return _doc(title, body, meta_csp=False)


def picker_page(servers: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="{_e(href)}">{_e(label)}</a></li>' for label, href in servers)
    body = (
        '<header class="banner"><h1>Fasciculation work-up: standalone launch</h1></header><main>'
        "<p>Choose the EHR to sign in to; it lets you pick the patient.</p>"
        f"<ul>{items or '<li>No EHR is configured (CDS_SMART_ALLOWED_ISS).</li>'}</ul></main>"
    )
    return _doc("Standalone launch", body, meta_csp=False)


# ------------------------------------------------------------------------- the page


def page_html(page: PageModel, offline: bool = False) -> str:
    h = page.header
    title = f"Fasciculation work-up: {h.name}"
    header = (
        '<header class="banner"><h1>Fasciculation work-up</h1><dl class="patient">'
        + "".join(
            f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>"
            for k, v in (
                ("Patient", h.name),
                ("Age", h.age),
                ("Sex", h.sex),
                ("Fasciculation since", h.onset),
                ("Where", h.body_site),
                ("Source records", ", ".join(h.sources) or "none"),
            )
        )
        + "</dl></header>"
    )
    readonly = (
        '<p class="readonly" role="note"><strong>Read-only.</strong> This app reads the record and shows the '
        "work-up; it does not write to the EHR. Place any order in the EHR itself.</p>"
    )
    if not page.in_scope:
        main = (
            readonly + '<section id="scope" aria-labelledby="h-scope"><h2 id="h-scope">Not in scope</h2>'
            '<p class="none">No fasciculation is recorded for this patient: the fasciculation work-up does not '
            "apply, and the CDS service gives no cards.</p></section>"
        )
        return _doc(title, header + f"<main>{main}</main>" + _footer(page, offline), meta_csp=offline)
    sections = [
        ("red-flags", "Red flags", _red_flags(page)),
        ("workup", "Work-up checklist", _checklist(page.checklist)),
        ("trends", "Trends", _trends(page.trends)),
        ("emg", "EMG/NCS", _emg(page.emg, page.emg_summary)),
        ("medications", "Medications that can cause or worsen fasciculations", _meds(page)),
        ("orders", "Orders pending", _orders(page)),
        ("follow-up", "Follow-up", _follow_up(page)),
        ("cards", "Decision support cards", _cards(page.cards)),
    ]
    nav = (
        '<nav aria-label="Sections" class="noprint"><ul>'
        + "".join(f'<li><a href="#{sid}">{_e(name)}</a></li>' for sid, name, _ in sections)
        + "</ul></nav>"
    )
    missing = (
        '<p role="note"><strong>Incomplete data:</strong> '
        + _e(", ".join(page.missing_data))
        + " could not be read, so they are not considered.</p>"
        if page.missing_data
        else ""
    )
    body = "".join(
        f'<section id="{sid}" aria-labelledby="h-{sid}"'
        + (' class="focus"' if page.focus == sid else "")
        + f'><h2 id="h-{sid}">{_e(name)}</h2>{content}</section>'
        for sid, name, content in sections
    )
    return _doc(
        title,
        header + f"<main>{readonly}{nav}{missing}{body}</main>" + _footer(page, offline),
        meta_csp=offline,
    )


def _footer(page: PageModel, offline: bool) -> str:
    where = "a Bundle file (offline review)" if offline else (page.source or "the EHR")
    return (
        f"<footer>Generated {_e(page.generated.strftime('%Y-%m-%d %H:%M UTC'))} from {_e(where)} by the "
        "fasciculation work-up CDS service. Clinical decision support, not a diagnosis.</footer>"
    )


def _table(head: list[str], rows: list[list[str]], caption: str) -> str:
    th = "".join(f'<th scope="col">{_e(c)}</th>' for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{_e(caption)}</caption><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _flag_rows(flags: list[RedFlag]) -> list[list[str]]:
    return [[_e(f.finding), _e(f.kind), _e(f.how), _e(f.date), _e(f.source)] for f in flags]


def _red_flags(page: PageModel) -> str:
    head = ["Finding", "Kind", "Recorded as", "Date", "Source"]
    reduced = [g for g in page.strength if g.how.endswith("reduced")]
    if page.red_flags:
        out = _table(head, _flag_rows(page.red_flags), "Objective deficits and signs on record")
    elif reduced:
        out = '<p class="none">Reduced strength is graded below (MRC); no coded deficit is on record.</p>'
    else:
        out = (
            '<p class="none">None recorded: no weakness, atrophy, upper-motor-neuron sign, bulbar sign or '
            "reflex abnormality is on record.</p>"
        )
    if page.strength:
        out += _table(head, _flag_rows(page.strength), "Strength graded on the MRC scale (0-5)")
        out += (
            "<p>MRC grades are found by the text of the observation (no verified code exists), so the "
            "rules do not read them; a grade below 5 is an objective deficit to weigh.</p>"
        )
    if page.absent_findings:
        out += _table(head, _flag_rows(page.absent_findings), "Examined and recorded as absent")
    return out


def _status(status: str) -> str:
    cls = "st-" + re.sub(r"[^a-z]+", "-", status)
    return f'<span class="status {cls}">{_e(status)}</span>'


def _checklist(rows: list[ChecklistRow]) -> str:
    head = [
        "Test",
        "Tier",
        "Status",
        "Last value (as reported)",
        "Reference range",
        "Date",
        "Look-back",
        "Note",
    ]
    body = [
        [
            _e(r.test),
            _e(r.tier),
            _status(r.status),
            _e(r.value or "none"),
            _e(r.range or "not reported"),
            _e(r.date or "none"),
            _e(r.lookback),
            _e(r.note),
        ]
        for r in rows
    ]
    return _table(head, body, "First-tier and conditional tests, with the look-back each is counted in")


def _num(v: float) -> str:
    return f"{v:.3g}"


def trend_svg(t: Trend) -> str:
    """A small line chart with the reference band; accessible name and description."""
    w, h, left, right, top, bottom = 320, 130, 44, 10, 10, 24
    values = [p.value for p in t.points]
    lo_v = min([*values, *(b for b in (t.low,) if b is not None)])
    hi_v = max([*values, *(b for b in (t.high,) if b is not None)])
    if hi_v == lo_v:
        hi_v, lo_v = hi_v + 1, lo_v - 1
    pad = (hi_v - lo_v) * 0.1
    lo_v, hi_v = (lo_v - pad if lo_v - pad >= 0 or lo_v < 0 else 0.0), hi_v + pad
    times = [p.when.timestamp() for p in t.points]
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0

    def x(ts: float) -> float:
        return left + (w - left - right) * ((ts - t0) / span if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - (v - lo_v) / (hi_v - lo_v))

    sid = f"trend-{t.concept}"
    band = ""
    if t.low is not None or t.high is not None:
        y_hi = y(t.high) if t.high is not None else top
        y_lo = y(t.low) if t.low is not None else h - bottom
        band = (
            f'<rect x="{left}" y="{y_hi:.1f}" width="{w - left - right}" height="{max(y_lo - y_hi, 0):.1f}" '
            'fill="#dcfce7" stroke="#86efac"/>'
        )
    pts = " ".join(f"{x(ts):.1f},{y(v):.1f}" for ts, v in zip(times, values, strict=True))
    dots = "".join(
        f'<circle cx="{x(ts):.1f}" cy="{y(p.value):.1f}" r="3.5" fill="{"#8a1010" if p.flag else "#0b3d91"}"/>'
        for ts, p in zip(times, t.points, strict=True)
    )
    line = (
        f'<polyline points="{pts}" fill="none" stroke="#0b3d91" stroke-width="2"/>'
        if len(pts.split()) > 1
        else ""
    )
    first, last = t.points[0], t.points[-1]
    band_text = (
        f"Reference band {_num(t.low) if t.low is not None else '-'} to {_num(t.high) if t.high is not None else '-'} "
        f"{t.unit} ({t.band_source})."
        if band
        else "No reference band (none reported)."
    )
    desc = (
        f"{len(t.points)} result(s) of {t.label} from {first.when.date()} to {last.when.date()}; latest "
        f"{_num(last.value)} {t.unit}{' (' + last.flag + ')' if last.flag else ''}. {band_text}"
    )
    axis = (
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="#4a4a4a"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#4a4a4a"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" font-size="10" fill="#1b1b1b">{_num(hi_v)}</text>'
        f'<text x="{left - 4}" y="{h - bottom}" text-anchor="end" font-size="10" fill="#1b1b1b">{_num(lo_v)}</text>'
        f'<text x="{left}" y="{h - 6}" font-size="10" fill="#1b1b1b">{first.when.date()}</text>'
        f'<text x="{w - right}" y="{h - 6}" text-anchor="end" font-size="10" fill="#1b1b1b">{last.when.date()}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-labelledby="{sid}-title {sid}-desc"><title id="{sid}-title">{_e(t.label)} over time ({_e(t.unit)})</title>'
        f'<desc id="{sid}-desc">{_e(desc)}</desc>{band}{axis}{line}{dots}</svg>'
    )


def _trends(trends: list[Trend]) -> str:
    figures = []
    for t in trends:
        if not t.points:
            figures.append(
                f"<figure><figcaption>{_e(t.label)}</figcaption><p>No results on record.</p></figure>"
            )
            continue
        rows = [
            [
                _e(p.when.date()),
                _e(f"{_num(p.value)} {t.unit}"),
                _e(p.reported or ""),
                _e(p.flag or "in range"),
            ]
            for p in t.points
        ]
        table = _table(["Date", f"Value ({t.unit})", "As reported", "Flag"], rows, f"{t.label} results")
        figures.append(
            f"<figure><figcaption>{_e(t.label)} ({_e(t.unit)})</figcaption>{trend_svg(t)}"
            f"<details><summary>Values of {_e(t.label)}</summary>{table}</details></figure>"
        )
    return '<div class="trends">' + "".join(figures) + "</div>"


def _emg(items: list[EmgItem], summary: str) -> str:
    out = f"<p><strong>Status:</strong> {_e(summary)}</p>"
    if items:
        rows = [
            [
                _e(i.label),
                _e(i.kind),
                _e(i.status),
                _e(i.date),
                _e(i.emg_class or "not a report"),
                _e(i.reading),
                f"<q>{_e(i.sentence)}</q>" if i.sentence else "",
                _e(i.source),
            ]
            for i in items
        ]
        out += _table(
            ["Test", "Record", "Status", "Date", "Class", "Reading", "Read from", "Source"],
            rows,
            "EMG/NCS orders and reports",
        )
    return out


def _meds(page: PageModel) -> str:
    if not page.meds:
        return '<p class="none">None recorded among the active medications.</p>'
    rows = [[_e(m.label), _e(m.why), _e(m.status), _e(m.since), _e(m.source)] for m in page.meds]
    return _table(
        ["Medication", "Class", "Status", "Since", "Source"],
        rows,
        "Active medications that can cause fasciculations",
    )


def _orders(page: PageModel) -> str:
    if not page.pending_orders:
        return '<p class="none">No pending orders for the tests of this work-up.</p>'
    rows = [[_e(o.label), _e(o.kind), _e(o.status), _e(o.date), _e(o.source)] for o in page.pending_orders]
    return _table(["Order", "Record", "Status", "Date", "Source"], rows, "Pending orders")


def _follow_up(page: PageModel) -> str:
    booked = (
        "<p><strong>Booked or requested:</strong> " + _e(", ".join(page.follow_up)) + "</p>"
        if page.follow_up
        else '<p class="none">No follow-up visit booked or requested.</p>'
    )
    due = f"<p><strong>Due:</strong> {_e(page.follow_up_due)}</p>" if page.follow_up_due else ""
    return booked + due


_MD = re.compile(r"\\([\\`*_\[\]#|~])")


def _plain(md: str) -> str:
    """Card Markdown as plain text (the service escaped EHR text for Markdown; undo that here and
    drop emphasis marks; the result is HTML-escaped by the caller)."""
    text = _MD.sub(r"\1", md.replace("**", "").replace("`", ""))
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _block(md: str) -> str:
    """One Markdown block of a card: a bullet list, or a paragraph."""
    lines = [line.strip() for line in md.strip().splitlines() if line.strip()]
    if lines and all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_e(_plain(line[2:]))}</li>" for line in lines) + "</ul>"
    return f"<p>{_e(_plain(md.strip().strip('_ ')))}</p>"


def _cards(cards: list[dict[str, Any]]) -> str:
    if not cards:
        return '<p class="none">The CDS service gives no cards for this patient now.</p>'
    out = []
    for c in cards:
        ind = str(c.get("indicator", "info"))
        paras = "".join(_block(p) for p in str(c.get("detail") or "").split("\n\n") if p.strip())
        sugg = [str(s.get("label")) for s in c.get("suggestions") or () if isinstance(s, dict)]
        sugg_html = (
            "<p><strong>Suggested (order in the EHR):</strong></p><ul>"
            + "".join(f"<li>{_e(s)}</li>" for s in sugg)
            + "</ul>"
            if sugg
            else ""
        )
        links = "".join(
            f'<li><a href="{_e(link["url"])}">{_e(link.get("label", "link"))}</a></li>'
            for link in c.get("links") or ()
            if isinstance(link, dict) and link.get("type") == "absolute" and isinstance(link.get("url"), str)
        )
        out.append(
            f'<article class="card {_e(ind)}"><p><span class="ind">{_e(ind)}</span> '
            f"<strong>{_e(c.get('summary', ''))}</strong></p>{paras}{sugg_html}"
            + (f'<ul class="links">{links}</ul>' if links else "")
            + "</article>"
        )
    return "".join(out)


def generated_at(now: datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M UTC")
