"""Replay a past period of the scans topic into the same trail index the worker keeps.

Kafka record timestamps are the scans' event times (kiosks set them), so the
start offset of every partition is found with ``offsets_for_times``: no record
before it is inside the period. Reading then goes on to each partition's end
offset as it was when the replay began, because a kiosk that caught up after
an outage writes old event times at new offsets; filtering by event time keeps
exactly the period's scans, the same set the live index holds.

The period read is widened by the contact window on both sides: a co-visitor
scanned ten minutes before ``since`` is a contact of a scan at ``since``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from kafka import KafkaConsumer, TopicPartition

from processors.trails import TrailIndex
from scantrail import contract
from scantrail.broker import check_login, connection
from scantrail.errors import ContractError, ServiceError
from scantrail.settings import KafkaSettings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (records read so far, records to read)


@dataclass
class ReplayStats:
    records: int = 0
    scans: int = 0
    in_period: int = 0
    invalid: int = 0
    duplicates: int = 0


def read_scans(
    kafka: KafkaSettings,
    since: datetime,
    until: datetime,
    *,
    stats: ReplayStats,
    progress: Progress | None = None,
) -> Iterator[contract.ScanEvent]:
    """Yield every valid scan with ``since <= scanned_at <= until`` on the scans topic."""
    topic = kafka.topic(contract.SCANS)
    check_login(kafka)
    consumer = KafkaConsumer(
        **connection(kafka),
        enable_auto_commit=False,
        client_id="scantrail-replay",
        max_poll_records=5000,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ServiceError(f"topic {topic} not found at {kafka.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        ends = consumer.end_offsets(tps)
        todo: dict[TopicPartition, int] = {}
        for tp in tps:
            found = starts.get(tp)
            start = ends[tp] if found is None else found.offset
            consumer.seek(tp, start)
            if start < ends[tp]:
                todo[tp] = ends[tp]
        total = sum(ends[tp] - consumer.position(tp) for tp in todo)
        if progress is not None:
            progress(0, total)
        if not todo:
            return
        consumer.pause(*[tp for tp in tps if tp not in todo])
        while todo:
            batch = consumer.poll(timeout_ms=1000)
            for tp, messages in batch.items():
                end = todo.get(tp)
                if end is None:
                    continue
                for message in messages:
                    if message.offset >= end:
                        break
                    stats.records += 1
                    scan = _decode(message.value, stats)
                    if scan is not None and since <= scan.scanned_at <= until:
                        stats.in_period += 1
                        yield scan
                if consumer.position(tp) >= end:
                    del todo[tp]
                    consumer.pause(tp)
            if progress is not None:
                progress(stats.records, total)
    finally:
        consumer.close()


def _decode(value: bytes, stats: ReplayStats) -> contract.ScanEvent | None:
    try:
        scan = contract.decode_as(value, contract.ScanEvent)
    except ContractError as exc:
        stats.invalid += 1
        log.debug("replay: skipping invalid scan: %s", exc)
        return None
    stats.scans += 1
    return scan


def replay_index(
    kafka: KafkaSettings,
    since: datetime,
    until: datetime,
    window: timedelta,
    *,
    progress: Progress | None = None,
) -> tuple[TrailIndex, list[contract.ScanEvent], ReplayStats]:
    """The index of the period widened by ``window``, and the period's own scans."""
    stats = ReplayStats()
    index = TrailIndex()
    in_period: list[contract.ScanEvent] = []
    for scan in read_scans(kafka, since - window, until + window, stats=stats, progress=progress):
        if index.add_event(scan):
            if since <= scan.scanned_at <= until:
                in_period.append(scan)
        else:
            stats.duplicates += 1
    index.settle()
    return index, in_period, stats
