"""Drain the spool into Kafka, deleting rows only after the broker acknowledged them.

The publisher runs beside the gate loop: scans keep being spooled while the
network or broker is down, and the publisher catches up when it returns. The
producer is idempotent with acks=all, so a retried batch never lands twice in
the log; the only duplicates possible are rows re-sent after a crash between
the broker's ack and the spool delete, and those carry the same event_id.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingest.spool import Spool, SpooledEvent
from scantrail.broker import explain_refusal, make_producer
from scantrail.errors import PublishError
from scantrail.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass
class PublisherStats:
    sent: int = 0
    failed_attempts: int = 0
    last_error: str | None = None


class SpoolPublisher:
    """Moves spooled events to Kafka in batches, oldest first."""

    def __init__(
        self,
        spool: Spool,
        kafka: KafkaSettings,
        *,
        batch: int = 500,
        flush_timeout_s: float = 30.0,
        idle_sleep_s: float = 0.05,
    ) -> None:
        self.spool = spool
        self.kafka = kafka
        self.batch = batch
        self.flush_timeout_s = flush_timeout_s
        self.idle_sleep_s = idle_sleep_s
        self.stats = PublisherStats()
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            # max_block_ms bounds how long send() waits for metadata when the
            # broker is unreachable, so the loop notices and backs off.
            self._producer = make_producer(
                self.kafka, client_id="scantrail-kiosk", max_block_ms=5000
            )
        return self._producer

    def publish_once(self) -> int:
        """Send one batch; returns how many rows were acknowledged and removed."""
        rows = self.spool.peek(self.batch)
        if not rows:
            return 0
        producer = self._ensure_producer()
        futures: list[tuple[SpooledEvent, Any]] = []
        for row in rows:
            future = producer.send(
                self.kafka.topic(row.topic),
                key=row.key,
                value=row.value,
                timestamp_ms=row.timestamp_ms,
            )
            futures.append((row, future))
        producer.flush(timeout=self.flush_timeout_s)
        acked: list[int] = []
        for row, future in futures:
            if future.succeeded():
                acked.append(row.row_id)
            else:
                # Later rows of a failed batch are not removed either: they are
                # re-sent next round, in order, with their own event ids.
                break
        self.spool.remove(acked)
        self.stats.sent += len(acked)
        if len(acked) < len(rows):
            row, failed = futures[len(acked)]
            why = explain_refusal(
                failed.exception, "WRITE", self.kafka.topic(row.topic), self.kafka
            )
            raise KafkaError(f"broker did not acknowledge: {why}")
        return len(acked)

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                sent = self.publish_once()
                backoff = 0.5
                if sent == 0:
                    self._stop.wait(self.idle_sleep_s)
            except (KafkaError, PublishError) as exc:
                # The thread must outlive any outage: it is the only way out of the spool.
                self.stats.failed_attempts += 1
                self.stats.last_error = str(exc)
                log.warning(
                    "publish failed (%s); %d events spooled; retry in %.1f s",
                    exc,
                    self.spool.depth(),
                    backoff,
                )
                self._reset_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _reset_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except KafkaError:  # pragma: no cover - closing a broken client
                pass
            self._producer = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="spool-publisher", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 10.0) -> None:
        """Try to empty the spool for up to ``drain_s`` seconds, then stop."""
        deadline = time.monotonic() + drain_s
        while self.spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.flush_timeout_s + 5)
        self._reset_producer()
