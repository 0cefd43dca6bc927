"""The InfluxDB sink: Kafka in, line protocol out, offsets committed after the write.

Delivery is at-least-once: a batch's offsets are committed only after InfluxDB
acknowledged every line of it, and a re-delivered event rewrites the same
point (see :mod:`sinks.lines`), so a crash anywhere loses nothing and doubles
nothing. While InfluxDB is down the consumer pauses its partitions and keeps
polling (so it stays in its group) and retries with exponential backoff and
jitter: memory holds one batch, never a growing buffer.

Watched persons. The registry of who is watched (a person to the day their
watch ends) is small, so it lives in memory, loaded from the sink state at the
start and changed only here. Each poll is handled in two passes: first every
quarantine record and fever alert in it updates the registry, then the
readings are turned into lines, so a reading and the watch it falls under may
arrive in either order inside one poll. Readings handled *before* a person
became watched are copied from the main bucket by a backfill
(:mod:`sinks.backfill`), which is part of storing the batch that brought the
watch: the writer thread runs its Flux queries (after the previous batch was
acknowledged, and before this batch's readings are written, which the live
path covers), then writes the lines with the batch's other watched lines. The
batch's offsets are committed only after all of it is acknowledged, and an
outage during the queries is waited out like one during a write.

Why no backfill is lost: the registry change and the backfills it needs are
one SQLite transaction, recorded before the batch is built, and a backfill row
is deleted only after its lines were acknowledged (then the offsets are
committed). Whatever the sink dies after that transaction (a SIGKILL, a
failed write, a stop during an outage), the next start loads the rows still
pending and runs them with its first batch. "Newly watched" is decided against
the registry, so a re-delivered watch plans nothing new; it need not, because
the rows carry the work. Readings of batches that were not yet stored at the
crash are re-delivered and find the person watched, so the live path writes
them. Re-running a backfill, or a backfill overlapping live lines, rewrites the
same points (same lines, same timestamps): nothing doubles. SQLite runs in WAL
mode with synchronous=NORMAL, durable against a process crash (a power loss
may drop the newest transactions, as for the rest of the sink state).
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaException
from influxdb_client import InfluxDBClient
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from kafka.errors import KafkaError
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from scantrail import contract
from scantrail.broker import make_producer, send_dead_letter
from scantrail.errors import ContractError, ServiceError
from scantrail.private import private_dir
from scantrail.settings import InfluxSettings, KafkaSettings, state_dir
from sinks.backfill import (
    BackfillResult,
    BackfillTask,
    Watch,
    fever_window,
    plan,
    quarantine_window,
    run_backfill,
)
from sinks.kafka_source import (
    CommitRefused,
    Partition,
    SinkConsumer,
    describe,
    record_timestamp,
)
from sinks.lines import (
    alert_line,
    dead_letter_line,
    kiosk_health_line,
    passage_line,
    reason_kind,
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
WATCH_AFTER_FEVER = timedelta(days=28)
# How long the per-minute scan sets are kept. A scan arriving later than this
# (a kiosk offline for over a week) would reset its minute's count, so keep it
# well beyond any outage a gate survives; the sets live on disk, not in memory.
PASSAGE_MEMORY = timedelta(days=7)
PRUNE_EVERY_S = 600.0
# A write takes well under this; a batch whose backfill queries run longer is
# waited for while polling (partitions paused), or a burst of new watches (a
# fresh start reading the whole quarantine topic) would outlast
# max.poll.interval.ms and get the sink evicted from its group mid-batch.
QUIET_WAIT_S = 10.0
# The loop turns at least every second (a poll, or a poll while waiting out an
# outage); this long without a turn means it is hung, and a restart is due.
STALE_AFTER_S = 120.0
# A dead letter the broker did not take is sent again this many times in all
# (each waits up to the timeout), then the sink stops rather than lose it.
DEAD_LETTER_ATTEMPTS = 5
DEAD_LETTER_TIMEOUT_S = 150.0


@dataclass
class Batch:
    """The lines one poll produced, per bucket, and the scans whose minutes changed.

    ``backfills`` are stored with the batch; their lines are fetched by the
    writer thread (``backfill``) and kept for retries, so a failed write does
    not query again.
    """

    main: list[str] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    scans: list[tuple[MinuteKey, str]] = field(default_factory=list)
    backfills: list[BackfillTask] = field(default_factory=list)
    backfill: BackfillResult | None = None
    backfill_lines: list[str] = field(default_factory=list)  # those not already in ``watched``
    # Dead letters sent for this batch's bad records: (send future, what was sent),
    # confirmed before its offsets are committed (see InfluxSink._confirm_dead_letters).
    letters: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)


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
    offsets: dict[Partition, int]


class _Stopped(Exception):
    """Asked to stop while a batch could not be stored."""


_WATCH_KINDS = frozenset({contract.QuarantineRecord, contract.Alert})


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic GC while a batch is polled and built.

    Polling and building make no reference cycles, only garbage freed by
    reference counting, yet their allocations would trigger a collection every
    few hundred events: about 15% of the consumer thread's time. Collections
    still run between batches, when the collector is back on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
            enable_gzip=settings.use_gzip,
        )
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.query_api = self.client.query_api()

    def ensure_buckets(self) -> None:
        """Create the main bucket and the 28-day watched bucket when missing."""
        from influxdb_client import BucketRetentionRules

        api = self.client.buckets_api()
        wanted = {self.settings.bucket: 0, self.settings.watched_bucket: 28 * 24 * 3600}
        for name, seconds in wanted.items():
            try:
                if api.find_bucket_by_name(name) is None:
                    rules = (
                        [BucketRetentionRules(type="expire", every_seconds=seconds)]
                        if seconds
                        else []
                    )
                    api.create_bucket(
                        bucket_name=name, retention_rules=rules, org=self.settings.org
                    )
                    log.info("created bucket %s (retention %s s)", name, seconds or "infinite")
            except ApiException as exc:
                if exc.status not in (401, 403):
                    raise
                # A least-privilege token may not list or create buckets:
                # `scantrail influx-setup` made them, with their retention.
                log.info("bucket %s: not checked with this token (%s)", name, exc.status)
            except InfluxDBError as exc:  # the org's id is not visible to a least-privilege token
                log.info("bucket %s: not checked with this token (%s)", name, exc.message)

    def write(self, lines: Sequence[str], bucket: str | None = None) -> None:
        # One body joined in C: given a list, the client serializes it line by
        # line in Python, holding the GIL the consumer thread needs meanwhile.
        body = "\n".join(lines).encode()
        self.write_api.write(bucket=bucket or self.settings.bucket, record=body)

    def query(self, flux: str) -> list[dict[str, Any]]:
        """The rows of a Flux query, each as its column values."""
        tables = self.query_api.query(flux, org=self.settings.org)
        return [record.values for table in tables for record in table.records]

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
        if state_path is None:  # the watched-person registry: the sink user's only
            state_path = private_dir(state_dir() / "sink") / f"{kafka.namespace}{group_id}.db"
        self.state = SinkState(state_path)
        self.batch_lines = batch_lines
        self.backoff = backoff
        self.rng = random.Random(seed)
        self.stats = SinkStats()
        self.consumer = SinkConsumer(
            kafka,
            [kafka.topic(t) for t in SINK_TOPICS],
            group_id=f"{kafka.namespace}{group_id}",
            client_id="scantrail-sink-influx",
            max_records=batch_lines,
        )
        self.producer = make_producer(kafka, client_id="scantrail-sink-influx-dlq")
        # Each sink topic carries one kind of event: try that kind first (one
        # JSON parse instead of two), and fall back to the full decode. It is
        # the class's own pydantic validator, called directly: the same strict
        # validation as ``model_validate_json``, without its Python wrapper
        # (a tenth of the validation time).
        self._kinds: dict[str, Callable[[bytes], Any]] = {
            kafka.topic(t): partial(
                contract.TOPIC_SCHEMAS[t].__pydantic_validator__.validate_json, strict=True
            )
            for t in SINK_TOPICS
        }
        # The kind each topic carries: a scan on the temperature topic is as
        # wrong as malformed JSON (dead-lettered, never written as a scan).
        self._expect = {kafka.topic(t): contract.TOPIC_SCHEMAS[t] for t in SINK_TOPICS}
        # Only this sink changes its registry, so memory and SQLite stay equal.
        self._watched: dict[str, Watch] = self.state.watched()
        # Backfills recorded but not stored (a crash or stop before): run them first.
        self._backfills: list[BackfillTask] = self.state.pending_backfills()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx-write")
        self._pending: _Pending | None = None
        self._on_batch: Callable[[], None] | None = None
        self._stop = False
        self._abandoned = False  # a batch was given up on a stop: commit nothing more
        self._newest_scan: datetime | None = None
        self._last_prune = time.monotonic()
        self.quiet_wait_s = QUIET_WAIT_S
        # For /healthz (sinks.health), read from its thread: plain attribute reads.
        self._turned_at = time.monotonic()  # the loop last turned (polled)
        self._stored_at: float | None = None  # a batch was last stored and committed
        self._retrying = False  # waiting out an InfluxDB outage

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
                self._turned_at = time.monotonic()
                with _collector_paused():  # a poll builds thousands of records, no cycles
                    batch = self.consumer.poll(timeout_s=0.5)
                if not batch:
                    self._settle()  # nothing new: finish the write in flight, commit it
                    if self._backfills and self._pending is None and not self._abandoned:
                        self._handle({})  # backfills left by a crash, and no event to carry them
                    if idle_exit_s is not None and time.monotonic() - last_message > idle_exit_s:
                        return
                    continue
                last_message = time.monotonic()
                self._handle(batch)
            self._settle()
        finally:
            self.close()

    def _handle(self, batch: dict[Partition, list[Any]]) -> None:
        """Turn a poll into lines, then hand them to the writer thread.

        Building batch N+1 overlaps with writing batch N; batch N's offsets are
        committed only once InfluxDB acknowledged it (see :meth:`_settle`), and
        the single writer thread keeps writes in order, so a minute's later
        passage count never lands before an earlier one.
        """
        if self._stop:
            return  # polled but not handled: uncommitted, so re-read on the next start
        with _collector_paused():
            out, offsets = self._build(batch)
        self._maybe_prune()
        self._settle()
        out.backfills, self._backfills = self._backfills, []
        self._pending = _Pending(self._executor.submit(self._write_once, out), out, offsets)

    def _build(self, batch: dict[Partition, list[Any]]) -> tuple[Batch, dict[Partition, int]]:
        """Decode a poll (dead-lettering what fails), apply its watches, then collect its lines."""
        out = Batch()
        offsets: dict[Partition, int] = {}
        events: list[contract.Event] = []
        watches: list[tuple[contract.Event, int | None]] = []
        decode, append = self._decode, events.append
        for tp, messages in batch.items():
            for message in messages:
                try:
                    event = decode(message)
                except ContractError as exc:
                    if message.value() is None:  # a retention tombstone: nothing to store
                        self.stats.counts["tombstone"] += 1
                        continue
                    self._dead_letter(message, str(exc), out)
                    continue
                append(event)
                if type(event) in _WATCH_KINDS:
                    watches.append((event, record_timestamp(message)))
            offsets[tp] = messages[-1].offset() + 1
        self._watch_all(watches)  # first, so order inside the poll does not matter
        collect = self._collect
        for event in events:
            collect(event, out)
        self.stats.counts.update(event.SCHEMA for event in events)
        for key, count in self.state.add_passages(out.scans).items():
            out.main.append(passage_line(*key, count))
        return out, offsets

    def _maybe_prune(self) -> None:
        """Forget minute sets older than PASSAGE_MEMORY of *event* time (replays stay exact)."""
        if self._newest_scan is None or time.monotonic() - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = time.monotonic()
        dropped = self.state.prune(self._newest_scan, PASSAGE_MEMORY)
        if dropped:
            log.info("forgot %d scan ids older than %s", dropped, PASSAGE_MEMORY)

    def _write_once(self, out: Batch) -> None:
        """One attempt at a batch (writer thread); the consumer thread handles failures.

        The backfill queries run first: the previous batch is acknowledged (so
        in the main bucket), and this batch's readings are not yet, which keeps
        them out of the backfill; the live path writes their watched lines.
        """
        if out.backfills and out.backfill is None:
            self._fetch_backfill(out)
        if out.main:
            self.writer.write(out.main, self.influx.bucket)
        if out.watched or out.backfill_lines:
            self.writer.write(out.watched + out.backfill_lines, self.influx.watched_bucket)

    def _fetch_backfill(self, out: Batch) -> None:
        """Query the lines of the batch's backfills from the main bucket (kept in ``out``)."""
        result = run_backfill(out.backfills, self.influx.bucket, self.tz, self.writer.query)
        live = set(out.watched)
        out.backfill_lines = [made for made in result.lines if made not in live]
        out.backfill = result

    def _settle(self) -> None:
        """Wait until the batch in flight is stored (retrying as needed), then commit it."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if self._abandoned:  # stopping after an unstored batch: this one is re-read too
            pending.future.exception()
            return
        try:
            self._await(pending.future)
        except (ApiException, HTTPError, OSError) as exc:
            if not _retryable(exc):
                raise
            self.stats.counts["write_retries"] += 1
            log.warning("InfluxDB write failed (%s); retrying with backoff", exc)
            try:
                self._store_until_acknowledged(pending.out)
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
        out = pending.out
        self._confirm_dead_letters(out)  # durable before their offsets move on
        if out.backfills:  # stored: forget them (a crash before this runs them again)
            self.state.finish_backfills(task.id for task in out.backfills)
        if pending.offsets:
            try:
                self.consumer.commit(pending.offsets)
            except CommitRefused as exc:
                # A rebalance moved the partitions, or the coordinator is out of reach:
                # the records are read again and rewrite the same points (harmless).
                self.stats.counts["commits_not_made"] += 1
                log.warning("offsets not committed (%s); those records will be re-read", exc)
        self._count_stored(out)
        self._stored_at = time.monotonic()
        if self._on_batch is not None:
            self._on_batch()

    def _await(self, future: Future[None]) -> None:
        """The writer thread's outcome; a long wait keeps polling (paused) to stay in the group."""
        done, _ = wait([future], timeout=self.quiet_wait_s)
        if not done:
            self.consumer.pause_all()
            try:
                while not future.done():
                    if self._stop:
                        wait([future])
                        break
                    self._sleep_polling(1.0)
            finally:
                self.consumer.resume_all()
        future.result()

    def _count_stored(self, out: Batch) -> None:
        counts = self.stats.counts
        counts["points"] += len(out.main) + len(out.watched) + len(out.backfill_lines)
        if out.backfill is not None:
            counts["backfills"] += len(out.backfills)
            counts["backfill_queries"] += out.backfill.queries
            counts["backfilled_points"] += len(out.backfill_lines)
            if out.backfill.incomplete:
                counts["backfill_incomplete"] += out.backfill.incomplete

    def _store_until_acknowledged(self, out: Batch) -> None:
        """Store a batch whose first attempt failed, waiting out an outage step by step.

        Rewriting the main lines when only the watched ones failed is harmless.
        """
        if out.backfills and out.backfill is None:
            self._until_acknowledged(lambda: self._fetch_backfill(out))
        if out.main:
            self._write_until_acknowledged(out.main, self.influx.bucket)
        if out.watched or out.backfill_lines:
            self._write_until_acknowledged(
                out.watched + out.backfill_lines, self.influx.watched_bucket
            )

    def _decode(self, message: Any) -> contract.Event:
        """:func:`contract.decode`, with a fast path for the topic's own kind.

        The fast path accepts only what ``decode`` accepts: the same strict
        validation of the same class, and the schema field must be present.
        """
        value = message.value()
        if value is None:  # a tombstone (compacted quarantine topic)
            raise ContractError("no value (a tombstone); nothing to write")
        validate = self._kinds.get(message.topic())
        # NaN and Infinity are no JSON, yet pydantic's parser reads them in
        # free fields (extras, an alert's detail): leave those to the full decode.
        if validate is not None and b"NaN" not in value and b"Infinity" not in value:
            try:
                event: contract.Event = validate(value)
            except (ValidationError, ValueError, TypeError, RecursionError, OverflowError):
                pass  # the full decode says why (it is total: ContractError or an event)
            else:
                if "schema_" in event.model_fields_set:
                    return event
        return contract.decode(value, expect=self._expect.get(message.topic()))

    def _watch_all(self, events: Sequence[tuple[contract.Event, int | None]]) -> None:
        """Apply the poll's watches to the registry, recording the backfills they need.

        Registry changes and backfill rows are one SQLite transaction, and
        memory follows only once it is committed.
        """
        changed: dict[str, Watch] = {}
        spans: list[tuple[str, date, date]] = []
        for event, published_ms in events:
            window = self._watch_window(event, published_ms)
            if window is None:
                continue
            person_id, start, stop = window
            current = changed[person_id] if person_id in changed else self._watched.get(person_id)
            watch, needed = plan(current, start, stop)
            if watch != current:
                changed[person_id] = watch
            spans.extend((person_id, low, high) for low, high in needed)
        if not changed and not spans:
            return
        self._backfills.extend(self.state.record_watches(changed, spans))
        self._watched.update(changed)

    def _watch_window(
        self, event: contract.Event, published_ms: int | None
    ) -> tuple[str, date, date] | None:
        """Whom an event puts under watch, and the days of the watch (or None).

        A quarantine's "today" is the day its record was published (the Kafka
        record's timestamp), not the day the sink reads it, so a replay or a
        sink catching up backfills the same days the live run did.
        """
        if isinstance(event, contract.QuarantineRecord):
            published = (
                datetime.fromtimestamp(published_ms / 1000, UTC)
                if published_ms is not None and published_ms >= 0
                else datetime.now(UTC)  # a record without a timestamp (none from Kafka >= 0.10)
            )
            today = published.astimezone(self.tz).date()
            return (event.person_id, *quarantine_window(event.starts_on, event.ends_on, today))
        if isinstance(event, contract.Alert) and event.person_id:
            if event.kind.startswith("fever_"):
                start, stop = fever_window(event.event_time, self.tz, WATCH_AFTER_FEVER)
                return event.person_id, start, stop
        return None

    def _collect(self, event: contract.Event, out: Batch) -> None:
        if isinstance(event, contract.TemperatureReading):
            out.main.append(temperature_line(event))
            person_id = event.person_id
            if person_id is not None and person_id in self._watched:
                local_day = event.measured_at.astimezone(self.tz).date()
                if local_day < self._watched[person_id].until:
                    out.watched.append(watched_temperature_line(event, person_id))
        elif isinstance(event, contract.ScanEvent):
            key = MinuteKey(
                event.site_id, event.kiosk_id, event.direction, minute_of(event.scanned_at)
            )
            out.scans.append((key, event.event_id))
            if self._newest_scan is None or event.scanned_at > self._newest_scan:
                self._newest_scan = event.scanned_at
        elif isinstance(event, contract.Alert):
            out.main.append(alert_line(event))
        elif isinstance(event, contract.KioskHeartbeat):
            out.main.append(kiosk_health_line(event))
        # Quarantine records write no line: _watch_all handled them.

    def _write_until_acknowledged(self, lines: list[str], bucket: str) -> None:
        """Retry with backoff until stored; a stop request ends the wait (nothing committed)."""
        self._until_acknowledged(lambda: self.writer.write(lines, bucket))

    def _until_acknowledged(self, request: Callable[[], None]) -> None:
        """Repeat an InfluxDB request (a write or the backfill queries) until it succeeds.

        Backoff with jitter, partitions paused meanwhile; a stop request ends
        the wait with :class:`_Stopped`, and nothing of the batch is committed.
        """
        attempt = 0
        paused = False
        while True:
            try:
                request()
                break
            except (ApiException, HTTPError, OSError) as exc:
                if not _retryable(exc):
                    raise
                if self._stop:
                    raise _Stopped from exc
                delay = self.backoff.delay(attempt, self.rng)
                attempt += 1
                self.stats.counts["write_retries"] += 1
                log.warning("InfluxDB request failed (%s); retry %d in %.1f s", exc, attempt, delay)
                if not paused:
                    self.consumer.pause_all()
                    paused = True
                self._retrying = True
                self._sleep_polling(delay)
        self._retrying = False
        if paused:
            self.consumer.resume_all()

    def _sleep_polling(self, seconds: float) -> None:
        """Wait while keeping group membership alive (the consumer is paused, so it yields nothing).

        Partitions assigned meanwhile are paused as they are assigned, and
        records fetched just before the pause are held by the consumer for
        the resume (sinks.kafka_source), so the next commit skips nothing.
        """
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop:
            self._turned_at = time.monotonic()
            self.consumer.poll(timeout_s=min(left, 1.0))

    def health(self, stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
        """What ``GET /healthz`` reports (sinks.health): ``ok`` while the loop keeps turning.

        An InfluxDB outage is not unhealthy: the sink waits it out correctly,
        and a restart would not end it; ``retrying`` tells the operator.
        """
        now = time.monotonic()
        loop_age = now - self._turned_at
        return {
            "ok": loop_age <= stale_after_s,
            "loop_age_s": round(loop_age, 1),
            "last_stored_age_s": None
            if self._stored_at is None
            else round(now - self._stored_at, 1),
            "retrying": self._retrying,
            "pending_backfills": len(self._backfills),
            "stats": dict(self.stats.counts),
        }

    def _dead_letter(self, message: Any, reason: str, out: Batch) -> None:
        """Send a bad record to the dead-letter topic and count it (stats and InfluxDB).

        The send is confirmed before the batch's offsets are committed, so a
        record is never skipped without its dead letter.
        """
        where = describe(message)
        topic = where["topic"]
        self.stats.counts["deadletter"] += 1
        self.stats.counts[f"deadletter:{topic}:{reason_kind(reason)}"] += 1
        letter = {**where, "reason": reason, "seen_at": datetime.now(UTC)}
        future = send_dead_letter(self.producer, self.kafka.topic(contract.DEADLETTER), **letter)
        out.letters.append((future, letter))
        at_ms = record_timestamp(message)
        if at_ms is None:
            at_ms = int(time.time() * 1000)
        out.main.append(dead_letter_line(topic, reason, where["partition"], where["offset"], at_ms))

    def _confirm_dead_letters(self, out: Batch) -> None:
        """Every dead letter of the batch is on the broker, or the sink stops uncommitted.

        A send that failed is retried (DEAD_LETTER_ATTEMPTS in all); if the
        dead-letter topic stays unwritable, the sink exits with an error for
        its supervisor rather than commit past records it could not keep.
        """
        self.producer.flush()
        deadletter = self.kafka.topic(contract.DEADLETTER)
        for future, letter in out.letters:
            attempt = 1
            while True:
                try:
                    future.get(timeout=DEAD_LETTER_TIMEOUT_S)
                    break
                except KafkaError as exc:
                    self.stats.counts["deadletter_retries"] += 1
                    if attempt >= DEAD_LETTER_ATTEMPTS or self._stop:
                        raise ServiceError(
                            f"cannot write dead letters to {deadletter} ({exc}); stopping"
                            " with the batch uncommitted, so a restart reads it again"
                        ) from None
                    log.warning("dead letter not written (%s); retry %d", exc, attempt)
                    time.sleep(self.backoff.delay(attempt, self.rng))
                    attempt += 1
                    future = send_dead_letter(self.producer, deadletter, **letter)
                    self.producer.flush()

    def close(self) -> None:
        # A write still in flight here (after an error) finishes, but is not committed.
        self._executor.shutdown(wait=True)
        try:
            self.producer.flush()
            self.producer.close()
            self.consumer.close()
        except (KafkaError, KafkaException) as exc:  # pragma: no cover - shutdown path
            log.warning("closing Kafka clients: %s", exc)
        self.writer.close()
        self.state.close()
