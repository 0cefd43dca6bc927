"""Rebuild the worker's tables from their changelogs with librdkafka, before faust starts.

Why. faust 0.15 restores a changelog one record at a time on its event loop:
every record goes through the conductor, a queue, an ``asyncio.wait_for``
(a new task each) and a recount of every partition's remaining records.
Measured on this project's machines that is 1,300 to 1,800 records/s
(``bench/results/stream.json``), so a worker restarted on an empty data
directory at a district's scale stays unready for minutes, with its gates'
alerts waiting behind it.

What. For every table and every partition of its changelog, the records from
what the local store already holds (faust's persisted offset, plus one) to
the partition's end are read with one librdkafka consumer, which fetches and
parses outside the GIL, and written with RocksDB write batches into faust's
own store file for that partition, together with faust's own offset key
holding the last offset applied. faust's recovery then starts from that
offset and reads only what was written since (by a worker still running
elsewhere in the group), so faust keeps every guarantee of its own recovery.

Why it is safe:

* a record is applied exactly as faust's ``apply_changelog_batch`` applies
  it: the raw key and value, a tombstone deletes; and the offset is written in
  the same write batch as the records it covers, so a crash in the middle
  leaves a store that says truthfully how far it got;
* the store is opened with faust's own options at faust's own path and closed
  before faust opens it;
* every partition is restored, owned or not: with faust's default of one
  standby replica a worker holds every partition of a two-worker group anyway,
  and a partition it never owns is a file whose offset matches its contents;
* nothing here is needed for correctness: if the broker cannot be read, or
  the time bound runs out, the worker logs why and faust restores the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
OFFSETS_PATIENCE_S = 15.0
"""How long the restore waits for partition offsets in all (new topics have no leader at once)."""
CHUNK_RECORDS = 20_000
"""Records per write batch: large enough to amortise a write, small enough to bound memory."""


@dataclass
class Partition:
    """One changelog partition to restore, and how far it has got."""

    topic: str
    partition: int
    start: int
    end: int
    db: Any
    offset_key: bytes
    applied: int = -1
    pending: Any = None
    pending_records: int = 0
    restored: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.end - max(self.start, self.applied + 1))


@dataclass
class RestoreReport:
    """What a restore did, for the log and for tests."""

    records: int = 0
    partitions: int = 0
    up_to_date: int = 0
    skipped: int = 0
    seconds: float = 0.0
    complete: bool = True
    reason: str = ""
    tables: dict[str, int] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def start_offset(persisted: int | None, low: int, high: int) -> int | None:
    """Where to start reading a partition, or None when the store needs nothing from it.

    ``persisted`` is the offset of the last record the store holds (faust's
    offset key). A store that claims more than the changelog has (a topic
    deleted and re-created under an old data directory) is left to faust,
    whose consistency check reports it.
    """
    start = low if persisted is None else max(persisted + 1, low)
    return start if start < high else None


def faust_stores(app: Any) -> Iterable[tuple[str, Any]]:
    """(changelog topic, RocksDB store) of every table of ``app`` kept in RocksDB."""
    from faust.stores.rocksdb import Store

    for table in app.tables.values():
        store = table.data
        if isinstance(store, Store):
            yield table.changelog_topic.get_topic_name(), store


def restore_changelogs(
    app: Any,
    consumer_config: dict[str, Any],
    *,
    deadline_s: float = 600.0,
    clock: Callable[[], float] = time.monotonic,
) -> RestoreReport:
    """Bring every RocksDB table of ``app`` up to its changelog's end (module docstring)."""
    report = RestoreReport()
    started = clock()
    try:
        _restore(app, consumer_config, report, started + deadline_s, clock)
    except Exception as exc:  # the broker, a store: faust's own recovery does the rest
        report.complete = False
        report.reason = f"{type(exc).__name__}: {exc}"
    report.seconds = clock() - started
    if report.complete:
        log.info(
            "changelog restore: %d records into %d partitions in %.1f s (%.0f/s);"
            " %d partitions were up to date, %d left to faust",
            report.records,
            report.partitions,
            report.seconds,
            report.records_per_second,
            report.up_to_date,
            report.skipped,
        )
    else:
        log.warning(
            "changelog restore stopped after %d records (%s); faust's recovery restores the rest",
            report.records,
            report.reason,
        )
    return report


