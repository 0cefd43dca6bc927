"""No bad byte stops the alerts: a hostile corpus through every consumer, as real processes.

The worker, ``scantrail sink influx`` and ``scantrail sink pager`` run as
subprocesses against the real broker and InfluxDB while hostile records,
interleaved with good ones, arrive on every input topic. Each hostile record
must be dead-lettered once by each consumer of its topic, with its reason;
every good record after it must be processed (its point in InfluxDB, its
alert paged); no process may exit; the committed offsets must pass the bad
records.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from scantrail import contract
from scantrail.contract import (
    Alert,
    KioskHeartbeat,
    QuarantineRecord,
    ScanEvent,
    TemperatureReading,
)
from scantrail.errors import ContractError
from tests.integration.processors.test_live_screening import worker_env
from tests.integration.sinks.test_pager import (
    PagerProcess,
    Receiver,
    officer,
    write_roster,
)
from tests.support import consume_all, free_port, service_env, start_scantrail

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
SITE = "site-1"  # the pager roster's site

# Who reads which input topic (the DeadLetter record does not say who wrote it,
# so each hostile record is expected once per consumer of its topic).
CONSUMERS = {
    contract.SCANS: {"worker", "sink"},
    contract.TEMPERATURES: {"worker", "sink"},
    contract.QUARANTINE: {"worker", "sink"},
    contract.KIOSKS: {"sink"},
    contract.ALERTS: {"sink", "pager"},
}


def reading(n: int, celsius: float = 36.5) -> TemperatureReading:
    return TemperatureReading(
        event_id=f"good-t{n}",
        kiosk_id="kiosk-1",
        site_id=SITE,
        measured_at=NOW + timedelta(seconds=n),
        celsius=celsius,
        method="forehead_ir",
        person_id=f"p-good-{n}",
    )


def scan(n: int) -> ScanEvent:
    return ScanEvent(
        event_id=f"good-s{n}",
        kiosk_id="kiosk-1",
        site_id=SITE,
        direction="in",
        person_id=f"p-good-{n}",
        pass_status="valid",
        scanned_at=NOW + timedelta(seconds=n),
        seq=n,
    )


def quarantine(n: int) -> QuarantineRecord:
    return QuarantineRecord(
        person_id=f"p-q-{n}",
        site_id=SITE,
        starts_on=NOW.date(),
        ends_on=NOW.date() + timedelta(days=14),
        reason="returned from another city",
    )


def beat(n: int) -> KioskHeartbeat:
    return KioskHeartbeat(
        kiosk_id=f"kiosk-{n}",
        site_id=SITE,
        sent_at=NOW + timedelta(seconds=n),
        spool_depth=0,
        scans_since_start=n,
        decode_failures=0,
        version="0.1.0",
    )


def alert(n: int) -> Alert:
    return Alert(
        alert_id=f"fever_confirmed:poison{n}",
        kind="fever_confirmed",
        severity="critical",
        site_id=SITE,
        person_id=f"p-good-{n}",
        event_time=NOW + timedelta(seconds=n),
        raised_at=NOW + timedelta(seconds=n + 1),
        evidence=[f"t{n}"],
        detail={"celsius": [38.1, 38.3]},
    )


def splice(event: contract.Event, field: str, token: str) -> bytes:
    """The event's JSON with one field's value replaced by a raw JSON token."""
    body = event.to_dict()
    body[field] = "@@"
    return json.dumps(body).replace('"@@"', token, 1).encode()


def hostile_corpus() -> dict[str, list[bytes | None]]:
    """Per topic: records no consumer may choke on (the issue's cases and more)."""
    r, s, q, b, a = reading(900), scan(900), quarantine(900), beat(900), alert(900)
    common: list[bytes | None] = [
        b"",
        b"\xff\xfe\x00garbage",
        b"[" * 100_000 + b"]" * 100_000,
        b"[1, 2, 3]",
        b'{"schema": "nothing/9"}',
        b'{"no": "schema"}',
        b"NaN",
    ]
    return {
        contract.TEMPERATURES: [
            *common,
            splice(r, "celsius", "9" * 5000),  # the first case
            splice(r, "celsius", "NaN"),
            splice(r, "celsius", "1e999"),
            splice(r, "measured_at", '"0001-01-01T00:00:00+05:00"'),
            splice(r, "measured_at", '"9999-12-31T23:59:59-05:00"'),
            splice(r, "measured_at", '"2300-01-01T00:00:00Z"'),
            splice(r, "event_id", '"\\ud800"'),
            splice(r, "event_id", '"' + "x" * 600_000 + '"'),
            splice(r, "person_id", '"13800138000"'),
            contract.encode(s),  # a scan on the temperature topic
        ],
        contract.SCANS: [
            *common,
            splice(s, "seq", "9" * 30),
            splice(s, "seq", "9" * 5000),
            splice(s, "scanned_at", '"9999-12-31T23:59:59-05:00"'),
            splice(s, "person_id", "{" * 5000 + "}" * 5000),
        ],
        contract.QUARANTINE: [
            *common,
            # No tombstone here: on the compacted quarantine topic a tombstone is how
            # retention ends a record (test_retention, test_trace_access), not hostile.
            splice(q, "ends_on", '"9999-12-31"'),
            splice(q, "starts_on", '"0001-01-01"'),
        ],
        contract.KIOSKS: [
            *common,
            splice(b, "spool_depth", str(2**63)),
            splice(b, "sent_at", '"2300-01-01T00:00:00Z"'),
            splice(b, "decode_failures", "-Infinity"),
            splice(b, "version", '"' + "v" * 900_000 + '"'),  # its dead letter is cut
        ],
        contract.ALERTS: [
            *common,
            splice(a, "event_time", '"0001-01-01T00:00:00+05:00"'),
            splice(a, "detail", '{"x": NaN}'),
            splice(a, "detail", '{"n": ' + "9" * 5000 + "}"),
            splice(a, "evidence", "[" * 50_000 + "]" * 50_000),
            splice(a, "kind", '"' + "k" * 900_000 + '"'),  # its dead letter is cut
        ],
    }


def good_records() -> dict[str, list[contract.Event]]:
    return {
        contract.TEMPERATURES: [reading(n, 38.6 if n % 4 == 0 else 36.5) for n in range(40)],
        contract.SCANS: [scan(n) for n in range(20)],
        contract.QUARANTINE: [quarantine(n) for n in range(8)],
        contract.KIOSKS: [beat(n) for n in range(20)],
        contract.ALERTS: [alert(n) for n in range(12)],
    }


def produce_interleaved(settings: Any) -> dict[str, list[tuple[int, bytes | None]]]:
    """Good, bad, good, bad ... on one partition per topic; returns the bad ones' offsets."""
    producer = KafkaProducer(
        bootstrap_servers=settings.servers, acks="all", max_request_size=2_000_000
    )
    bad_at: dict[str, list[tuple[int, bytes | None]]] = {}
    goods = good_records()
    for topic, hostile in hostile_corpus().items():
        name = settings.topic(topic)
        good = goods[topic]
        step = max(1, len(good) // (len(hostile) + 1))
        bad_at[topic] = []
        queue = list(hostile)
        for i, event in enumerate(good):
            producer.send(name, key=b"poison", value=contract.encode(event), partition=0)
            if queue and i % step == step - 1:
                value = queue.pop(0)
                meta = producer.send(name, key=b"poison", value=value, partition=0).get(30)
                bad_at[topic].append((meta.offset, value))
        for value in queue:  # the rest, each followed by one more good record
            meta = producer.send(name, key=b"poison", value=value, partition=0).get(30)
            bad_at[topic].append((meta.offset, value))
        producer.send(name, key=b"poison", value=contract.encode(good[-1]), partition=0)
    producer.flush()
    producer.close()
    return bad_at


def committed(settings: Any, group: str, topic: str) -> int | None:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.servers, group_id=group, enable_auto_commit=False
    )
    try:
        return consumer.committed(TopicPartition(settings.topic(topic), 0))
    finally:
        consumer.close(autocommit=False)


def end_offset(settings: Any, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.servers)
    try:
        tp = TopicPartition(settings.topic(topic), 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def until(check: Callable[[], bool], timeout_s: float, what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {timeout_s:.0f} s\n{logs()}")
        time.sleep(2)


def influx_ids(influx_settings: Any, measurement: str, column: str) -> set[str]:
    token = influx_settings.token.get_secret_value()
    with InfluxDBClient(url=influx_settings.url, token=token, org=influx_settings.org) as client:
        flux = (
            f'from(bucket: "{influx_settings.bucket}") |> range(start: 0)'
            f' |> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{column}")'
        )
        return {str(r.get_value()) for t in client.query_api().query(flux) for r in t.records}


def influx_deadletter_points(influx_settings: Any) -> Counter[str]:
    token = influx_settings.token.get_secret_value()
    with InfluxDBClient(url=influx_settings.url, token=token, org=influx_settings.org) as client:
        flux = (
            f'from(bucket: "{influx_settings.bucket}") |> range(start: 0)'
            ' |> filter(fn: (r) => r._measurement == "deadletters" and r._field == "count")'
        )
        return Counter(r["topic"] for t in client.query_api().query(flux) for r in t.records)


@pytest.mark.timeout(900)
def test_hostile_records_on_every_input_topic_stop_nothing(
    kafka_settings: Any, influx_settings: Any, tmp_path: Path
) -> None:
    ns = kafka_settings.namespace
    receiver = Receiver()
    receiver.start()
    roster = write_roster(tmp_path, [officer(receiver, "officer-a")])
    pager = PagerProcess(kafka_settings, roster, tmp_path / "pager.log")
    health_port = free_port()
    env = service_env(kafka_settings, influx_settings)
    sink = start_scantrail(
        "sink", "influx", "--health-port", str(health_port), env=env, log=tmp_path / "sink.log"
    )
    worker = start_scantrail(
        "worker", env=worker_env(kafka_settings, tmp_path), log=tmp_path / "worker.log"
    )
    pager.start("--ack-timeout", "600")
    procs = {"sink": sink, "worker": worker, "pager": pager.proc}

    def logs() -> str:
        parts = [f"--- {n}: {p.poll() if p else None}" for n, p in procs.items()]
        for name in ("sink", "worker", "pager"):
            text = (tmp_path / f"{name}.log").read_text(errors="replace")
            parts.append(f"--- {name}.log\n{text[-2500:]}")
        return "\n".join(parts)

    try:
        bad_at = produce_interleaved(kafka_settings)
        goods = good_records()

        # Every good record after the bad ones is processed: points in InfluxDB ...
        want_readings = {e.event_id for e in goods[contract.TEMPERATURES]}  # type: ignore[attr-defined]
        until(
            lambda: want_readings <= influx_ids(influx_settings, "temperature", "event_id"),
            300, "every good reading in InfluxDB", logs,
        )  # fmt: skip
        want_alerts = {e.alert_id for e in goods[contract.ALERTS]}  # type: ignore[attr-defined]
        until(
            lambda: want_alerts <= influx_ids(influx_settings, "alerts", "alert_id"),
            120, "every good alert in InfluxDB", logs,
        )  # fmt: skip
        # ... alerts paged (the directly produced ones and those the worker raised) ...
        until(
            lambda: want_alerts <= {p["alert_id"] for p in receiver.to("officer-a")},
            120, "every good alert paged", logs,
        )  # fmt: skip
        hot = {e.event_id for e in goods[contract.TEMPERATURES] if e.celsius >= 38}  # type: ignore[attr-defined]

        def worker_alerts_paged() -> bool:
            raised = []
            for m in consume_all(kafka_settings, contract.ALERTS, timeout_s=10):
                try:
                    raised.append(contract.decode_as(m.value, Alert))
                except ContractError:
                    continue  # the hostile ones
            seen = {ev for a in raised if a.kind == "fever_suspected" for ev in a.evidence}
            handled = set()
            for m in consume_all(kafka_settings, contract.PAGES, timeout_s=10):
                page = contract.decode_as(m.value, contract.PageRecord)
                if page.action in ("delivered", "queued", "skipped", "escalated"):
                    handled.add(page.alert_id)
            return hot <= seen and {a.alert_id for a in raised} <= handled

        until(worker_alerts_paged, 240, "the worker's alerts for every hot reading", logs)

        # ... and each hostile record is dead-lettered once per consumer, with a reason.
        expected = {
            (kafka_settings.topic(topic), offset): len(CONSUMERS[topic])
            for topic, rows in bad_at.items()
            for offset, _ in rows
        }

        def letters() -> Counter[tuple[str, int]]:
            got: Counter[tuple[str, int]] = Counter()
            for m in consume_all(kafka_settings, contract.DEADLETTER, timeout_s=15):
                letter = contract.decode_as(m.value, contract.DeadLetter)
                assert letter.reason, letter
                if letter.offset is not None:
                    got[(letter.topic, letter.offset)] += 1
            return got

        def missing() -> str:
            got = letters()
            return "\n".join(
                f"missing {n - got[k]} of {n} dead letters for {k}"
                for k, n in expected.items()
                if got[k] < n
            )

        until(
            lambda: all(letters()[k] >= n for k, n in expected.items()),
            240, "a dead letter for every hostile record from every consumer",
            lambda: missing() + "\n" + logs(),
        )  # fmt: skip
        time.sleep(5)  # a second dead letter for any of them would show now
        got = letters()
        assert {k: got[k] for k in expected} == expected
        stray = {k: n for k, n in got.items() if k not in expected}
        assert stray == {}, f"good records were dead-lettered: {stray}"
        for topic, rows in bad_at.items():
            for offset, value in rows:
                assert value is None or len(value) < 2_000_000  # the corpus itself
                assert (kafka_settings.topic(topic), offset) in got

        # Committed offsets pass the bad records (sink and pager commit after each batch).
        for topic in CONSUMERS:
            end = end_offset(kafka_settings, topic)
            if "sink" in CONSUMERS[topic]:
                until(
                    lambda t=topic, e=end: committed(  # type: ignore[misc]
                        kafka_settings, f"{ns}scantrail-sink-influx", t
                    ) == e,
                    60, f"the sink committing {topic} to its end", logs,
                )  # fmt: skip
            if "pager" in CONSUMERS[topic]:
                until(
                    lambda t=topic, e=end: committed(  # type: ignore[misc]
                        kafka_settings, f"{ns}scantrail-sink-pager", t
                    ) == e,
                    60, f"the pager committing {topic} to its end", logs,
                )  # fmt: skip
            if "worker" in CONSUMERS[topic]:
                last_bad = max(offset for offset, _ in bad_at[topic])
                until(
                    lambda t=topic, b=last_bad: (
                        committed(kafka_settings, f"{ns}worker", t) or 0
                    ) > b,  # type: ignore[misc]
                    120, f"the worker committing past the bad records of {topic}", logs,
                )  # fmt: skip

        # Bad records are counted where an operator looks: InfluxDB and the sink's /stats.
        points = influx_deadletter_points(influx_settings)
        for topic, rows in bad_at.items():
            if "sink" in CONSUMERS[topic]:
                assert points[kafka_settings.topic(topic)] == len(rows), points
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/stats", timeout=10) as r:
            stats = json.loads(r.read())
        sink_bad = sum(len(rows) for t, rows in bad_at.items() if "sink" in CONSUMERS[t])
        assert stats["deadletter"] == sink_bad, stats

        # No process exited.
        assert {n: p.poll() for n, p in procs.items() if p is not None} == {
            "sink": None,
            "worker": None,
            "pager": None,
        }, logs()
    finally:
        for proc in (sink, worker):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
        pager.stop()
        receiver.stop()
