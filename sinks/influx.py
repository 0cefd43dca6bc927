"""The InfluxDB sink: Kafka in, line protocol out, offsets committed after the write.

Delivery is at-least-once: a batch's offsets are committed only after InfluxDB
acknowledged every line of it, and a re-delivered event rewrites the same
point (see :mod:`sinks.lines`), so a crash anywhere loses nothing and doubles
nothing. While InfluxDB is down the consumer pauses its partitions and keeps
polling (so it stays in its group) and retries with exponential backoff and
jitter: memory holds one batch, never a growing buffer.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from scantrail import contract
from scantrail.broker import make_producer, send_dead_letter
from scantrail.errors import ContractError, ServiceError
from scantrail.settings import InfluxSettings, KafkaSettings, state_dir
from sinks.lines import (
    alert_line,
    kiosk_health_line,
    passage_line,
    temperature_line,
    watched_temperature_line,
)
from sinks.sink_state import MinuteKey, SinkState, minute_of

log = logging.getLogger(__name__)

SINK_TOPICS = (
    contract.QUARANTINE,
    contract.ALERTS,
    contract.SCANS,
    contract.TEMPERATURES,
    contract.KIOSKS,
)
BATCH_LINES = 5000
WATCHED_MEMO_MAX = 200_000  # (person, day) answers kept in memory before starting afresh
WATCH_AFTER_FEVER = timedelta(days=28)
# How long the per-minute scan sets are kept. A scan arriving later than this
# (a kiosk offline for over a week) would reset its minute's count, so keep it
# well beyond any outage a gate survives; the sets live on disk, not in memory.
PASSAGE_MEMORY = timedelta(days=7)
PRUNE_EVERY_S = 600.0


@dataclass
class Batch:
    """The lines one poll produced, per bucket, and the scans whose minutes changed."""

    main: list[str] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    scans: list[tuple[MinuteKey, str]] = field(default_factory=list)


@dataclass
class SinkStats:
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


@dataclass
class _Pending:
    """A batch being written by the writer thread, and the offsets it will commit."""

    future: Future[None]
    out: Batch
    offsets: dict[TopicPartition, OffsetAndMetadata]


class _Stopped(Exception):
    """Asked to stop while a batch could not be stored."""


def _retryable(exc: Exception) -> bool:
    """Outages, timeouts and throttling are retried; a rejected request (4xx) is not."""
    status = getattr(exc, "status", None)
    return status is None or not 400 <= status < 500 or status in (408, 429)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped."""

    initial: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap, self.initial * 2**attempt))


class InfluxWriter:
    """Synchronous writes, so an acknowledged batch is really stored."""

    def __init__(self, settings: InfluxSettings) -> None:
        if not settings.token.get_secret_value():
            raise ServiceError(
                "no InfluxDB token: set SCANTRAIL_INFLUX_TOKEN or run `make up` to write influx.env"
            )
        self.settings = settings
        self.client = InfluxDBClient(
            url=settings.url,
            token=settings.token.get_secret_value(),
            org=settings.org,
            timeout=30_000,
            enable_gzip=True,
        )
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)

    def ensure_buckets(self) -> None:
        """Create the main bucket and the 28-day watched bucket when missing."""
        from influxdb_client import BucketRetentionRules

        api = self.client.buckets_api()
        wanted = {self.settings.bucket: 0, self.settings.watched_bucket: 28 * 24 * 3600}
        for name, seconds in wanted.items():
            if api.find_bucket_by_name(name) is None:
                rules = (
                    [BucketRetentionRules(type="expire", every_seconds=seconds)] if seconds else []
                )
                api.create_bucket(bucket_name=name, retention_rules=rules, org=self.settings.org)
                log.info("created bucket %s (retention %s s)", name, seconds or "infinite")

    def write(self, lines: Sequence[str], bucket: str | None = None) -> None:
        self.write_api.write(bucket=bucket or self.settings.bucket, record=list(lines))

    def close(self) -> None:
        self.client.close()


