"""`scantrail report` against the real InfluxDB and alerts topic: figures, JSON and PDF pages."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.simulate import GateWorld, simulate_events
from processors.screener import Screener
from scantrail import contract
from sinks.influx import InfluxWriter
from sinks.lines import (
    kiosk_health_line,
    passage_line,
    temperature_line,
    watched_temperature_line,
)
from sinks.sink_state import minute_of
from tests.support import consume_all, publish, scantrail_cmd, service_env

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2020, 2, 10)
START = datetime(2020, 2, 10, 8, 0, tzinfo=ZONE)  # 08:00 local


def test_report_of_a_day_from_influx_and_the_alerts_topic(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    if not shutil.which("pdftoppm"):
        pytest.fail("pdftoppm is missing: run `make install` (deploy/local/system-deps.sh)")
    world = GateWorld.districts(kiosks=4, residents=80, seed=21, fever_share=0.1)
    events = list(simulate_events(world, START.astimezone(UTC), 0.5, timedelta(hours=2)))
    scans = [e for e in events if isinstance(e, contract.ScanEvent)]
    readings = [e for e in events if isinstance(e, contract.TemperatureReading)]
    alerts = Screener().run(events)  # type: ignore[arg-type]
    fever_persons = sorted(
        {a.person_id for a in alerts if a.kind.startswith("fever_") and a.person_id}
    )
    # What the sink stores: per-minute passages, readings, heartbeats, watched curves.
    minutes: Counter[tuple[str, str, str, int]] = Counter(
        (s.site_id, s.kiosk_id, s.direction, minute_of(s.scanned_at)) for s in scans
    )
    lines = [passage_line(*key, n) for key, n in minutes.items()]
    lines += [temperature_line(r) for r in readings]
    # kiosk-000 beats every 30 s but falls silent from 09:00 to 09:20 local
    for i in range(0, 240):
        at = START + timedelta(seconds=30 * i)
        if not (START + timedelta(hours=1) < at < START + timedelta(hours=1, minutes=20)):
            beat = contract.KioskHeartbeat(
                kiosk_id="kiosk-000",
                site_id="site-000",
                sent_at=at,
                spool_depth=0,
                scans_since_start=i,
                decode_failures=0,
                version="test",
            )
            lines.append(kiosk_health_line(beat))
    writer = InfluxWriter(influx_settings)
    try:
        writer.write(lines)
        watched = [
            watched_temperature_line(r, r.person_id)
            for r in readings
            if r.person_id in fever_persons
        ]
        writer.write(watched, influx_settings.watched_bucket)
    finally:
        writer.close()
    publish(kafka_settings, alerts)

    env = service_env(kafka_settings, influx_settings, SCANTRAIL_STATE=str(tmp_path / "state"))
    out = subprocess.run(
        scantrail_cmd("report", "--date", DAY.isoformat(), "--out", str(tmp_path / "reports")),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    made = json.loads(out.stdout.strip().splitlines()[-1])
    figures = json.loads(Path(made["json"]).read_text())

    totals = figures["totals"]
    assert totals["passages_in"] == sum(s.direction == "in" for s in scans)
    assert totals["passages_out"] == sum(s.direction == "out" for s in scans)
    assert totals["readings"] == len(readings)
    assert totals["alerts"] == dict(sorted(Counter(a.kind for a in alerts).items()))
    for kind in ("outing_quota_exceeded", "health_code_yellow", "fever_confirmed"):
        assert totals["alerts"].get(kind, 0) > 0, totals["alerts"]
    silent = figures["sites"]["site-000"]["silent_kiosks"]
    assert [(s["kiosk_id"], s["from"][11:16], s["to"][11:16]) for s in silent][:1] == [
        ("kiosk-000", "09:00", "09:20")
    ]
    assert figures["fever_persons"] == fever_persons
    assert all(figures["curves"][p] for p in fever_persons)
    venue_sites = {s.site_id for s in scans if s.venue_kind}
    assert venue_sites and venue_sites <= set(figures["sites"])

    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", made["pdf"], str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 + len(figures["sites"])  # summary, a page per site, curves
    # the audit record of the read of personal data (the curves)
    records = [
        json.loads(m.value)
        for m in consume_all(kafka_settings, contract.AUDIT, expect=1, timeout_s=30)
    ]
    assert [(r["action"], r["detail"]["curves_of_persons"]) for r in records] == [
        ("daily_report", len(fever_persons))
    ]
