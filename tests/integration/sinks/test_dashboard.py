"""The Grafana big-screen dashboard: well-formed, and every query answers on a simulated day.

The integration test writes a simulated day of gates (scans, readings, the
offline screener's alerts, kiosk heartbeats) through the real sink into a
test bucket, then runs every panel's Flux query against the real InfluxDB with
Grafana's variables filled in, so a panel that names a wrong measurement, field
or tag comes back empty and fails.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, drain

DASHBOARD = ROOT / "deploy" / "grafana" / "scantrail-dashboard.json"
START = datetime(2020, 2, 10, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
RANGE = {"start": "2020-02-09T23:00:00Z", "stop": "2020-02-11T01:00:00Z", "window": "20m"}
MEASUREMENTS = {
    "temperature",
    "alerts",
    "passages",
    "kiosk_health",
    "watched_temperature",
    "deadletters",
}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title + refId, Flux query) of every panel target."""
    return [
        (f"{panel['title']} [{target['refId']}]", target["query"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def substitute(query: str, bucket: str) -> str:
    """Fill in what Grafana provides: the bucket variable and the v record."""
    preamble = (
        f"v = {{timeRangeStart: {RANGE['start']}, timeRangeStop: {RANGE['stop']}, "
        f"windowPeriod: {RANGE['window']}}}\n"
    )
    filled = query.replace("${bucket}", bucket)
    assert "${" not in filled, f"unknown variable in {filled}"
    return preamble + filled


# --- unit: the JSON itself ---------------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    dashboard = load()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["bucket"]["current"]["value"] == "scantrail"
    assert variables["datasource"]["query"] == "influxdb"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    shown = [p for p in panels if p["type"] != "row"]
    assert len(shown) >= 8
    for panel in shown:
        assert panel["title"].strip()
        assert panel["datasource"] == {"type": "influxdb", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            query = target["query"]
            assert target["refId"] and target["datasource"]["type"] == "influxdb"
            assert 'from(bucket: "${bucket}")' in query, panel["title"]
            assert "range(start: v.timeRangeStart, stop: v.timeRangeStop)" in query
            used = set(re.findall(r'r\._measurement == "([a-z_]+)"', query))
            assert used and used <= MEASUREMENTS, (panel["title"], used)
    titles = " ".join(p["title"].lower() for p in shown)
    for topic in (
        "passages", "temperature", "fever", "quarantine", "spool", "last scan", "dead letters"
    ):  # fmt: skip
        assert topic in titles, topic


# --- integration: every query answers on a simulated day ---------------------------------


def heartbeats(kiosks: dict[str, str], every: timedelta) -> list[Any]:
    from scantrail.contract import KioskHeartbeat

    out = []
    for n in range(int(timedelta(hours=24) / every)):
        at = START + n * every
        for kiosk_id, site_id in sorted(kiosks.items()):
            out.append(
                KioskHeartbeat(
                    kiosk_id=kiosk_id,
                    site_id=site_id,
                    sent_at=at,
                    spool_depth=n % 4,
                    last_scan_at=at - timedelta(seconds=20 + n),
                    scans_since_start=n * 10,
                    decode_failures=n // 3,
                    version="0.1.0",
                )
            )
    return out


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_every_panel_query_returns_rows_for_a_simulated_day(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    from collections import Counter

    from influxdb_client import InfluxDBClient
    from influxdb_client.rest import ApiException
    from kafka import KafkaProducer

    from ingest.simulate import GateWorld, simulate_events
    from processors.screener import Screener
    from scantrail import contract
    from sinks.influx import InfluxSink

    events = list(
        simulate_events(GateWorld(kiosks=6, residents=300, seed=5), START, 0.2, timedelta(hours=24))
    )
    alerts = Screener().run(events)  # type: ignore[arg-type]
    kinds = Counter(a.kind for a in alerts)
    assert kinds["quarantine_breach"] and kinds["fever_suspected"], kinds
    kiosks = {e.kiosk_id: e.site_id for e in events if isinstance(e, contract.ScanEvent)}
    beats = heartbeats(kiosks, timedelta(hours=2))
    everything: list[contract.Event] = [*events, *alerts, *beats]
    expect = Counter(e.SCHEMA for e in everything)

    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all", linger_ms=20)
    for event in everything:
        producer.send(
            kafka_settings.topic(event.TOPIC), key=event.key(), value=contract.encode(event)
        )
    bad = [b"not json", b'{"schema": "scan/1"}']  # the dead-letter panel needs some
    for value in bad:
        producer.send(
            kafka_settings.topic(contract.SCANS),
            value=value,
            timestamp_ms=int(START.timestamp() * 1000) + 3600_000,
        )
    expect["deadletter"] = len(bad)
    producer.flush()
    producer.close()

    sink = InfluxSink(kafka_settings, influx_settings, state_path=tmp_path / "sink.db")
    drain(sink, dict(expect), timeout_s=240)

    empty: list[str] = []
    with InfluxDBClient(
        url=influx_settings.url,
        token=influx_settings.token.get_secret_value(),
        org=influx_settings.org,
        timeout=60_000,
    ) as client:
        api = client.query_api()
        checked = 0
        for name, query in targets(load()):
            try:
                tables = api.query(substitute(query, influx_settings.bucket))
            except ApiException as exc:
                empty.append(f"{name}: {exc.body}")
                continue
            if sum(len(t.records) for t in tables) == 0:
                empty.append(name)
            checked += 1
    assert checked >= 10
    assert not empty, f"panels with no rows or a failing query: {empty}"
