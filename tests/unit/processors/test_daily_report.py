"""The daily report's figures (pure) and its PDF, rendered to PNG pages with pdftoppm."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from processors.daily_report import (
    CountRow,
    Heartbeat,
    ReportInputs,
    build_report,
    day_bounds,
    next_run,
    silences,
)
from processors.screening_state import make_alert
from sinks.daily_report import write_report

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2020, 2, 10)
START, END = day_bounds(DAY, ZONE)


def at(hour: float) -> datetime:
    return START + timedelta(hours=hour)


def alert(kind: str, hour: float, evidence: list[str], **kw: object):  # type: ignore[no-untyped-def]
    severity = kw.pop("severity", "warning")
    return make_alert(
        kind,
        severity,  # type: ignore[arg-type]
        site_id=str(kw.pop("site_id", "site-1")),
        event_time=at(hour),
        evidence=evidence,
        **kw,  # type: ignore[arg-type]
    )


def sample_inputs() -> ReportInputs:
    return ReportInputs(
        passages=[
            CountRow("site-1", at(8), 30, "out"),
            CountRow("site-1", at(8), 5, "in"),
            CountRow("site-1", at(18), 28, "in"),
            CountRow("market-01", at(9), 12, "in"),
            CountRow("site-1", at(-1), 99, "in"),  # the day before: not counted
        ],
        readings=[
            CountRow("site-1", at(8), 34, "valid"),
            CountRow("site-1", at(8), 1, "invalid"),
            CountRow("site-1", at(18), 28, "valid"),
        ],
        alerts=[
            alert("fever_suspected", 8.1, ["r1"], person_id="p-1"),
            alert("fever_confirmed", 8.3, ["r1", "r2"], person_id="p-1", severity="critical"),
            alert("fever_suspected", 9.0, ["r3"], person_id="p-2"),
            alert("fever_cleared", 9.2, ["r3", "r4"], person_id="p-2", severity="info"),
            alert("fever_suspected", 15.5, ["r5"], person_id="p-3"),
            alert("outing_quota_exceeded", 8.2, ["s1", "s2"], person_id="p-4", severity="info"),
            alert("health_code_red", 9.5, ["s3"], person_id="p-5", site_id="market-01"),
            alert("health_code_yellow", 10, ["s4"], person_id="p-6"),
            alert("quarantine_breach", 11, ["s5"], person_id="p-7", severity="critical"),
            alert("fever_cluster", 12, ["r2", "x", "y"], severity="critical"),
        ],
        heartbeats=[Heartbeat("site-1", "kiosk-1", at(h / 60)) for h in range(0, 600, 1)]
        + [Heartbeat("site-1", "kiosk-1", at(12 + h / 60)) for h in range(0, 240, 1)],
        curves={
            "p-1": [(at(-24 * d + 8), 36.4 + 0.05 * (d % 3)) for d in range(1, 14)]
            + [(at(8.1), 38.2)],
            "p-2": [(at(9.0), 37.5)],
        },
    )


def test_figures_of_a_day() -> None:
    made_at = at(16)
    figures = build_report(sample_inputs(), DAY, ZONE, made_at=made_at)
    site = figures["sites"]["site-1"]
    assert site["passages_out"][8] == 30 and site["passages_in"][18] == 28
    assert (site["passages_in_total"], site["passages_out_total"]) == (33, 30)
    assert (site["readings_total"], site["readings_invalid"]) == (63, 1)
    assert site["fevers"] == {
        "fever_cleared": 1,
        "fever_confirmed": 1,
        "fever_suspected": 3,
    }
    assert site["fevers_settled"] == {"cleared": 1, "confirmed": 1, "open": 1}
    assert [a["kind"] for a in site["health_codes"]] == ["health_code_yellow"]
    assert (
        len(site["outing_quota"]) == len(site["clusters"]) == len(site["quarantine_breaches"]) == 1
    )
    # kiosk-1 beat every minute 00:00-10:00 and 12:00-16:00: silent 10:00-12:00
    assert [(s["from"][11:16], s["to"][11:16]) for s in site["silent_kiosks"]] == [
        ("09:59", "12:00")
    ]
    market = figures["sites"]["market-01"]
    assert market["alerts"] == {"health_code_red": 1} and market["passages_in_total"] == 12
    assert figures["totals"]["passages_in"] == 45
    assert figures["fever_persons"] == ["p-1", "p-2", "p-3"]
    assert len(figures["curves"]["p-1"]) == 14 and figures["curves"]["p-3"] == []
    only = build_report(sample_inputs(), DAY, ZONE, site="market-01", made_at=made_at)
    assert list(only["sites"]) == ["market-01"]
    json.dumps(figures)  # JSON-able as it is


def test_a_repeated_alert_counts_once() -> None:
    inputs = sample_inputs()
    inputs.alerts = inputs.alerts + inputs.alerts[:2]
    figures = build_report(inputs, DAY, ZONE)
    assert figures["sites"]["site-1"]["fevers"]["fever_suspected"] == 3


def test_silences_and_schedule() -> None:
    beats = [at(0), at(0.05), at(1)]
    assert silences(beats, at(0), at(2), timedelta(minutes=5)) == [
        (at(0.05), at(1)),
        (at(1), at(2)),
    ]
    assert silences(beats, at(0), at(1.05), timedelta(minutes=5)) == [(at(0.05), at(1))]
    # 16:00 Shanghai is 08:00 UTC
    assert next_run(datetime(2020, 2, 10, 7, 59, tzinfo=UTC), "16:00", ZONE) == at(16)
    assert next_run(datetime(2020, 2, 10, 8, 0, tzinfo=UTC), "16:00", ZONE) == at(16 + 24)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_pdf_pages_render_to_png(tmp_path: Path) -> None:
    if not shutil.which("pdftoppm"):
        pytest.fail("pdftoppm is missing: run `make install` (deploy/local/system-deps.sh)")
    figures = build_report(sample_inputs(), DAY, ZONE, made_at=at(16))
    pdf, json_path = write_report(figures, tmp_path)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(figures))
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    # summary, one page per site (market-01, site-1), the curves
    assert len(pages) == 4
    for page in pages:
        width, height = _png_size(page)
        assert width > height  # landscape A4
        assert abs(width / height - 297 / 210) < 0.02
    # pages are not blank: the PNG of a drawn page is far larger than an empty one
    assert all(page.stat().st_size > 5_000 for page in pages)