def _restore(
    app: Any,
    consumer_config: dict[str, Any],
    report: RestoreReport,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **consumer_config,
            "group.id": f"{app.conf.id}-restore",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
        }
    )
    parts: dict[tuple[str, int], Partition] = {}
    give_up = clock() + OFFSETS_PATIENCE_S
    try:
        for topic, store in faust_stores(app):
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or metadata.error is not None:
                continue  # not created yet: nothing to restore
            for number in sorted(metadata.partitions):
                marks = watermarks(consumer, TopicPartition(topic, number), clock, give_up)
                if marks is None:
                    report.skipped += 1  # faust's recovery reads it
                    continue
                low, high = marks
                if high <= low:
                    report.up_to_date += 1  # empty: no store file is made for it
                    continue
                path = store.partition_path(number)
                path.parent.mkdir(parents=True, exist_ok=True)
                db = store.rocksdb_options.open(path)
                persisted = db.get(store.offset_key)
                start = start_offset(
                    None if persisted is None else int(persisted), int(low), int(high)
                )
                if start is None:
                    report.up_to_date += 1
                    db.close()
                    continue
                parts[(topic, number)] = Partition(
                    topic, number, start, int(high), db, store.offset_key
                )
        report.partitions = len(parts)
        if parts:
            consumer.assign([TopicPartition(p.topic, p.partition, p.start) for p in parts.values()])
            _consume(consumer, parts, report, deadline, clock)
    finally:
        for part in parts.values():  # what was written, even if the restore stopped early
            report.records += part.restored
            report.tables[part.topic] = report.tables.get(part.topic, 0) + part.restored
            part.db.close()
        consumer.close()


def watermarks(
    consumer: Any, tp: Any, clock: Callable[[], float], give_up: float
) -> tuple[int, int] | None:
    """(first, next) offset of a changelog partition; None if the broker cannot say in time.

    A topic the worker has just created has no leader for a moment
    (NOT_LEADER_FOR_PARTITION), so the broker is asked again until ``give_up``
    (one bound for every partition: a broker that is down must not hold the
    worker's start for long).
    """
    from confluent_kafka import KafkaException

    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=5)
            return int(low), int(high)
        except KafkaException as exc:
            if clock() > give_up:
                where = f"{tp.topic}[{tp.partition}]"
                log.warning("changelog restore: no offsets for %s: %s", where, exc)
                return None
        time.sleep(0.2)


def _consume(
    consumer: Any,
    parts: dict[tuple[str, int], Partition],
    report: RestoreReport,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    import rocksdict
    from confluent_kafka import KafkaError, KafkaException

    open_parts = set(parts)
    total = sum(p.remaining for p in parts.values())
    log.info("changelog restore: %d records in %d partitions to read", total, len(parts))
    told = clock()
    while open_parts:
        if clock() > deadline:
            report.complete, report.reason = False, "time bound reached"
            break
        for message in consumer.consume(num_messages=10_000, timeout=1.0):
            error = message.error()
            key = (message.topic(), message.partition())
            part = parts.get(key)
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if part is not None:
                        _write(part)
                        open_parts.discard(key)
                    continue
                raise KafkaException(error)
            if part is None:
                continue
            pending = part.pending
            if pending is None:
                pending = part.pending = rocksdict.WriteBatch(raw_mode=True)
            value = message.value()
            if value is None:
                pending.delete(message.key())
            else:
                pending.put(message.key(), value)
            part.applied = message.offset()
            part.pending_records += 1
            if part.pending_records >= CHUNK_RECORDS:
                _write(part)
        if clock() - told >= PROGRESS_EVERY_S:
            told = clock()
            done = sum(p.restored + p.pending_records for p in parts.values())
            log.info("changelog restore: %d of about %d records", done, total)
    for part in parts.values():
        _write(part)


def _write(part: Partition) -> None:
    """Apply what was read of ``part``, with the offset it reaches, in one write batch."""
    if part.pending is None:
        return
    part.pending.put(part.offset_key, str(part.applied).encode())
    part.db.write(part.pending)
    part.restored += part.pending_records
    part.pending, part.pending_records = None, 0
