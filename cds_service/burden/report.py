"""The burden report's outputs: a terminal table and one self-contained HTML page.

The HTML has no script and loads nothing (charts are inline SVG, styles inline), so it can be
mailed or archived with a go-live decision and opens the same offline years later. All text that
comes from data is escaped.
"""

from __future__ import annotations

import html
from typing import Any

BAR = "#3b6ea5"
HIDDEN = "#d08c2c"
BAD = "#b03a2e"
GOOD = "#2e7d32"


def _fmt_pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def text_report(s: dict[str, Any]) -> str:
    """The terminal table: headline, targets, per-rule rates, completeness, time."""
    out = [
        f"Patients {s['patients']} ({s['resources']} resources), in scope {s['in_scope']}, "
        f"HTTP status {s['status']}, card budget {s['card_budget']}",
        f"Mean cards per in-scope patient {s['mean_cards_per_in_scope_patient']}; at the budget "
        f"{s['at_budget']}; cards hidden by the budget {s['hidden_by_budget']} "
        f"(in {s['patients_with_hidden']} patients); out-of-scope patients with cards {s['out_of_scope_with_cards']}",
        "",
        f"{'Target':<62} {'value':>14}  met",
    ]
    for t in s["targets"]:
        out.append(f"{t['target']:<62} {str(t['value'])[:14]:>14}  {'yes' if t['met'] else 'NO'}")
    out += [
        "",
        f"{'Rule':<6} {'indicator':<9} {'fired':>6} {'shown':>6} {'hidden':>6} {'fired %':>8} {'shown %':>8} {'of cards':>8}",
    ]
    for p in s["per_rule"]:
        out.append(
            f"{p['rule']:<6} {p['indicator']:<9} {p['fired']:>6} {p['shown']:>6} {p['hidden']:>6} "
            f"{_fmt_pct(p['fired_rate']):>8} {_fmt_pct(p['shown_rate']):>8} {_fmt_pct(p['share_of_cards']):>8}"
        )
    c = s["completeness"]
    out += [
        "",
        f"Cards per in-scope patient: {s['cards_histogram']}; per indicator: {s['per_indicator']}",
        f"Incomplete required data (in scope): {c['in_scope_with_incomplete_required']} -> 412 {c['answered_412']}, "
        f"cards naming the gap {c['answered_cards_naming_missing']}, silent {c['silent']}; keys {c['keys']}",
        f"Lab checks: HbA1c {s['labs']['hba1c']}; CMP {s['labs']['cmp']}",
        f"Time per patient: mean {s['time']['mean_ms']} ms, p50 {s['time']['p50_ms']} ms, "
        f"p95 {s['time']['p95_ms']} ms, max {s['time']['max_ms']} ms",
    ]
    for src, b in s["by_source"].items():
        out.append(
            f"  {src}: {b['patients']} patients, {b['in_scope']} in scope, mean cards {b['mean_cards']}, "
            f"most Conditions {b['max_conditions']}"
        )
    if s["errors"]:
        out += ["", "Errors (first 20):", *(f"  {e}" for e in s["errors"])]
    return "\n".join(out)


