"""The thin slice end to end: simulated gates -> Kafka -> worker -> alerts, sink -> InfluxDB.

Expectations are recomputed from the same deterministic simulation, so the
test knows exactly which readings exist and which are hot.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from influxdb_client import InfluxDBClient
from kafka import KafkaProducer

from ingest.simulate import GateWorld, simulate_events
from processors.screener import Screener
from scantrail import contract
from scantrail.keys import dead_letter_key
from scantrail.pseudonyms import keyed_hash
from tests.support import (
    consume_all,
    drain_with_sink,
    free_port,
    scantrail_cmd,
    service_env,
    start_scantrail,
)

pytestmark = pytest.mark.integration

START = datetime(2020, 2, 10, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
SEED, RATE, DURATION, KIOSKS, RESIDENTS = 7, 50.0, 40.0, 4, 120

MALFORMED = [
    b"{not json",
    b'{"schema": "temperature/9", "event_id": "x"}',
    json.dumps(
        {
            "schema": "temperature/1",
            "event_id": "bad-time",
            "kiosk_id": "k",
            "site_id": "s",
            "measured_at": "2020-02-10T08:00:00",  # no offset
            "celsius": 36.6,
            "method": "forehead_ir",
        }
    ).encode(),
    b"\xff\xfe not utf-8",
]


def simulated() -> list[contract.Event]:
    world = GateWorld(kiosks=KIOSKS, residents=RESIDENTS, seed=SEED)
    return list(simulate_events(world, START, RATE, timedelta(seconds=DURATION)))


def flux_count(influx_settings, flux: str) -> int:  # type: ignore[no-untyped-def]
    with InfluxDBClient(
        url=influx_settings.url,
        token=influx_settings.token.get_secret_value(),
        org=influx_settings.org,
    ) as client:
        tables = client.query_api().query(flux)
        return sum(int(record.get_value()) for table in tables for record in table.records)


def test_gates_to_alerts_and_influx(kafka_settings, influx_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = service_env(
        kafka_settings,
        influx_settings,
        SCANTRAIL_WORKER_APP_ID=f"{kafka_settings.namespace}worker",
        SCANTRAIL_WORKER_WEB_PORT=str(free_port()),
        SCANTRAIL_WORKER_DATA_DIR=str(tmp_path / "worker"),
    )
    events = simulated()
    readings = [e for e in events if isinstance(e, contract.TemperatureReading)]
    scans = [e for e in events if isinstance(e, contract.ScanEvent)]
    hot = {r.event_id for r in readings if 37.3 <= r.celsius <= 42.0}
    assert hot, "the simulation should contain fevers"
    # The live worker must reach the verdicts of the offline rules on the same events.
    expected = {a.alert_id: a for a in Screener().run(events)}  # type: ignore[arg-type]

    sim = subprocess.run(
        scantrail_cmd(
            "simulate",
            "--profile",
            "plain",
            "--kiosks",
            str(KIOSKS),
            "--residents",
            str(RESIDENTS),
            "--rate",
            str(RATE),
            "--duration",
            str(DURATION),
            "--seed",
            str(SEED),
            "--start",
            START.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "--fast",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    published = json.loads(sim.stdout.strip().splitlines()[-1])["published"]
    assert published["temperature/1"] == len(readings)

    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all")
    for raw in MALFORMED:
        producer.send(kafka_settings.topic(contract.TEMPERATURES), key=b"k", value=raw)
    producer.flush()
    producer.close()

    worker = start_scantrail("worker", env=env, log=tmp_path / "worker.log")
    live_sink = start_scantrail(  # alongside the worker, as in production
        "sink", "influx", "--idle-exit", "15", env=env, log=tmp_path / "sink.log"
    )
    try:
        got: dict[str, contract.Alert] = {}
        deadline = time.monotonic() + 150
        while len(got) < len(expected) and time.monotonic() < deadline:
            for m in consume_all(kafka_settings, contract.ALERTS, timeout_s=10):
                alert = contract.decode_as(m.value, contract.Alert)
                got[alert.alert_id] = alert
        log = (tmp_path / "worker.log").read_text()[-3000:]
        assert {k: a.to_dict() for k, a in got.items()} == {
            k: a.to_dict() for k, a in expected.items()
        }, log
        # Every hot reading is the evidence of some alert.
        assert hot <= {ev for a in got.values() for ev in a.evidence}

    finally:
        worker.terminate()
        worker.wait(timeout=60)
    # Every alert is on its topic now; the sink drains all topics, then exits when idle.
    drain_with_sink(env, tmp_path / "sink.log")
    try:  # the live sink stops by itself once idle, having shared the group's work
        assert live_sink.wait(timeout=120) == 0, (tmp_path / "sink.log").read_text()[-3000:]
    finally:
        if live_sink.poll() is None:
            live_sink.kill()

    dead = consume_all(kafka_settings, contract.DEADLETTER, expect=2 * len(MALFORMED))
    letters = [contract.decode(m.value) for m in dead]
    assert all(isinstance(d, contract.DeadLetter) and d.reason for d in letters)
    # The worker and the sink each dead-letter every malformed message once.
    # Temperatures are a personal topic: the letters hold each value as its keyed hash.
    hashes = sorted(d.value_hash for d in letters)  # type: ignore[attr-defined]
    assert hashes == sorted(keyed_hash(dead_letter_key(), raw) for raw in MALFORMED * 2)

    window = "range(start: 2020-02-09T00:00:00Z, stop: 2020-02-11T00:00:00Z)"
    bucket = influx_settings.bucket
    points = flux_count(
        influx_settings,
        f'from(bucket: "{bucket}") |> {window} '
        '|> filter(fn: (r) => r._measurement == "temperature" and r._field == "celsius") '
        "|> group() |> count()",
    )
    assert points == len(readings)
    hot_points = flux_count(
        influx_settings,
        f'from(bucket: "{bucket}") |> {window} '
        '|> filter(fn: (r) => r._measurement == "alerts" and r._field == "count") '
        "|> group() |> count()",
    )
    assert hot_points == len(expected)
    passages = flux_count(
        influx_settings,
        f'from(bucket: "{bucket}") |> {window} '
        '|> filter(fn: (r) => r._measurement == "passages" and r._field == "count") '
        "|> group() |> sum()",
    )
    assert passages == len(scans)

    # Re-delivery rewrites the same points: a second sink group reads everything again.
    again = subprocess.run(
        scantrail_cmd("sink", "influx", "--group", "replay-check", "--idle-exit", "8"),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    assert json.loads(again.stdout.strip().splitlines()[-1])["scan/1"] == len(scans)
    time.sleep(1)
    assert flux_count(
        influx_settings,
        f'from(bucket: "{bucket}") |> {window} '
        '|> filter(fn: (r) => r._measurement == "temperature" and r._field == "celsius") '
        "|> group() |> count()",
    ) == len(readings)
