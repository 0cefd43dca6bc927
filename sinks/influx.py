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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from urllib3.exceptions import HTTPError

from scantrail import contract
from scantrail.broker import make_producer, send_dead_letter
from scantrail.errors import ContractError, ServiceError
from scantrail.settings import InfluxSettings, KafkaSettings

from sinks.lines import to_lines

log = logging.getLogger(__name__)

SINK_TOPICS = (contract.TEMPERATURES, contract.ALERTS)
BATCH_LINES = 5000


@dataclass
class SinkStats:
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


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
    ) -> None:
        self.kafka = kafka
        self.writer = InfluxWriter(influx)
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
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self, *, idle_exit_s: float | None = None, on_batch: Callable[[], None] | None = None) -> None:
        """Consume until stopped (or until ``idle_exit_s`` seconds pass with no message)."""
        last_message = time.monotonic()
        try:
            while not self._stop:
                batch = self.consumer.poll(timeout_ms=500, max_records=self.batch_lines)
                if not batch:
                    if idle_exit_s is not None and time.monotonic() - last_message > idle_exit_s:
                        return
                    continue
                last_message = time.monotonic()
                self._handle(batch)
                if on_batch is not None:
                    on_batch()
        finally:
            self.close()

    def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        lines: list[str] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, messages in batch.items():
            for message in messages:
                try:
                    event = contract.decode(message.value)
                except ContractError as exc:
                    self._dead_letter(message, str(exc))
                else:
                    lines.extend(to_lines(event))
                    self.stats.counts[event.SCHEMA] += 1
            offsets[tp] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
        if lines:
            self._write_until_acknowledged(lines)
        self.producer.flush()  # dead letters are durable before their offsets move on
        try:
            self.consumer.commit(offsets)
        except CommitFailedError:
            # Partitions moved to another member mid-batch: it re-reads them and
            # rewrites the same points, which is harmless.
            log.warning("commit refused after a rebalance; the new owner re-delivers")
        self.stats.counts["points"] += len(lines)

    def _write_until_acknowledged(self, lines: list[str]) -> None:
        attempt = 0
        paused = False
        while True:
            try:
                self.writer.write(lines)
                break
            except (ApiException, HTTPError, OSError) as exc:
                status = getattr(exc, "status", None)
                if status is not None and 400 <= status < 500 and status not in (408, 429):
                    raise
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
        """Wait while keeping group membership alive; paused partitions yield nothing."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.consumer.poll(timeout_ms=int(min(left, 1.0) * 1000) or 1)

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
        try:
            self.producer.flush()
            self.producer.close()
            self.consumer.close(autocommit=False)
        except KafkaError as exc:  # pragma: no cover - shutdown path
            log.warning("closing Kafka clients: %s", exc)
        self.writer.close()