def _bars(rows: list[tuple[str, list[tuple[float, str]]]], vmax: float, fmt: str = "{:.0f}") -> str:
    """Horizontal (stacked) bars: one row per label, each a list of (value, colour)."""
    h, label_w, w = 22, 150, 420
    height = h * len(rows) + 10
    parts = [f'<svg width="{label_w + w + 90}" height="{height}" role="img">']
    for i, (label, segs) in enumerate(rows):
        y = 5 + i * h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{html.escape(label)}</text>'
        )
        x = float(label_w)
        for value, colour in segs:
            width = 0.0 if vmax <= 0 else w * value / vmax
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{h - 6}" fill="{colour}"/>'
            )
            x += width
        total = sum(v for v, _ in segs)
        parts.append(
            f'<text x="{x + 4:.1f}" y="{y + 15}" font-size="12">{html.escape(fmt.format(total))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _columns(bins: list[tuple[str, int]], colour: str = BAR, x_title: str = "") -> str:
    """A vertical histogram with labelled bins."""
    w, h, pad = 520, 200, 30
    n = max(len(bins), 1)
    bw = (w - 2 * pad) / n
    vmax = max((c for _, c in bins), default=0) or 1
    parts = [f'<svg width="{w}" height="{h + 40}" role="img">']
    for i, (label, count) in enumerate(bins):
        bh = (h - 30) * count / vmax
        x = pad + i * bw
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{h - bh:.1f}" width="{bw - 4:.1f}" height="{bh:.1f}" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{h - bh - 4:.1f}" text-anchor="middle" font-size="11">{count}</text>'
        )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{h + 14}" text-anchor="middle" font-size="11">{html.escape(label)}</text>'
        )
    parts.append(f'<line x1="{pad}" y1="{h}" x2="{w - pad}" y2="{h}" stroke="#333"/>')
    parts.append(
        f'<text x="{w / 2}" y="{h + 34}" text-anchor="middle" font-size="12">{html.escape(x_title)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _time_bins(ms: list[float], n: int = 12) -> list[tuple[str, int]]:
    if not ms:
        return []
    hi = max(ms)
    step = max(hi / n, 0.001)
    counts = [0] * n
    for v in ms:
        counts[min(int(v / step), n - 1)] += 1
    return [(f"{step * (i + 1):.0f}", c) for i, c in enumerate(counts)]


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def html_report(s: dict[str, Any], title: str = "Alert burden report") -> str:
    """One HTML page, no external resource."""
    targets = "".join(
        f"<tr><td>{html.escape(t['target'])}</td><td>{html.escape(str(t['value']))}</td>"
        f"<td style='color:{GOOD if t['met'] else BAD};font-weight:bold'>{'met' if t['met'] else 'missed'}</td></tr>"
        for t in s["targets"]
    )
    hist = _columns(
        [(k, v) for k, v in s["cards_histogram"].items()],
        x_title="cards shown per in-scope patient (answered 200)",
    )
    rules = s["per_rule"]
    n_scope = max(s["in_scope"], 1)
    rule_bars = _bars(
        [
            (
                f"{p['rule']} ({p['indicator']})",
                [(p["shown"] * 100 / n_scope, BAR), (p["hidden"] * 100 / n_scope, HIDDEN)],
            )
            for p in rules
        ],
        100.0,
        "{:.1f} %",
    )
    ind = s["per_indicator"]
    ind_bars = _bars([(k, [(float(v), BAR)]) for k, v in ind.items()], float(max(ind.values(), default=1)))
    c = s["completeness"]
    completeness = _table(
        ["in-scope patients with incomplete required data", "answered 412", "cards naming the gap", "silent"],
        [
            [
                c["in_scope_with_incomplete_required"],
                c["answered_412"],
                c["answered_cards_naming_missing"],
                c["silent"],
            ]
        ],
    ) + _table(["key", "patients"], [[k, v] for k, v in sorted(c["keys"].items())])
    labs = _table(
        ["test", "ok", "false done", "false missing", "not judged"],
        [
            [t, v.get("ok", 0), v.get("false-done", 0), v.get("false-missing", 0), v.get("n/a", 0)]
            for t, v in s["labs"].items()
        ],
    )
    rule_table = _table(
        ["rule", "indicator", "fired", "shown", "hidden by budget", "fired %", "shown %", "share of cards"],
        [
            [
                p["rule"],
                p["indicator"],
                p["fired"],
                p["shown"],
                p["hidden"],
                _fmt_pct(p["fired_rate"]),
                _fmt_pct(p["shown_rate"]),
                _fmt_pct(p["share_of_cards"]),
            ]
            for p in rules
        ],
    )
    sources = _table(
        ["source", "patients", "in scope", "mean cards", "resources", "most Conditions"],
        [
            [k, b["patients"], b["in_scope"], b["mean_cards"], b["resources"], b["max_conditions"]]
            for k, b in s["by_source"].items()
        ],
    )
    t = s["time"]
    time_chart = _columns(_time_bins(t["per_patient_ms"]), x_title="ms per patient (upper bin edge)")
    opts = html.escape(str(s["options"]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:64em;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:.6em 0 1.2em}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}
th{{background:#f2f2f2}}h2{{margin-top:1.6em;border-bottom:1px solid #ddd}}.legend span{{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {html.escape(s["generated"])}. {s["patients"]} patients ({s["resources"]} resources), {s["in_scope"]} in scope;
HTTP status {html.escape(str(s["status"]))}; card budget {s["card_budget"]}; options {opts}.</p>
<h2>Targets</h2>
<table><thead><tr><th>target</th><th>measured</th><th></th></tr></thead><tbody>{targets}</tbody></table>
<h2>Cards per in-scope patient</h2>
<p>Mean {s["mean_cards_per_in_scope_patient"]}; {s["at_budget"]} patients at the budget.</p>
{hist}
<h2>Firing rate per rule</h2>
<p class="legend">Share of in-scope patients:<span style="background:{BAR}"></span>shown<span style="background:{HIDDEN}"></span>hidden by the card budget
({s["hidden_by_budget"]} cards in {s["patients_with_hidden"]} patients).</p>
{rule_bars}
{rule_table}
<h2>Cards shown per indicator</h2>
{ind_bars}
<h2>Data completeness</h2>
{completeness}
<h2>Lab checks against the record</h2>
{labs}
<h2>Time per patient</h2>
<p>Mean {t["mean_ms"]} ms, median {t["p50_ms"]} ms, p95 {t["p95_ms"]} ms, max {t["max_ms"]} ms (gather + rules + cards, in process).</p>
{time_chart}
<h2>Sources</h2>
{sources}
</body></html>
"""