class InfluxSink:
    def __init__(
        self,
        kafka: KafkaSettings,
        influx: InfluxSettings,
        *,
        group_id: str = "scantrail-sink-influx",
        batch_lines: int = BATCH_LINES,
        backoff: Backoff = Backoff(),
        seed: int | None = None,
        state_path: Path | None = None,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self.kafka = kafka
        self.influx = influx
        self.writer = InfluxWriter(influx)
        self.writer.ensure_buckets()
        self.tz = ZoneInfo(timezone)
        self.state = SinkState(
            state_path or state_dir() / "sink" / f"{kafka.namespace}{group_id}.db"
        )
        self.batch_lines = batch_lines
        self.backoff = backoff
        self.rng = random.Random(seed)
        self.stats = SinkStats()
        self.consumer = KafkaConsumer(
            *[kafka.topic(t) for t in SINK_TOPICS],
            bootstrap_servers=kafka.servers,
            group_id=f"{kafka.namespace}{group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_lines,
            client_id="scantrail-sink-influx",
        )
        self.producer = make_producer(kafka, client_id="scantrail-sink-influx-dlq")
        # Each sink topic carries one kind of event: try that kind first (one
        # JSON parse instead of two), and fall back to the full decode.
        self._kinds = {kafka.topic(t): contract.TOPIC_SCHEMAS[t] for t in SINK_TOPICS}
        # is_watched answers per (person, local day); only this sink changes the
        # registry (through _watch, which forgets them all), so they stay true.
        self._watched_memo: dict[tuple[str, date], bool] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx-write")
        self._pending: _Pending | None = None
        self._on_batch: Callable[[], None] | None = None
        self._stop = False
        self._abandoned = False  # a batch was given up on a stop: commit nothing more
        self._newest_scan: datetime | None = None
        self._last_prune = time.monotonic()

    def stop(self) -> None:
        self._stop = True

    def run(
        self, *, idle_exit_s: float | None = None, on_batch: Callable[[], None] | None = None
    ) -> None:
        """Consume until stopped (or until ``idle_exit_s`` seconds pass with no message).

        ``on_batch`` is called after each batch is stored and its offsets committed.
        """
        self._on_batch = on_batch
        last_message = time.monotonic()
        try:
            while not self._stop:
                batch = self.consumer.poll(timeout_ms=500, max_records=self.batch_lines)
                if not batch:
                    self._settle()  # nothing new: finish the write in flight, commit it
                    if idle_exit_s is not None and time.monotonic() - last_message > idle_exit_s:
                        return
                    continue
                last_message = time.monotonic()
                self._handle(batch)
            self._settle()
        finally:
            self.close()

    def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Turn a poll into lines, then hand them to the writer thread.

        Building batch N+1 overlaps with writing batch N; batch N's offsets are
        committed only once InfluxDB acknowledged it (see :meth:`_settle`), and
        the single writer thread keeps writes in order, so a minute's later
        passage count never lands before an earlier one.
        """
        if self._stop:
            return  # polled but not handled: uncommitted, so re-read on the next start
        out = Batch()
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, messages in batch.items():
            for message in messages:
                try:
                    event = self._decode(message)
                except ContractError as exc:
                    self._dead_letter(message, str(exc))
                    continue
                self._collect(event, out)
                self.stats.counts[event.SCHEMA] += 1
            offsets[tp] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
        for key, count in self.state.add_passages(out.scans).items():
            out.main.append(passage_line(*key, count))
        self._maybe_prune()
        self._settle()
        self._pending = _Pending(self._executor.submit(self._write_once, out), out, offsets)

    def _maybe_prune(self) -> None:
        """Forget minute sets older than PASSAGE_MEMORY of *event* time (replays stay exact)."""
        if self._newest_scan is None or time.monotonic() - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        dropped = self.state.prune(self._newest_scan, PASSAGE_MEMORY)
        if dropped:
            log.info("forgot %d scan ids older than %s", dropped, PASSAGE_MEMORY)

    def _write_once(self, out: Batch) -> None:
        """One attempt at a batch (writer thread); the consumer thread handles failures."""
        if out.main:
            self.writer.write(out.main, self.influx.bucket)
        if out.watched:
            self.writer.write(out.watched, self.influx.watched_bucket)

    def _settle(self) -> None:
        """Wait until the batch in flight is stored (retrying as needed), then commit it."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if self._abandoned:  # stopping after an unstored batch: this one is re-read too
            pending.future.exception()
            return
        try:
            pending.future.result()
        except (ApiException, HTTPError, OSError) as exc:
            if not _retryable(exc):
                raise
            self.stats.counts["write_retries"] += 1
            log.warning("InfluxDB write failed (%s); retrying with backoff", exc)
            # Rewriting the main lines when only the watched ones failed is harmless.
            out = pending.out
            try:
                if out.main:
                    self._write_until_acknowledged(out.main, self.influx.bucket)
                if out.watched:
                    self._write_until_acknowledged(out.watched, self.influx.watched_bucket)
            except _Stopped:
                # SIGTERM while InfluxDB is down: leave now, uncommitted; the
                # next start re-reads the batch and rewrites the same points.
                # Nothing after it may be committed either, or it would be skipped.
                self._abandoned = True
                self.stats.counts["stopped_unwritten"] += 1
                log.warning("stopping with a batch not yet stored; it will be re-read")
                return
        if self._abandoned:
            return
        self.producer.flush()  # dead letters are durable before their offsets move on
        try:
            self.consumer.commit(pending.offsets)
        except CommitFailedError:
            # Partitions moved to another member mid-batch: it re-reads them and
            # rewrites the same points, which is harmless.
            log.warning("commit refused after a rebalance; the new owner re-delivers")
        self.stats.counts["points"] += len(pending.out.main) + len(pending.out.watched)
        if self._on_batch is not None:
            self._on_batch()

    def _decode(self, message: Any) -> contract.Event:
        """:func:`contract.decode`, with a fast path for the topic's own kind.

        The fast path accepts only what ``decode`` accepts: the same strict
        validation of the same class, and the schema field must be present.
        """
        if message.value is None:  # a tombstone (compacted quarantine topic)
            raise ContractError("no value (a tombstone); nothing to write")
        kind = self._kinds.get(message.topic)
        if kind is not None:
            try:
                event = kind.model_validate_json(message.value, strict=True)
            except ValidationError:
                pass
            else:
                if "schema_" in event.model_fields_set:
                    return event
        return contract.decode(message.value)

    def _is_watched(self, person_id: str, day: date) -> bool:
        key = (person_id, day)
        answer = self._watched_memo.get(key)
        if answer is None:
            answer = self.state.is_watched(person_id, day)
            if len(self._watched_memo) >= WATCHED_MEMO_MAX:
                self._watched_memo.clear()
            self._watched_memo[key] = answer
        return answer

    def _watch(self, person_id: str, until: date | None) -> None:
        self.state.watch(person_id, until)
        self._watched_memo.clear()

    def _collect(self, event: contract.Event, out: Batch) -> None:
        if isinstance(event, contract.TemperatureReading):
            out.main.append(temperature_line(event))
            if event.person_id:
                local_day = event.measured_at.astimezone(self.tz).date()
                if self._is_watched(event.person_id, local_day):
                    out.watched.append(watched_temperature_line(event, event.person_id))
        elif isinstance(event, contract.ScanEvent):
            key = MinuteKey(
                event.site_id, event.kiosk_id, event.direction, minute_of(event.scanned_at)
            )
            out.scans.append((key, event.event_id))
            if self._newest_scan is None or event.scanned_at > self._newest_scan:
                self._newest_scan = event.scanned_at
        elif isinstance(event, contract.Alert):
            out.main.append(alert_line(event))
            if event.person_id and event.kind.startswith("fever_"):
                until = (event.event_time + WATCH_AFTER_FEVER).astimezone(self.tz).date()
                self._watch(event.person_id, until)
        elif isinstance(event, contract.KioskHeartbeat):
            out.main.append(kiosk_health_line(event))
        elif isinstance(event, contract.QuarantineRecord):
            self._watch(event.person_id, event.ends_on)

    def _write_until_acknowledged(self, lines: list[str], bucket: str) -> None:
        """Retry with backoff until stored; a stop request ends the wait (nothing committed)."""
        attempt = 0
        paused = False
        while True:
            try:
                self.writer.write(lines, bucket)
                break
            except (ApiException, HTTPError, OSError) as exc:
                if not _retryable(exc):
                    raise
                if self._stop:
                    raise _Stopped from exc
                delay = self.backoff.delay(attempt, self.rng)
                attempt += 1
                self.stats.counts["write_retries"] += 1
                log.warning("InfluxDB write failed (%s); retry %d in %.1f s", exc, attempt, delay)
                if not paused:
                    self.consumer.pause(*self.consumer.assignment())
                    paused = True
                self._sleep_polling(delay)
        if paused:
            self.consumer.resume(*self.consumer.paused())

    def _sleep_polling(self, seconds: float) -> None:
        """Wait while keeping group membership alive; paused partitions yield nothing.

        A rebalance during the wait can assign a partition that is not paused,
        and poll would return its records: rewind to them and pause it, or the
        next commit of that partition would skip them.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop:
            got = self.consumer.poll(timeout_ms=int(min(left, 1.0) * 1000) or 1)
            for tp, messages in got.items():
                self.consumer.seek(tp, messages[0].offset)
            if got or self.consumer.assignment() - self.consumer.paused():
                self.consumer.pause(*self.consumer.assignment())

    def _dead_letter(self, message: Any, reason: str) -> None:
        self.stats.counts["deadletter"] += 1
        send_dead_letter(
            self.producer,
            self.kafka.topic(contract.DEADLETTER),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            reason=reason,
            seen_at=datetime.now(UTC),
        )

    def close(self) -> None:
        # A write still in flight here (after an error) finishes, but is not committed.
        self._executor.shutdown(wait=True)
        try:
            self.producer.flush()
            self.producer.close()
            self.consumer.close(autocommit=False)
        except KafkaError as exc:  # pragma: no cover - shutdown path
            log.warning("closing Kafka clients: %s", exc)
        self.writer.close()
        self.state.close()
