"""The InfluxDB sink against the real broker and the real InfluxDB.

Counts are checked with Flux against what the test produced: InfluxDB
overwrites a point with the same series and timestamp, so "as many points as
distinct events" means nothing was lost and nothing doubled, and the passage
sums show that re-delivered scans were not counted twice.

The fault tests run the sink as the ``scantrail sink influx`` subprocess while a
producer thread keeps publishing: one SIGKILLs the sink and restarts it, the
other stops a private InfluxDB (never the shared one) for 30 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from kafka import KafkaProducer

from ingest.simulate import GateWorld, simulate_events
from scantrail import contract
from scantrail.keys import dead_letter_key
from scantrail.pseudonyms import keyed_hash
from sinks.influx import InfluxSink
from sinks.sink_state import minute_of
from tests.factories import SHANGHAI, make_quarantine, make_reading
from tests.support import (
    PrivateInflux,
    consume_all,
    drain,
    free_port,
    service_env,
    start_scantrail,
)

pytestmark = pytest.mark.integration

START = datetime(2020, 2, 10, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
WINDOW = "range(start: 2020-02-09T00:00:00Z, stop: 2020-02-12T00:00:00Z)"


# --- helpers -----------------------------------------------------------------------


def simulated(seed: int, rate: float, seconds: float, kiosks: int = 4) -> list[contract.Event]:
    world = GateWorld(kiosks=kiosks, residents=200, seed=seed)
    return list(simulate_events(world, START, rate, timedelta(seconds=seconds)))


def of_kind(events: Iterable[contract.Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def heartbeats(events: list[contract.Event], every_s: int = 120) -> list[contract.KioskHeartbeat]:
    """Heartbeats of every kiosk seen in ``events``, every ``every_s`` seconds of the span."""
    scans = of_kind(events, contract.ScanEvent)
    kiosks = sorted({(s.kiosk_id, s.site_id) for s in scans})
    end = max(s.scanned_at for s in scans)
    out = []
    for kiosk_id, site_id in kiosks:
        at, n = START, 0
        while at <= end:
            last = [s.scanned_at for s in scans if s.kiosk_id == kiosk_id and s.scanned_at <= at]
            out.append(
                contract.KioskHeartbeat(
                    kiosk_id=kiosk_id,
                    site_id=site_id,
                    sent_at=at,
                    spool_depth=n % 3,
                    last_scan_at=max(last) if last else None,
                    scans_since_start=len(last),
                    decode_failures=0,
                    version="0.1.0",
                )
            )
            at, n = at + timedelta(seconds=every_s), n + 1
    return out


def fever_alerts(readings: list[contract.TemperatureReading]) -> list[contract.Alert]:
    """One fever_suspected alert per hot reading of an identified person."""
    hot = [r for r in readings if r.person_id and 37.3 <= r.celsius <= 42.0]
    return [
        contract.Alert(
            alert_id=contract.alert_id("fever_suspected", [r.event_id]),
            kind="fever_suspected",
            severity="warning",
            site_id=r.site_id,
            kiosk_id=r.kiosk_id,
            person_id=r.person_id,
            event_time=r.measured_at,
            raised_at=r.measured_at,
            evidence=[r.event_id],
        )
        for r in hot
    ]


def publish(kafka_settings: Any, events: Iterable[contract.Event]) -> int:
    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all", linger_ms=20)
    n = 0
    for event in events:
        producer.send(
            kafka_settings.topic(event.TOPIC), key=event.key(), value=contract.encode(event)
        )
        n += 1
    producer.flush()
    producer.close()
    return n


def publish_raw(kafka_settings: Any, items: Iterable[tuple[str, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all")
    for topic, value in items:
        producer.send(kafka_settings.topic(topic), key=b"k", value=value)
    producer.flush()
    producer.close()


def query(influx_settings: Any, flux: str) -> list[Any]:
    with InfluxDBClient(
        url=influx_settings.url,
        token=influx_settings.token.get_secret_value(),
        org=influx_settings.org,
        timeout=60_000,
    ) as client:
        return [r for table in client.query_api().query(flux) for r in table.records]


def flux_total(
    influx_settings: Any, measurement: str, field: str, fn: str, bucket: str = ""
) -> int:
    """count() or sum() of one field over the whole window, all series together."""
    flux = (
        f'from(bucket: "{bucket or influx_settings.bucket}") |> {WINDOW} '
        f'|> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{field}") '
        f"|> group() |> {fn}()"
    )
    return sum(int(r.get_value()) for r in query(influx_settings, flux))


def minute_count(influx_settings: Any, scan: contract.ScanEvent) -> int:
    minute = datetime.fromtimestamp(minute_of(scan.scanned_at), UTC)
    stop = minute + timedelta(seconds=1)
    flux = (
        f'from(bucket: "{influx_settings.bucket}") '
        f"|> range(start: {minute.isoformat().replace('+00:00', 'Z')}, "
        f"stop: {stop.isoformat().replace('+00:00', 'Z')}) "
        '|> filter(fn: (r) => r._measurement == "passages" and r._field == "count" '
        f'and r.site_id == "{scan.site_id}" and r.kiosk_id == "{scan.kiosk_id}" '
        f'and r.direction == "{scan.direction}")'
    )
    records = query(influx_settings, flux)
    assert len(records) <= 1, records
    return int(records[0].get_value()) if records else 0


def wait_for(check: Any, expected: int, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value >= expected:
            return
        time.sleep(2)
    tail = log.read_text()[-3000:] if log.exists() else ""
    pytest.fail(f"{what}: {value} of {expected} after {timeout_s} s\n{tail}")


# --- counts --------------------------------------------------------------------------


def get_json(port: int, path: str) -> tuple[int, Any]:
    """GET a sink's health endpoint (sinks.health)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_counts_in_influx_match_what_was_produced(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    events = simulated(seed=11, rate=3.0, seconds=600)
    quarantine = of_kind(events, contract.QuarantineRecord)
    scans = of_kind(events, contract.ScanEvent)
    readings = of_kind(events, contract.TemperatureReading)
    alerts = fever_alerts(readings)
    beats = heartbeats(events)
    assert quarantine and alerts and len(scans) > 1000
    watched = {q.person_id for q in quarantine} | {a.person_id for a in alerts}
    watched_readings = [r for r in readings if r.person_id in watched]
    assert 0 < len(watched_readings) < len(readings)
    state = tmp_path / "sink.db"

    # Who is watched must be known before their readings arrive: orders and alerts first.
    publish(kafka_settings, [*quarantine, *alerts])
    drain(
        InfluxSink(kafka_settings, influx_settings, state_path=state),
        {"quarantine/1": len(quarantine), "alert/1": len(alerts)},
    )
    duplicates = scans[::10]  # re-delivered: the same event_id published twice
    publish(kafka_settings, [*scans, *readings, *beats, *duplicates])
    drain(
        InfluxSink(kafka_settings, influx_settings, state_path=state),
        {
            "scan/1": len(scans) + len(duplicates),
            "temperature/1": len(readings),
            "kiosk/1": len(beats),
        },
    )

    assert flux_total(influx_settings, "temperature", "celsius", "count") == len(readings)
    assert flux_total(influx_settings, "alerts", "count", "count") == len(alerts)
    assert flux_total(influx_settings, "passages", "count", "sum") == len(scans)
    assert flux_total(influx_settings, "kiosk_health", "spool_depth", "count") == len(beats)
    assert flux_total(
        influx_settings,
        "watched_temperature",
        "celsius",
        "count",
        bucket=influx_settings.watched_bucket,
    ) == len(watched_readings)
    tagged = query(
        influx_settings,
        f'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: "{influx_settings.watched_bucket}", tag: "person_id", '
        "start: 2020-02-09T00:00:00Z, stop: 2020-02-12T00:00:00Z)",
    )
    assert {r.get_value() for r in tagged} == {r.person_id for r in watched_readings}
    # Nobody's person id is a tag in the main bucket (cardinality).
    keys = query(
        influx_settings,
        f'import "influxdata/influxdb/schema"\nschema.tagKeys(bucket: "{influx_settings.bucket}", '
        "start: 2020-02-09T00:00:00Z, stop: 2020-02-12T00:00:00Z)",
    )
    assert "person_id" not in {r.get_value() for r in keys}

    # A duplicate of an old scan changes nothing; a late scan for an old minute adds one.
    old = scans[5]
    before = minute_count(influx_settings, old)
    assert before >= 1
    late = old.model_copy(
        update={"event_id": f"{old.event_id}-late", "seq": 10**6, "scanned_at": old.scanned_at}
    )
    publish(kafka_settings, [old, late, old])
    drain(
        InfluxSink(kafka_settings, influx_settings, state_path=state),
        {"scan/1": 3},
    )
    assert minute_count(influx_settings, old) == before + 1
    assert flux_total(influx_settings, "passages", "count", "sum") == len(scans) + 1
    assert flux_total(influx_settings, "temperature", "celsius", "count") == len(readings)


