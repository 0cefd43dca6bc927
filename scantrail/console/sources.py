"""Where the console's data comes from: Kafka topics followed live, InfluxDB queried on demand.

* :class:`Follower` reads ``scantrail.alerts``, ``scantrail.pages`` and
  ``scantrail.quarantine`` from the beginning on one thread (kafka-python is
  not thread-safe) and hands each decoded record to a callback; the board
  and the quarantine registry are folds over them, rebuilt on every start.
* :class:`Influx` asks the flux questions of the case view and the big
  screen: a person's 14-day curve (the watched bucket the sink fills for
  watched persons, else the main bucket), an alert's readings, passages per
  minute, fevers today, the kiosks' last heartbeats.
* :func:`load_trail_index` reads the scans of a period from
  ``scantrail.scans`` (records carry their event time, so the broker finds
  the first offset by time) into the same :class:`~processors.trails.TrailIndex`
  that ``scantrail trace`` builds from a file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from processors.trails import TrailIndex
from scantrail import contract
from scantrail.errors import ContractError
from scantrail.settings import InfluxSettings, KafkaSettings

log = logging.getLogger(__name__)

FOLLOWED = (contract.ALERTS, contract.PAGES, contract.QUARANTINE)
FEVER_KINDS = r"^fever_(suspected|confirmed|unidentified|cluster)$"


class Follower:
    """One thread that follows the console's topics and calls ``on_event`` for each record."""

    def __init__(self, kafka: KafkaSettings, on_event: Callable[[contract.Event], None]) -> None:
        self.kafka, self.on_event = kafka, on_event
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self.skipped = 0  # records that fail the contract: logged, counted, never fatal
        self._thread = threading.Thread(target=self._run, name="console-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from scantrail.broker import connection

        consumer = KafkaConsumer(
            **connection(self.kafka), enable_auto_commit=False, client_id="scantrail-console"
        )
        try:
            tps = [
                TopicPartition(self.kafka.topic(name), p)
                for name in FOLLOWED
                for p in sorted(consumer.partitions_for_topic(self.kafka.topic(name)) or ())
            ]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            while not self._stop.is_set():
                for tp, messages in consumer.poll(timeout_ms=200, max_records=2000).items():
                    expect = contract.TOPIC_SCHEMAS[tp.topic[len(self.kafka.namespace) :]]
                    for message in messages:
                        try:
                            event = contract.decode(message.value, expect=expect)
                        except ContractError as exc:
                            self.skipped += 1
                            log.warning("skipping %s@%d: %s", tp.topic, message.offset, exc)
                            continue
                        self.on_event(event)
                if not self.caught_up.is_set() and all(
                    consumer.position(tp) >= end[tp] for tp in tps
                ):
                    self.caught_up.set()
        except Exception:
            log.exception("the console's topic follower stopped")
            raise
        finally:
            consumer.close()


def load_trail_index(kafka: KafkaSettings, start: datetime, end: datetime) -> TrailIndex:
    """The scans timed in ``[start, end]`` from the scans topic, in a settled TrailIndex."""
    from kafka import KafkaConsumer, TopicPartition

    from scantrail.broker import connection

    index = TrailIndex()
    topic = kafka.topic(contract.SCANS)
    consumer = KafkaConsumer(
        **connection(kafka), enable_auto_commit=False, client_id="scantrail-console-trace"
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            index.settle()
            return index
        consumer.assign(tps)
        # Late scans are published after later ones: start an hour early, filter by time.
        first = int((start - timedelta(hours=1)).timestamp() * 1000)
        found = consumer.offsets_for_times(dict.fromkeys(tps, first))
        end_offsets = consumer.end_offsets(tps)
        live = []
        for tp in tps:
            hit = found.get(tp)
            if hit is None:
                continue  # nothing as late as the start on this partition
            consumer.seek(tp, hit.offset)
            live.append(tp)
        while any(consumer.position(tp) < end_offsets[tp] for tp in live):
            for messages in consumer.poll(timeout_ms=500, max_records=5000).values():
                for message in messages:
                    try:
                        event = contract.decode_as(message.value, contract.ScanEvent)
                    except ContractError:
                        continue
                    if start <= event.scanned_at <= end:
                        index.add_event(event)
    finally:
        consumer.close()
    index.settle()
    return index


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class Influx:
    """The console's read-only flux queries (one client, reused)."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client import InfluxDBClient

        self.settings = settings
        self.client = InfluxDBClient(
            url=settings.url, token=settings.token.get_secret_value(), org=settings.org
        )
        self.api = self.client.query_api()

    def close(self) -> None:
        self.client.close()

    def rows(self, flux: str) -> list[dict[str, Any]]:
        return [dict(r.values) for table in self.api.query(flux) for r in table.records]

    def curve(self, person_id: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """A person's valid readings: the watched bucket, else the main one (slower)."""
        person = person_id.replace('"', "")
        watched = self.rows(
            f'from(bucket: "{self.settings.watched_bucket}") '
            f"|> range(start: {_iso(start)}, stop: {_iso(end)}) "
            f'|> filter(fn: (r) => r._measurement == "watched_temperature" '
            f'and r.person_id == "{person}" and r._field == "celsius") '
            "|> filter(fn: (r) => r._value >= 34.0 and r._value <= 42.0)"
        )
        if watched:
            return [(r["_time"], float(r["_value"])) for r in watched]
        main = self.rows(
            f'from(bucket: "{self.settings.bucket}") '
            f"|> range(start: {_iso(start)}, stop: {_iso(end)}) "
            '|> filter(fn: (r) => r._measurement == "temperature" '
            'and (r._field == "celsius" or r._field == "person_id")) '
            '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") '
            f'|> filter(fn: (r) => r.person_id == "{person}" '
            "and r.celsius >= 34.0 and r.celsius <= 42.0)"
        )
        return [(r["_time"], float(r["celsius"])) for r in main]

    def readings(self, event_ids: list[str], around: datetime) -> list[dict[str, Any]]:
        """The temperature points whose event ids are an alert's evidence."""
        if not event_ids:
            return []
        wanted = " or ".join(f'r.event_id == "{e}"' for e in event_ids[:50])
        return self.rows(
            f'from(bucket: "{self.settings.bucket}") '
            f"|> range(start: {_iso(around - timedelta(hours=2))}, "
            f"stop: {_iso(around + timedelta(minutes=5))}) "
            '|> filter(fn: (r) => r._measurement == "temperature") '
            '|> pivot(rowKey: ["_time", "site_id", "kiosk_id", "method"], '
            'columnKey: ["_field"], valueColumn: "_value") '
            f"|> filter(fn: (r) => {wanted})"
        )

    def passages_per_minute(self, start: datetime, end: datetime) -> dict[str, list[int]]:
        """Per site, the passages of each whole minute in ``[start, end)`` (zeros included)."""
        minutes = int((end - start).total_seconds() // 60)
        out: dict[str, list[int]] = {}
        for r in self.rows(
            f'from(bucket: "{self.settings.bucket}") '
            f"|> range(start: {_iso(start)}, stop: {_iso(end)}) "
            '|> filter(fn: (r) => r._measurement == "passages" and r._field == "count") '
            '|> group(columns: ["site_id"]) '
            '|> aggregateWindow(every: 1m, fn: sum, createEmpty: false, timeSrc: "_start")'
        ):
            i = int((r["_time"] - start).total_seconds() // 60)
            if 0 <= i < minutes:
                out.setdefault(r["site_id"], [0] * minutes)[i] += int(r["_value"])
        return out

    def fevers(self, start: datetime, end: datetime) -> dict[str, int]:
        """Fever alerts per site in ``[start, end)`` (the kinds Grafana's fever panel counts)."""
        return {
            r["site_id"]: int(r["_value"])
            for r in self.rows(
                f'from(bucket: "{self.settings.bucket}") '
                f"|> range(start: {_iso(start)}, stop: {_iso(end)}) "
                '|> filter(fn: (r) => r._measurement == "alerts" and r._field == "count") '
                f"|> filter(fn: (r) => r.kind =~ /{FEVER_KINDS}/) "
                '|> group(columns: ["site_id"]) |> sum()'
            )
        }

    def last_heartbeats(self, start: datetime, end: datetime) -> list[tuple[str, str, datetime]]:
        """(site, kiosk, time of the last heartbeat) for every kiosk heard from since ``start``."""
        return sorted(
            (r["site_id"], r["kiosk_id"], r["_time"])
            for r in self.rows(
                f'from(bucket: "{self.settings.bucket}") '
                f"|> range(start: {_iso(start)}, stop: {_iso(end)}) "
                '|> filter(fn: (r) => r._measurement == "kiosk_health" '
                'and r._field == "spool_depth") '
                '|> group(columns: ["site_id", "kiosk_id"]) |> last()'
            )
        )
