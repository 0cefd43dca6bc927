"""Trace reports for people, not programs: a spreadsheet line list and a picture.

A contact tracer works from a line list (one row per contact, sorted by
degree and first contact) and a chain-of-transmission drawing. The CSV
keeps the evidence as a count so a spreadsheet stays readable; the full pairs
are in the JSON document. The plot shows the contact graph (index at the
centre, first-degree ring, second-degree ring, edges along the chain) beside a
timeline of each contact's encounters; large traces show the contacts with the
most encounters and say how many were left out.

matplotlib is imported only inside :func:`plot`, so the CSV path and the pure
modules never load it.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from pathlib import Path
from typing import Any

from processors.contacts import Contact, Trace
from processors.trails import from_micros

CSV_COLUMNS = (
    "person_id",
    "degree",
    "first_contact",
    "encounters",
    "sites",
    "evidence_count",
    "via",
)
MAX_DRAWN = {1: 30, 2: 40}
_COLOURS = {0: "#b2182b", 1: "#ef8a62", 2: "#67a9cf"}


def to_csv(result: Trace) -> str:
    """One row per contact; sites and first-degree links joined with ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    tz = result.since.tzinfo
    for c in result.contacts:
        writer.writerow(
            [
                c.person_id,
                c.degree,
                c.first_contact_at(tz).isoformat(),
                c.encounters,
                ";".join(c.sites),
                len(c.evidence),
                ";".join(c.via),
            ]
        )
    return out.getvalue()


def _shown(result: Trace) -> tuple[list[Contact], dict[int, int]]:
    """The contacts worth drawing (most encounters first) and how many were left out."""
    shown: list[Contact] = []
    hidden: dict[int, int] = {}
    for degree, limit in MAX_DRAWN.items():
        group = sorted(result.of_degree(degree), key=lambda c: (-c.encounters, c.person_id))
        shown.extend(group[:limit])
        hidden[degree] = max(0, len(group) - limit)
    return shown, hidden


def _ring(names: list[str], radius: float) -> dict[str, tuple[float, float]]:
    step = 2 * math.pi / max(1, len(names))
    return {
        name: (radius * math.cos(i * step), radius * math.sin(i * step))
        for i, name in enumerate(names)
    }


def _figure(result: Trace) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown, hidden = _shown(result)
    first = sorted((c for c in shown if c.degree == 1), key=lambda c: c.first_contact)
    second = sorted((c for c in shown if c.degree == 2), key=lambda c: (c.via, c.person_id))
    pos = {result.index: (0.0, 0.0)}
    pos.update(_ring([c.person_id for c in first], 1.0))
    pos.update(_ring([c.person_id for c in second], 2.0))

    fig, (graph, timeline) = plt.subplots(
        1, 2, figsize=(15, 7.5), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    title = (
        f"Contacts of {result.index}, {result.since.isoformat()} to {result.until.isoformat()} "
        f"(window {result.policy.window.total_seconds() / 60:g} min, depth {result.policy.depth}"
        f"{', same kiosk' if result.policy.same_kiosk else ''})"
    )
    fig.suptitle(title, fontsize=11)
    _draw_graph(graph, result, first, second, pos, hidden)
    _draw_timeline(timeline, result, first, second)
    fig.tight_layout()
    return fig


def _draw_graph(
    graph: Any,
    result: Trace,
    first: list[Any],
    second: list[Any],
    pos: dict[str, tuple[float, float]],
    hidden: Any,
) -> None:
    for c in first:
        x, y = pos[c.person_id]
        graph.plot([0, x], [0, y], color=_COLOURS[1], lw=0.6 + 0.4 * min(c.encounters, 6))
    for c in second:
        x, y = pos[c.person_id]
        for link in c.via:
            if link in pos:
                lx, ly = pos[link]
                graph.plot([lx, x], [ly, y], color=_COLOURS[2], lw=0.6, alpha=0.6)
    for degree, group in ((1, first), (2, second)):
        for c in group:
            x, y = pos[c.person_id]
            graph.scatter([x], [y], s=60, color=_COLOURS[degree], zorder=3)
            if len(group) <= 30:
                graph.annotate(
                    c.person_id, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points"
                )
    graph.scatter([0], [0], s=200, color=_COLOURS[0], zorder=4)
    graph.annotate(
        result.index,
        (0, 0),
        fontsize=9,
        fontweight="bold",
        xytext=(6, 6),
        textcoords="offset points",
    )
    counts = {d: len(result.of_degree(d)) for d in (1, 2)}
    legend = [
        f"index {result.index}",
        f"1st degree: {counts[1]}" + (f" ({hidden[1]} not drawn)" if hidden[1] else ""),
    ]
    if result.policy.depth == 2:
        legend.append(
            f"2nd degree: {counts[2]}" + (f" ({hidden[2]} not drawn)" if hidden[2] else "")
        )
    for text, colour in zip(legend, _COLOURS.values(), strict=False):
        graph.scatter([], [], color=colour, label=text)
    graph.legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(0, 1.02))
    graph.set_aspect("equal")
    graph.set_xlim(-2.5, 2.5)
    graph.set_ylim(-2.5, 2.7)
    graph.axis("off")
    graph.set_title("contact graph (edge = scanned at one site within the window)", fontsize=9)


def _draw_timeline(timeline: Any, result: Trace, first: list[Any], second: list[Any]) -> None:
    import matplotlib.dates as mdates

    tz = result.since.tzinfo
    rows = first + sorted(second, key=lambda c: c.first_contact)
    for i, t in enumerate(result.index_times):
        timeline.axvline(
            from_micros(t, tz),
            color=_COLOURS[0],
            lw=0.8,
            alpha=0.5,
            label=f"{result.index} scanned" if i == 0 else None,
        )
    for y, c in enumerate(rows):
        when = [from_micros(t, tz) for t in c.times]
        timeline.scatter(when, [y] * len(when), s=18, color=_COLOURS[c.degree])
    timeline.set_yticks(range(len(rows)))
    timeline.set_yticklabels([c.person_id for c in rows], fontsize=6 if len(rows) > 30 else 8)
    timeline.invert_yaxis()
    timeline.grid(axis="x", alpha=0.3)
    timeline.set_title("encounters over time (contact's matching scans)", fontsize=9)
    timeline.tick_params(axis="x", labelsize=8, labelrotation=30)
    formatter = mdates.DateFormatter("%m-%d %H:%M", tz=tz)  # type: ignore[no-untyped-call]
    timeline.xaxis.set_major_formatter(formatter)
    timeline.set_xlabel(f"time (UTC{result.since.strftime('%z')})", fontsize=8)
    if result.index_times:
        timeline.legend(loc="lower right", fontsize=8)
    if not rows:
        timeline.text(
            0.5, 0.5, "no contacts in this period", ha="center", transform=timeline.transAxes
        )


def plot(result: Trace, path: Path) -> None:
    """Draw the trace to ``path``: PNG, or a self-contained HTML page with the PNG inside."""
    fig = _figure(result)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    png = buffer.getvalue()
    if path.suffix.lower() in (".html", ".htm"):
        encoded = base64.b64encode(png).decode()
        path.write_text(
            "<!doctype html>\n<html><head><meta charset='utf-8'>"
            f"<title>Contacts of {_escape(result.index)}</title></head><body>\n"
            f"<h1>Contacts of {_escape(result.index)}</h1>\n"
            f"<img alt='contact graph and timeline' src='data:image/png;base64,{encoded}'>\n"
            "</body></html>\n",
            encoding="utf-8",
        )
    else:
        path.write_bytes(png)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