# --- dead letters -------------------------------------------------------------------


def test_malformed_events_go_to_dead_letters_and_the_sink_goes_on(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    readings = of_kind(simulated(seed=12, rate=2.0, seconds=30), contract.TemperatureReading)
    first, later = readings[:20], readings[20:40]
    assert len(later) == 20
    impossible = json.loads(contract.encode(first[0]))
    impossible.update(event_id="impossible", celsius=150.0)
    backwards = {
        "schema": "quarantine/1",
        "person_id": "p-x-1",
        "site_id": "site-000",
        "starts_on": "2020-02-10",
        "ends_on": "2020-02-01",
        "reason": "ends before it starts",
    }
    malformed: list[tuple[str, bytes | None, str]] = [
        (contract.TEMPERATURES, b"{not json", "not JSON"),
        (contract.SCANS, b'{"schema": "scan/9", "event_id": "x"}', "unknown schema"),
        (contract.TEMPERATURES, json.dumps(impossible).encode(), "celsius"),
        (contract.QUARANTINE, json.dumps(backwards).encode(), "ends_on is before starts_on"),
        (contract.KIOSKS, b'{"kiosk_id": "k"}', "missing schema"),
    ]
    # A quarantine tombstone (the retention job's) is counted, not dead-lettered.
    tombstone = [(contract.QUARANTINE, None)]

    publish(kafka_settings, first)
    publish_raw(kafka_settings, [(topic, value) for topic, value, _ in malformed] + tombstone)
    publish(kafka_settings, later)
    sink = InfluxSink(kafka_settings, influx_settings, state_path=tmp_path / "sink.db")
    drain(sink, {"temperature/1": 40, "deadletter": len(malformed), "tombstone": 1})

    letters = [
        contract.decode_as(m.value, contract.DeadLetter)
        for m in consume_all(kafka_settings, contract.DEADLETTER, expect=len(malformed))
    ]
    assert len(letters) == len(malformed)
    # Personal topics' dead letters hold the value only as a keyed hash.
    key = dead_letter_key()
    by_value = {(d.topic, d.value_hash or d.value): d for d in letters}
    for topic, value, reason in malformed:
        personal = contract.is_personal_topic(topic)
        stored = keyed_hash(key, value) if personal and value is not None else value
        letter = by_value[(kafka_settings.topic(topic), stored)]
        assert (letter.value_b64 is None) == personal
        assert reason in letter.reason, letter.reason
        assert letter.offset is not None and letter.partition is not None
    assert flux_total(influx_settings, "temperature", "celsius", "count") == 40


# --- watched bucket backfill ----------------------------------------------------------

WIDE = "range(start: 2020-01-01T00:00:00Z, stop: 2020-03-01T00:00:00Z)"
Point = tuple[int, float, str, str, str]  # ns, celsius, event_id, site_id, kiosk_id


def person_points(influx_settings: Any, person_id: str, *, watched: bool) -> list[Point]:
    """A person's temperature points in the main or the watched bucket, with exact timestamps."""
    if watched:
        source = (
            f'from(bucket: "{influx_settings.watched_bucket}") |> {WIDE} '
            '|> filter(fn: (r) => r._measurement == "watched_temperature" '
            f'and r.person_id == "{person_id}") '
            '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        )
    else:
        source = (
            f'from(bucket: "{influx_settings.bucket}") |> {WIDE} '
            '|> filter(fn: (r) => r._measurement == "temperature" and (r._field == "celsius" '
            'or r._field == "event_id" or r._field == "person_id")) '
            '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") '
            f'|> filter(fn: (r) => r.person_id == "{person_id}")'
        )
    rows = query(influx_settings, source + " |> map(fn: (r) => ({r with ns: int(v: r._time)}))")
    return sorted((r["ns"], r["celsius"], r["event_id"], r["site_id"], r["kiosk_id"]) for r in rows)


def watched_people(influx_settings: Any) -> set[str]:
    rows = query(
        influx_settings,
        f'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: "{influx_settings.watched_bucket}", tag: "person_id", '
        "start: 2020-01-01T00:00:00Z, stop: 2020-03-01T00:00:00Z)",
    )
    return {r.get_value() for r in rows}


def curve(person_id: str, days: Iterable[int], hot_day: int | None = None) -> list[Any]:
    """Two readings a day (February 2020) at two kiosks; a fever at 08:00 on ``hot_day``.

    Times carry microseconds, and each point's timestamp nanoseconds of jitter
    (see ``timestamp_ns``): a backfill that lost either would double the points.
    """
    return [
        make_reading(
            person_id=person_id,
            kiosk_id=f"kiosk-{hour % 2 + 1}",
            measured_at=datetime(2020, 2, day, hour, tzinfo=SHANGHAI)
            + timedelta(microseconds=day * 1000 + 7),
            celsius=38.6 if (day, hour) == (hot_day, 8) else 36.4 + day / 100,
            method="forehead_ir" if hour == 8 else "wrist_ir",
        )
        for day in days
        for hour in (8, 18)
    ]


def in_days(readings: list[Any], first: int, stop: int) -> list[Any]:
    return [r for r in readings if first <= r.measured_at.astimezone(SHANGHAI).day < stop]


@pytest.mark.timeout(300)
def test_a_fever_alert_backfills_the_earlier_days_exactly_once(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    person = "p-fever-1"
    readings = curve(person, [3, 5, 7, 8, 9, 10], hot_day=10)
    others = curve("p-other-1", [5, 10])
    alerts = fever_alerts(readings)
    assert len(alerts) == 1 and alerts[0].person_id == person
    state = tmp_path / "sink.db"

    # Stored before anyone is watched: nothing goes to the watched bucket yet.
    publish(kafka_settings, [*readings, *others])
    drain(
        InfluxSink(kafka_settings, influx_settings, state_path=state),
        {"temperature/1": len(readings) + len(others)},
    )
    main = person_points(influx_settings, person, watched=False)
    assert len(main) == len(readings) == 12
    assert person_points(influx_settings, person, watched=True) == []

    # The alert (produced after the hot reading) backfills all 12, the hot one included.
    publish(kafka_settings, alerts)
    sink = InfluxSink(kafka_settings, influx_settings, state_path=state)
    drain(sink, {"alert/1": 1, "backfilled_points": 12})
    assert sink.stats.counts["backfill_queries"] == 2  # find the points, fetch their fields
    assert person_points(influx_settings, person, watched=True) == main
    assert max(celsius for _, celsius, *_ in main) == 38.6
    assert watched_people(influx_settings) == {person}

    # Re-delivered from scratch (new group, new state): the same points, none doubled,
    # whether this run sees the alert before or after the readings.
    rerun = InfluxSink(
        kafka_settings, influx_settings, group_id="rerun", state_path=tmp_path / "rerun.db"
    )
    drain(rerun, {"temperature/1": len(readings) + len(others), "alert/1": 1})
    assert person_points(influx_settings, person, watched=True) == main
    assert person_points(influx_settings, person, watched=False) == main
    assert watched_people(influx_settings) == {person}


@pytest.mark.timeout(300)
def test_a_backfill_of_one_point_is_stored(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    """A fever on a person's only reading: the backfill fetches one point, which Flux's
    union refuses (it needs two streams), so that chunk is a plain read."""
    person = "p-once-1"
    readings = curve(person, [10], hot_day=10)[:1]
    alerts = fever_alerts(readings)
    assert len(alerts) == 1
    state = tmp_path / "sink.db"
    publish(kafka_settings, readings)
    drain(InfluxSink(kafka_settings, influx_settings, state_path=state), {"temperature/1": 1})

    publish(kafka_settings, alerts)
    drain(
        InfluxSink(kafka_settings, influx_settings, state_path=state),
        {"alert/1": 1, "backfilled_points": 1},
    )
    main = person_points(influx_settings, person, watched=False)
    assert len(main) == 1
    assert person_points(influx_settings, person, watched=True) == main


@pytest.mark.timeout(300)
def test_a_quarantine_after_its_readings_backfills_the_quarantine_days(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    person = "p-quar-1"
    # Quarantined 3-11 February (ends_on is exclusive); readings before, during, after.
    readings = curve(person, [1, 4, 6, 8, 11, 13])
    quarantine = make_quarantine(
        person_id=person, starts_on=date(2020, 2, 3), ends_on=date(2020, 2, 12)
    )
    inside = in_days(readings, 3, 12)
    assert len(inside) == 8
    state = tmp_path / "sink.db"
    publish(kafka_settings, [*readings, *curve("p-other-2", [4])])
    drain(InfluxSink(kafka_settings, influx_settings, state_path=state), {"temperature/1": 14})

    publish(kafka_settings, [quarantine])
    sink = InfluxSink(kafka_settings, influx_settings, state_path=state)
    sink.quiet_wait_s = 0.0  # every batch is awaited the long way: polling, paused
    drain(sink, {"quarantine/1": 1, "backfilled_points": 8})
    main = person_points(influx_settings, person, watched=False)
    in_quarantine = {r.event_id for r in inside}
    assert person_points(influx_settings, person, watched=True) == [
        p for p in main if p[2] in in_quarantine
    ]

    # Later readings: one inside the quarantine goes live, one after its end does not.
    late = [*curve(person, [9])[:1], *curve(person, [14])[:1]]
    publish(kafka_settings, late)
    sink = InfluxSink(kafka_settings, influx_settings, state_path=state)
    drain(sink, {"temperature/1": 2})
    assert sink.stats.counts["backfilled_points"] == 0
    watched = person_points(influx_settings, person, watched=True)
    assert len(watched) == 9 and {p[2] for p in watched} == in_quarantine | {late[0].event_id}


@pytest.mark.timeout(300)
def test_an_old_quarantine_backfills_from_the_day_it_was_published(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    """Replayed years later, a quarantine still covers the 14 days before its issue.

    Quarantined 1-29 February, the order published on 20 February: the watch
    reaches back to 6 February. Judged by the sink's own clock (2026), it
    would have reached back only to 15 February (14 days before the end).
    """
    from kafka import KafkaProducer

    person = "p-quar-3"
    readings = curve(person, [2, 5, 6, 10, 16, 19])
    quarantine = make_quarantine(
        person_id=person, starts_on=date(2020, 2, 1), ends_on=date(2020, 3, 1)
    )
    publish(kafka_settings, readings)
    state = tmp_path / "sink.db"
    drain(InfluxSink(kafka_settings, influx_settings, state_path=state), {"temperature/1": 12})

    producer = KafkaProducer(bootstrap_servers=kafka_settings.servers, acks="all")
    issued = datetime(2020, 2, 20, 9, tzinfo=SHANGHAI)
    producer.send(
        kafka_settings.topic(contract.QUARANTINE),
        key=quarantine.key(),
        value=contract.encode(quarantine),
        timestamp_ms=int(issued.timestamp() * 1000),
    )
    producer.flush()
    producer.close()
    expected = in_days(readings, 6, 29)
    assert len(expected) == 8
    sink = InfluxSink(kafka_settings, influx_settings, state_path=state)
    drain(sink, {"quarantine/1": 1, "backfilled_points": len(expected)})
    watched = person_points(influx_settings, person, watched=True)
    assert {p[2] for p in watched} == {r.event_id for r in expected}


@pytest.mark.timeout(300)
def test_a_watch_after_readings_in_the_same_poll_still_covers_them(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    """The sink's own consumer polls the records; they are handed over readings first."""
    person = "p-quar-2"
    readings = curve(person, [4, 5])
    quarantine = make_quarantine(
        person_id=person, starts_on=date(2020, 2, 3), ends_on=date(2020, 2, 12)
    )
    publish(kafka_settings, [*readings, quarantine])
    sink = InfluxSink(kafka_settings, influx_settings, state_path=tmp_path / "sink.db")
    try:
        polled: dict[Any, list[Any]] = {}
        deadline = time.monotonic() + 60
        while sum(map(len, polled.values())) < len(readings) + 1:
            assert time.monotonic() < deadline, f"polled only {polled}"
            for tp, messages in sink.consumer.poll(timeout_s=0.5).items():
                polled.setdefault(tp, []).extend(messages)
        temperatures = kafka_settings.topic(contract.TEMPERATURES)
        ordered = dict(sorted(polled.items(), key=lambda item: item[0][0] != temperatures))
        assert next(iter(ordered))[0] == temperatures
        sink._handle(ordered)
        sink._settle()
        counts = dict(sink.stats.counts)
    finally:
        sink.close()
    # The readings were not in the main bucket when the backfill ran: the live path
    # wrote them, because the watch was applied before any reading of the poll.
    assert counts["backfilled_points"] == 0 and counts["backfills"] == 1
    assert person_points(influx_settings, person, watched=True) == person_points(
        influx_settings, person, watched=False
    )
    assert len(person_points(influx_settings, person, watched=True)) == 4


@pytest.mark.timeout(300)
def test_a_backfill_recorded_before_a_crash_is_stored_after_the_restart(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    """The watch is in the sink state when the sink dies, so the alert is no longer new."""
    from influxdb_client.rest import ApiException

    from sinks.sink_state import SinkState

    person = "p-crash-1"
    readings = curve(person, [6, 7, 8], hot_day=8)
    alerts = fever_alerts(readings)
    state = tmp_path / "sink.db"
    publish(kafka_settings, readings)
    drain(InfluxSink(kafka_settings, influx_settings, state_path=state), {"temperature/1": 6})

    # A sink whose watched bucket vanishes after it started: the backfill is queried,
    # its write is refused (404, not retried), and the sink dies before committing.
    gone = influx_settings.model_copy(update={"watched_bucket": f"{influx_settings.bucket}_gone"})
    doomed = InfluxSink(kafka_settings, gone, state_path=state)
    with InfluxDBClient(url=gone.url, token=gone.token.get_secret_value(), org=gone.org) as client:
        buckets = client.buckets_api()
        buckets.delete_bucket(buckets.find_bucket_by_name(gone.watched_bucket))
    publish(kafka_settings, alerts)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            doomed.run(idle_exit_s=60)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the sink did not die"
    assert len(errors) == 1 and isinstance(errors[0], ApiException), errors
    assert errors[0].status == 404
    left = SinkState(state)
    try:
        assert person in left.watched()
        assert [t.person_id for t in left.pending_backfills()] == [person]
    finally:
        left.close()

    # Restarted: the alert is re-delivered but plans nothing; the pending row does the work.
    sink = InfluxSink(kafka_settings, influx_settings, state_path=state)
    drain(sink, {"alert/1": 1, "backfilled_points": 6})
    assert person_points(influx_settings, person, watched=True) == person_points(
        influx_settings, person, watched=False
    )
    assert len(person_points(influx_settings, person, watched=True)) == 6
    after = SinkState(state)
    try:
        assert after.pending_backfills() == []
    finally:
        after.close()


# --- faults -----------------------------------------------------------------------


class Producer(threading.Thread):
    """Publishes events in chunks with pauses, so the stream is live during a fault."""

    def __init__(
        self, kafka_settings: Any, events: list[contract.Event], chunk: int, pause_s: float
    ):
        super().__init__(daemon=True)
        self.kafka_settings, self.events, self.chunk, self.pause_s = (
            kafka_settings,
            events,
            chunk,
            pause_s,
        )
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.kafka_settings.servers, acks="all", linger_ms=20
            )
            for i in range(0, len(self.events), self.chunk):
                for event in self.events[i : i + self.chunk]:
                    producer.send(
                        self.kafka_settings.topic(event.TOPIC),
                        key=event.key(),
                        value=contract.encode(event),
                    )
                producer.flush()
                self.sent = min(len(self.events), i + self.chunk)
                time.sleep(self.pause_s)
            producer.close()
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def live_stream(kafka_settings: Any) -> Iterator[tuple[list[contract.Event], int, int]]:
    """About 24,000 scans and readings, without quarantine orders (order across topics
    is not guaranteed, so watched curves are checked in the counts test only)."""
    events = [
        e
        for e in simulated(seed=13, rate=20.0, seconds=600)
        if not isinstance(e, contract.QuarantineRecord)
    ]
    yield (
        events,
        len(of_kind(events, contract.ScanEvent)),
        len(of_kind(events, contract.TemperatureReading)),
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sink_killed_mid_stream_loses_and_doubles_nothing(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path, live_stream: Any
) -> None:
    events, n_scans, n_readings = live_stream
    env = service_env(kafka_settings, influx_settings, SCANTRAIL_STATE=str(tmp_path / "state"))
    log = tmp_path / "sink.log"
    producer = Producer(kafka_settings, events, chunk=2000, pause_s=0.7)
    producer.start()
    sink = start_scantrail("sink", "influx", "--group", "g", env=env, log=log)
    try:
        wait_for(
            lambda: flux_total(influx_settings, "temperature", "celsius", "count"),
            1,
            120,
            "points before the kill",
            log,
        )
        assert producer.is_alive(), "the stream should still be running at the kill"
        sink.send_signal(signal.SIGKILL)
        assert sink.wait(timeout=30) == -signal.SIGKILL
        killed_at = producer.sent
        sink = start_scantrail("sink", "influx", "--group", "g", env=env, log=log)
        producer.join(timeout=180)
        assert producer.error is None and producer.sent == len(events)
        assert killed_at < len(events)
        wait_for(
            lambda: flux_total(influx_settings, "temperature", "celsius", "count"),
            n_readings,
            180,
            "temperature points",
            log,
        )
        wait_for(
            lambda: flux_total(influx_settings, "passages", "count", "sum"),
            n_scans,
            120,
            "passages",
            log,
        )
    finally:
        stop_process(sink)
        producer.join(timeout=10)
    assert flux_total(influx_settings, "temperature", "celsius", "count") == n_readings
    assert flux_total(influx_settings, "passages", "count", "sum") == n_scans
    stats = json.loads(log.read_text().strip().splitlines()[-1])
    assert stats["scan/1"] + stats["temperature/1"] >= 1  # the restarted sink did the rest


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_influx_down_for_30_s_loses_and_doubles_nothing(
    kafka_settings: Any, tmp_path: Path, live_stream: Any
) -> None:
    events, n_scans, n_readings = live_stream
    influxd = PrivateInflux(tmp_path / "influx")
    influxd.start()
    try:
        influx = influxd.settings()
        env = service_env(kafka_settings, influx, SCANTRAIL_STATE=str(tmp_path / "state"))
        log = tmp_path / "sink.log"
        producer = Producer(kafka_settings, events, chunk=1000, pause_s=1.0)
        producer.start()
        port = free_port()
        sink = start_scantrail("sink", "influx", "--health-port", str(port), env=env, log=log)
        try:
            wait_for(
                lambda: flux_total(influx, "temperature", "celsius", "count"),
                1,
                120,
                "points before the outage",
                log,
            )
            influxd.stop()
            down_at = producer.sent
            time.sleep(30)
            assert producer.sent > down_at, "events kept arriving during the outage"
            assert sink.poll() is None, "the sink must survive the outage"
            # Waiting out an outage is healthy (a restart would not help), and says so.
            status, health = get_json(port, "/healthz")
            assert (status, health["ok"], health["retrying"]) == (200, True, True), health
            influxd.start()
            producer.join(timeout=180)
            assert producer.error is None and producer.sent == len(events)
            wait_for(
                lambda: flux_total(influx, "temperature", "celsius", "count"),
                n_readings,
                180,
                "temperature points",
                log,
            )
            wait_for(
                lambda: flux_total(influx, "passages", "count", "sum"),
                n_scans,
                120,
                "passages",
                log,
            )
            status, health = get_json(port, "/healthz")
            assert (status, health["retrying"]) == (200, False), health
            assert health["last_stored_age_s"] is not None
            assert get_json(port, "/stats")[1]["temperature/1"] >= n_readings
        finally:
            stop_process(sink)
            producer.join(timeout=10)
        assert flux_total(influx, "temperature", "celsius", "count") == n_readings
        assert flux_total(influx, "passages", "count", "sum") == n_scans
        stats = json.loads(log.read_text().strip().splitlines()[-1])
        assert stats.get("write_retries", 0) >= 1, "the sink never saw the outage"
    finally:
        influxd.stop()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sigterm_while_influx_is_down_stops_promptly_and_loses_nothing(
    kafka_settings: Any, tmp_path: Path, live_stream: Any
) -> None:
    """An operator stopping a sink that is waiting out an outage must not wait for InfluxDB."""
    events, n_scans, n_readings = live_stream
    influxd = PrivateInflux(tmp_path / "influx")
    influxd.start()
    try:
        influx = influxd.settings()
        env = service_env(kafka_settings, influx, SCANTRAIL_STATE=str(tmp_path / "state"))
        producer = Producer(kafka_settings, events, chunk=2000, pause_s=0.5)
        producer.start()
        first_log = tmp_path / "sink-1.log"
        sink = start_scantrail("sink", "influx", env=env, log=first_log)
        try:
            wait_for(
                lambda: flux_total(influx, "temperature", "celsius", "count"),
                1,
                120,
                "points before the outage",
                first_log,
            )
            influxd.stop()
            time.sleep(10)  # the sink is now retrying a batch with backoff
            assert sink.poll() is None, "the sink must wait out the outage, not exit"
            asked = time.monotonic()
            sink.send_signal(signal.SIGTERM)
            sink.wait(timeout=60)
            took = time.monotonic() - asked
        finally:
            stop_process(sink)
        assert took < 15, f"SIGTERM during an outage took {took:.1f} s"
        stats = json.loads(first_log.read_text().strip().splitlines()[-1])
        assert stats.get("write_retries", 0) >= 1, "the sink never saw the outage"
        assert stats.get("stopped_unwritten", 0) == 1, stats
        producer.join(timeout=180)
        assert producer.error is None and producer.sent == len(events)
        influxd.start()
        second_log = tmp_path / "sink-2.log"
        sink = start_scantrail("sink", "influx", env=env, log=second_log)
        try:
            wait_for(
                lambda: flux_total(influx, "temperature", "celsius", "count"),
                n_readings,
                180,
                "temperature points",
                second_log,
            )
            wait_for(
                lambda: flux_total(influx, "passages", "count", "sum"),
                n_scans,
                120,
                "passages",
                second_log,
            )
        finally:
            stop_process(sink)
        assert flux_total(influx, "temperature", "celsius", "count") == n_readings
        assert flux_total(influx, "passages", "count", "sum") == n_scans
    finally:
        influxd.stop()


@pytest.mark.timeout(420)
def test_a_broker_restart_under_a_running_sink_loses_and_doubles_nothing(
    influx_settings: Any, tmp_path: Path
) -> None:
    """The broker (a private one) stops for 15 s mid-stream and comes back.

    The sink keeps running through it: nothing is lost, nothing doubled, and
    its offsets end committed, so a restart of the sink reads nothing again.
    """
    from scantrail.broker import ensure_topics
    from scantrail.settings import KafkaSettings
    from tests.support import PrivateKafka

    broker = PrivateKafka(tmp_path / "broker")
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, partitions=2, retention_days=0)
        ensure_topics(kafka)
        start = datetime(2020, 2, 10, 8, tzinfo=SHANGHAI)
        readings = [
            make_reading(measured_at=start + timedelta(seconds=i), celsius=36.0 + i / 10_000)
            for i in range(3000)
        ]
        first, second = readings[:1500], readings[1500:]
        publish(kafka, first)
        sink = InfluxSink(kafka, influx_settings, state_path=tmp_path / "sink.db")
        runner = threading.Thread(target=sink.run, kwargs={"idle_exit_s": 240}, daemon=True)
        runner.start()
        deadline = time.monotonic() + 120
        while sink.stats.counts["points"] < len(first):
            assert time.monotonic() < deadline and runner.is_alive(), dict(sink.stats.counts)
            time.sleep(0.2)
        broker.stop()
        time.sleep(15)
        assert runner.is_alive(), "the sink must ride out a broker restart"
        broker.start()
        publish(kafka, second)
        deadline = time.monotonic() + 180
        while sink.stats.counts["points"] < len(first) + len(second):
            assert time.monotonic() < deadline and runner.is_alive(), dict(sink.stats.counts)
            time.sleep(0.2)
        sink.stop()
        runner.join(timeout=60)
        assert not runner.is_alive()
        time.sleep(1)
        stored = flux_total(influx_settings, "temperature", "celsius", "count")
        assert stored == len(first) + len(second)
        # Everything handled is committed: the same group starts with nothing to read.
        again = InfluxSink(kafka, influx_settings, state_path=tmp_path / "sink.db")
        again.run(idle_exit_s=10)
        assert again.stats.counts["points"] == 0, dict(again.stats.counts)
    finally:
        broker.stop()
