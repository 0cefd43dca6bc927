"""The console's big screen and the Grafana dashboard agree on the same data.

Points are written into a fresh InfluxDB bucket with the sink's own line
builders (:mod:`sinks.lines`); then the big screen's figures
(:meth:`Console.screen_data`) are compared with what the dashboard's panels
answer over the same range, their Flux queries run as Grafana would run them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scantrail.console.web import Console
from scantrail.contract import Alert, KioskHeartbeat
from scantrail.settings import ConsoleSettings, KafkaSettings
from sinks.influx import InfluxWriter
from sinks.lines import alert_line, kiosk_health_line, passage_line
from tests.support import ROOT

pytestmark = pytest.mark.integration

DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "scantrail-dashboard.json").read_text())


def panel_query(title: str) -> str:
    panel = next(p for p in DASHBOARD["panels"] if p.get("title") == title)
    return str(panel["targets"][0]["query"])


def grafana(influx: InfluxWriter, title: str, start: datetime, stop: datetime, window: str) -> Any:
    preamble = (
        f"v = {{timeRangeStart: {start.isoformat()}, timeRangeStop: {stop.isoformat()}, "
        f"windowPeriod: {window}}}\n"
    )
    return influx.query(preamble + panel_query(title).replace("${bucket}", influx.settings.bucket))


def alert(n: int, kind: str, site: str, at: datetime) -> Alert:
    return Alert(
        alert_id=f"a-{n}", kind=kind, site_id=site, person_id=f"p-{n}", kiosk_id="k-1",
        severity="critical", event_time=at, raised_at=at, evidence=[f"t-{n}"],
    )  # fmt: skip


def test_big_screen_and_grafana_agree(influx_settings) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC).replace(microsecond=0)
    minute = now.replace(second=0)
    tz = ZoneInfo("Asia/Shanghai")
    midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0)
    writer = InfluxWriter(influx_settings)
    lines = []
    for m in range(1, 40):  # passages of the last 39 minutes, three gates on two sites
        at = int((minute - timedelta(minutes=m)).timestamp())
        lines.append(passage_line("site-a", "k-1", "in", at, 3 + m % 4))
        lines.append(passage_line("site-a", "k-2", "out", at, 1 + m % 3))
        lines.append(passage_line("site-b", "k-9", "in", at, 2 * (m % 5)))
    kinds = ["fever_confirmed", "fever_suspected", "fever_cleared", "fever_unidentified",
             "quarantine_breach", "fever_cluster", "fever_unconfirmed"]  # fmt: skip
    for n in range(21):
        at = max(midnight, now - timedelta(hours=30)) + (now - midnight) * n / 25
        lines.append(alert_line(alert(n, kinds[n % len(kinds)], ("site-a", "site-b")[n % 2], at)))
    lines.append(
        alert_line(alert(99, "fever_confirmed", "site-a", midnight - timedelta(minutes=5)))
    )
    for kiosk, ago in (("k-1", 10), ("k-2", 75), ("k-9", 600)):
        lines.append(
            kiosk_health_line(
                KioskHeartbeat(
                    kiosk_id=kiosk, site_id="site-b" if kiosk == "k-9" else "site-a",
                    sent_at=now - timedelta(seconds=ago), spool_depth=0, scans_since_start=1,
                    decode_failures=0, version="t",
                )
            )
        )  # fmt: skip
    writer.write(lines, influx_settings.bucket)

    console = Console(ConsoleSettings(heartbeat_s=30), KafkaSettings(), influx_settings)
    screen = console.screen_data(now)

    # Passages per minute per site: the "Passages per site and gate" panel, gates summed.
    start = minute - timedelta(minutes=30)
    per_gate = grafana(writer, "Passages per site and gate", start, minute, "1m")
    expected: dict[str, list[int]] = {}
    for row in per_gate:
        site = row["gate"].split(" / ")[0]
        i = int((row["_time"] - start).total_seconds() // 60) - 1  # Grafana stamps window ends
        expected.setdefault(site, [0] * 30)[i] += int(row["_value"])
    assert screen["passages"] == expected
    assert sum(screen["passages"]["site-a"]) > 0 and len(screen["passages"]["site-b"]) == 30

    # Fevers today: the "Fever alerts" stat over today, split per site by the screen.
    total = grafana(writer, "Fever alerts", midnight, now + timedelta(seconds=1), "1m")
    assert sum(screen["fevers"].values()) == int(total[0]["_value"])
    fever_kinds = {"fever_confirmed", "fever_suspected", "fever_unidentified", "fever_cluster"}
    assert sum(screen["fevers"].values()) == sum(
        1 for n in range(21) if kinds[n % 7] in fever_kinds
    )

    # Silent kiosks: the "Kiosks: last heartbeat" table, older than two heartbeats.
    table = grafana(writer, "Kiosks: last heartbeat", now - timedelta(hours=1), now, "1m")
    grafana_silent = {
        (r["site_id"], r["kiosk_id"]) for r in table if (now - r["_time"]).total_seconds() > 60
    }
    assert {(s, k) for s, k, _at, _age in screen["silent"]} == grafana_silent
    assert grafana_silent == {("site-a", "k-2"), ("site-b", "k-9")}
    writer.close()
    console.influx.close()
