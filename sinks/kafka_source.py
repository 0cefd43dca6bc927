"""The InfluxDB sink's Kafka consumer: librdkafka behind the handful of calls the sink makes.

Why a second Kafka client. The sink is the one role whose whole job is to move
records fast, and measured on this project's machines kafka-python parses
fetched records in Python at about 14 µs each (72,000/s for a bare loop), while
librdkafka (``confluent-kafka``, a wheel from PyPI) fetches, decompresses and
parses in its own threads, outside the GIL, and hands over about 280,000/s.
That difference was most of the sink's consumer thread (bench/README.md, the
sink section). Kiosks, the worker (faust's aiokafka) and the pager keep their
clients.

What the sink needs, and how it is kept here:

* **Batches** of at most ``max_records`` messages, grouped by partition in
  the order they were fetched.
* **Commits of explicit offsets** only, synchronously, after the batch's
  effect is stored. A commit that was not made, because the group moved on
  or the coordinator was out of reach, raises :class:`CommitRefused`; those
  records are read again later (here or by the new owner), which is harmless.
* **Pausing every partition** while InfluxDB is down, so memory holds one
  batch. A partition assigned during a pause is paused as it is assigned;
  records that still arrive while paused (fetched just before the pause) are
  held, in order, and handed out after :meth:`resume_all` (unless their
  partition was revoked meanwhile: its new owner re-reads them). Nothing
  polled is ever skipped, so a later commit cannot jump over it.
* Prefetching is bounded (``queued.max.messages.kbytes``): librdkafka fills
  its queue in the background, and the bound keeps the sink's memory flat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from scantrail.broker import librdkafka_connection
from scantrail.settings import KafkaSettings

log = logging.getLogger(__name__)

Partition = tuple[str, int]
"""A topic partition as ``(topic, partition)``."""

#: How much librdkafka may prefetch per consumer (KB), the sink's memory bound
#: beside the one batch being written.
PREFETCH_KB = 16 * 1024

_NOT_MADE = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._STATE,
    KafkaError._NO_OFFSET,
    # the coordinator out of reach (a broker restart): nothing committed, nothing lost
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._WAIT_COORD,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR,
    KafkaError.REQUEST_TIMED_OUT,
}


class CommitRefused(Exception):
    """The commit was not made: the group rebalanced, or the coordinator could not be reached.

    Nothing is lost: the records stay uncommitted, so they are read again (by
    this member or by the partition's new owner) and rewrite the same points.
    """


class SinkConsumer:
    """A consumer group member that polls batches, pauses as a whole and commits explicitly."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        *,
        group_id: str,
        client_id: str,
        max_records: int,
    ) -> None:
        self.max_records = max_records
        self._consumer = Consumer(
            {
                **librdkafka_connection(kafka),
                "group.id": group_id,
                "client.id": client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "queued.max.messages.kbytes": PREFETCH_KB,
                "fetch.max.bytes": 8 * 1024 * 1024,
                "logger": log,
            }
        )
        self._assigned: set[Partition] = set()
        self._paused = False
        self._held: list[Message] = []
        self._consumer.subscribe(
            list(topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    # -- rebalance callbacks (run inside consume) ---------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        self._assigned = {(tp.topic, tp.partition) for tp in partitions}
        if self._paused and partitions:
            consumer.pause(partitions)
        log.info("assigned %d partition(s)%s", len(partitions), " (paused)" if self._paused else "")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= gone
        if self._held:
            self._held = [m for m in self._held if (m.topic(), m.partition()) not in gone]
        consumer.unassign()
        log.info("revoked %d partition(s)", len(partitions))

    # -- the calls the sink makes -------------------------------------------------

    def assignment(self) -> set[Partition]:
        return set(self._assigned)

    @property
    def paused(self) -> bool:
        return self._paused

    def poll(self, timeout_s: float) -> dict[Partition, list[Message]]:
        """Up to ``max_records`` messages, grouped by partition; empty while paused.

        Polling while paused is still needed: it keeps the member in its group
        and runs rebalance callbacks.
        """
        if not self._paused and self._held:
            held, self._held = self._held[: self.max_records], self._held[self.max_records :]
            return _by_partition(held)
        messages = self._consumer.consume(num_messages=self.max_records, timeout=timeout_s)
        good = [m for m in messages if m.error() is None]
        if len(good) != len(messages):
            for m in messages:
                if (err := m.error()) is not None and err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
        if self._paused:
            self._held.extend(good)  # fetched before the pause: kept for the resume
            return {}
        return _by_partition(good)

    def pause_all(self) -> None:
        if self._paused:
            return
        self._paused = True
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(assigned)

    def resume_all(self) -> None:
        if not self._paused:
            return
        self._paused = False
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.resume(assigned)

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offsets to read, synchronously.

        Raises :class:`CommitRefused` when the group rebalanced first.
        """
        wanted = [TopicPartition(topic, part, offset) for (topic, part), offset in offsets.items()]
        try:
            done = self._consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and _not_made(error):
                raise CommitRefused(str(error)) from exc
            raise
        failed = [tp.error for tp in done or () if tp.error is not None]
        if failed:
            if all(_not_made(error) for error in failed):
                raise CommitRefused(", ".join(str(error) for error in failed))
            raise KafkaException(failed[0])

    def close(self) -> None:
        """Leave the group without committing (offsets are committed only after writes)."""
        self._consumer.close()


def _not_made(error: KafkaError) -> bool:
    """A commit failure that only means "not committed" (re-reading is harmless), not a fault."""
    return error.code() in _NOT_MADE or (error.retriable() and not error.fatal())


def _by_partition(messages: Iterable[Message]) -> dict[Partition, list[Message]]:
    grouped: dict[Partition, list[Message]] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        got = grouped.get(key)
        if got is None:
            grouped[key] = [message]
        else:
            got.append(message)
    return grouped


def record_timestamp(message: Message) -> int | None:
    """The record's Kafka timestamp in ms, or None when it has none."""
    kind, value = message.timestamp()
    return None if kind == 0 or value < 0 else int(value)  # 0: TIMESTAMP_NOT_AVAILABLE


def describe(message: Message) -> dict[str, Any]:
    """Where a message came from, for dead letters and logs."""
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": message.key(),
        "value": message.value(),
    }
