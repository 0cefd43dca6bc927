"""Inline SVG for the console: a temperature curve, a contact graph, an encounter timeline. Pure.

Drawn on the server as markup (no script, no chart library, nothing fetched),
so a page is readable the moment it loads and prints as it looks. Labels are
escaped; coordinates are rounded to 0.1 px to keep the markup small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

from processors.contacts import Trace
from processors.trails import from_micros

FEVER_C = 37.3
_COLOURS = {0: "#b2182b", 1: "#e08214", 2: "#2166ac"}


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def temperature_curve(
    points: Sequence[tuple[datetime, float]],
    *,
    start: datetime,
    end: datetime,
    baseline: float | None,
    labels: dict[str, str],
    tz: Any,
    highlight: set[datetime] | None = None,
    width: int = 1200,
    height: int = 280,
) -> str:
    """Readings as dots joined by a line, the fever line dashed red, the baseline dotted grey."""
    left, right, top, bottom = 48, 12, 14, 34
    values = [c for _, c in points] + [FEVER_C] + ([baseline] if baseline is not None else [])
    low = math.floor(min(min(values), 36.0) * 2) / 2
    high = math.ceil(max(max(values), 38.0) * 2) / 2
    span = (end - start).total_seconds() or 1.0

    def x(t: datetime) -> float:
        return left + (width - left - right) * (t - start).total_seconds() / span

    def y(c: float) -> float:
        return top + (height - top - bottom) * (high - c) / (high - low)

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(labels["curve"])}" xmlns="http://www.w3.org/2000/svg">'
    ]
    grid = low
    while grid <= high + 1e-9:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_f(y(grid))}" y2="{_f(y(grid))}" '
            'class="grid"/>'
            f'<text x="{left - 6}" y="{_f(y(grid) + 4)}" class="axis" text-anchor="end">'
            f"{grid:.1f}</text>"
        )
        grid += 0.5
    day = start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        if day >= start:
            out.append(
                f'<line x1="{_f(x(day))}" x2="{_f(x(day))}" y1="{top}" y2="{height - bottom}" '
                'class="grid"/>'
                f'<text x="{_f(x(day))}" y="{height - bottom + 16}" class="axis" '
                f'text-anchor="middle">{day.strftime("%m-%d")}</text>'
            )
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{_f(y(FEVER_C))}" y2="{_f(y(FEVER_C))}" '
        'class="fever"/>'
        f'<text x="{width - right - 4}" y="{_f(y(FEVER_C) - 5)}" class="fever-label" '
        f'text-anchor="end">{escape(labels["fever_line"])}</text>'
    )
    if baseline is not None:
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{_f(y(baseline))}" '
            f'y2="{_f(y(baseline))}" class="baseline"/>'
            f'<text x="{left + 6}" y="{_f(y(baseline) + 14)}" class="baseline-label">'
            f"{escape(labels['baseline'])}</text>"
        )
    ordered = sorted(points)
    if len(ordered) > 1:
        path = " ".join(f"{_f(x(t))},{_f(y(c))}" for t, c in ordered)
        out.append(f'<polyline points="{path}" class="reading-line"/>')
    marked = highlight or set()
    for t, c in ordered:
        cls = "reading hot" if c >= FEVER_C else "reading"
        if t in marked:
            cls += " evidence"
        local = t.astimezone(tz).strftime("%m-%d %H:%M")
        out.append(
            f'<circle cx="{_f(x(t))}" cy="{_f(y(c))}" r="{4 if t in marked else 3}" '
            f'class="{cls}"><title>{local} {c:.1f} °C</title></circle>'
        )
    out.append("</svg>")
    return "".join(out)


def contact_graph(result: Trace, *, limit: int = 40, size: int = 400) -> str:
    """The index in the centre, first-degree contacts on a ring, second-degree outside."""
    centre = size / 2
    first = sorted(result.of_degree(1), key=lambda c: (-c.encounters, c.person_id))[:limit]
    second = sorted(result.of_degree(2), key=lambda c: (-c.encounters, c.person_id))[:limit]
    first.sort(key=lambda c: c.first_contact)
    second.sort(key=lambda c: (c.via, c.person_id))

    def ring(names: list[str], radius: float) -> dict[str, tuple[float, float]]:
        step = 2 * math.pi / max(1, len(names))
        return {
            n: (centre + radius * math.cos(i * step - math.pi / 2),
                centre + radius * math.sin(i * step - math.pi / 2))
            for i, n in enumerate(names)
        }  # fmt: skip

    pos = {result.index: (centre, centre)}
    pos.update(ring([c.person_id for c in first], size * 0.26))
    pos.update(ring([c.person_id for c in second], size * 0.44))
    out = [f'<svg class="graph" viewBox="0 0 {size} {size}" xmlns="http://www.w3.org/2000/svg">']
    for c in first:
        px, py = pos[c.person_id]
        w = 1 + 0.5 * min(c.encounters, 6)
        out.append(
            f'<line x1="{_f(centre)}" y1="{_f(centre)}" x2="{_f(px)}" y2="{_f(py)}" '
            f'stroke="{_COLOURS[1]}" stroke-width="{_f(w)}"/>'
        )
    for c in second:
        px, py = pos[c.person_id]
        for link in c.via:
            if link in pos:
                lx, ly = pos[link]
                out.append(
                    f'<line x1="{_f(lx)}" y1="{_f(ly)}" x2="{_f(px)}" y2="{_f(py)}" '
                    f'stroke="{_COLOURS[2]}" stroke-opacity="0.6"/>'
                )
    label = len(first) + len(second) <= 40
    for degree, group in ((1, first), (2, second)):
        for c in group:
            px, py = pos[c.person_id]
            out.append(
                f'<circle cx="{_f(px)}" cy="{_f(py)}" r="6" fill="{_COLOURS[degree]}">'
                f"<title>{escape(c.person_id)} · {c.encounters}</title></circle>"
            )
            if label:
                out.append(
                    f'<text x="{_f(px + 8)}" y="{_f(py + 4)}" class="node">'
                    f"{escape(c.person_id)}</text>"
                )
    out.append(
        f'<circle cx="{_f(centre)}" cy="{_f(centre)}" r="11" fill="{_COLOURS[0]}"/>'
        f'<text x="{_f(centre + 14)}" y="{_f(centre - 10)}" class="node index">'
        f"{escape(result.index)}</text></svg>"
    )
    return "".join(out)


def encounter_timeline(result: Trace, tz: Any, *, limit: int = 40, width: int = 1200) -> str:
    """One row per contact, a dot per matching scan; the index's scans as red ticks."""
    rows = sorted(result.contacts, key=lambda c: (c.degree, c.first_contact))[:limit]
    left, right, top, row_h = 130, 16, 22, 24
    height = top + row_h * max(1, len(rows)) + 28
    start, end = result.since, result.until
    times = [t for c in rows for t in c.times] + list(result.index_times)
    if times:
        start = from_micros(min(times), tz) - timedelta(minutes=10)
        end = from_micros(max(times), tz) + timedelta(minutes=10)
    span = (end - start).total_seconds() or 1.0

    def x(micros: int) -> float:
        moment = from_micros(micros, tz)
        return left + (width - left - right) * (moment - start).total_seconds() / span

    out = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for t in result.index_times:
        out.append(
            f'<line x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top - 8}" y2="{height - 26}" '
            f'stroke="{_COLOURS[0]}" stroke-opacity="0.45"/>'
        )
    for i, c in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        out.append(
            f'<text x="{left - 8}" y="{_f(cy + 4)}" class="node" text-anchor="end">'
            f"{escape(c.person_id)}</text>"
            f'<line x1="{left}" x2="{width - right}" y1="{_f(cy)}" y2="{_f(cy)}" class="grid"/>'
        )
        for t in c.times:
            out.append(
                f'<circle cx="{_f(x(t))}" cy="{_f(cy)}" r="4" fill="{_COLOURS[c.degree]}">'
                f"<title>{from_micros(t, tz).strftime('%m-%d %H:%M')}</title></circle>"
            )
    ticks = 6
    for k in range(ticks + 1):
        moment = start + (end - start) * k / ticks
        px = left + (width - left - right) * k / ticks
        anchor = "end" if k == ticks else "middle"
        out.append(
            f'<text x="{_f(px)}" y="{height - 8}" class="axis" text-anchor="{anchor}">'
            f"{moment.astimezone(tz).strftime('%m-%d %H:%M')}</text>"
        )
    out.append("</svg>")
    return "".join(out)
