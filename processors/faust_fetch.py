"""Polls of a bounded size in which every buffered partition gets its share.

faust hands each poll's records to the agents through one loop (taking the
partitions round-robin), and polls again only once all are delivered. By
default a poll takes every record aiokafka has buffered (up to a fetch,
1 MiB, per partition), so while a source topic has a backlog the later stages
(person, site, trails) receive their few large forwarded messages only
between whole source fetches: in the bench of 2026-12-04 the person stage
received nothing for 130 s while the kiosk stage read 90,000 readings, and
its alerts waited as long.

A bound per poll (faust's ``broker_max_poll_records``) alone made it worse in
another way: aiokafka's ``Fetcher.fetched_records`` fills the bound from its
buffered partitions in the order they were fetched, so the first partitions
took every poll; one source partition delivered nothing for 80 s (and the
person watermark, a minimum over source partitions, stood still), and the
quarantine partitions, read in the same poll as the first scans without a
bound, came after thousands of scans they should have been judged with.

:func:`install` makes a bounded poll fair: it takes at most
``bound / n`` records (rounded) from each of the ``n`` partitions that have
records buffered, so every one of them is in every poll, as in faust's
unbounded poll. Which records are delivered, and their order within a
partition, is aiokafka's; only how many each poll takes from each partition
changes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def shares(bound: int, ready: int) -> list[int]:
    """Records one poll takes from each of ``ready`` buffered partitions: ``bound`` split evenly.

    A bound below the number of partitions gives the first ones a record
    each and the rest none this poll (keep the bound well above it).
    """
    base, extra = divmod(bound, max(ready, 1))
    return [base + 1] * min(extra, ready) + [base] * (ready - min(extra, ready))


def install() -> None:
    """Wrap aiokafka's ``Fetcher.fetched_records`` once, process-wide."""
    from aiokafka.consumer.fetcher import Fetcher, FetchResult

    original = Fetcher.fetched_records
    if getattr(original, "_scantrail_fair", False):
        return

    async def fetched_records(
        self: Any,
        partitions: Collection[Any] | None,
        timeout: float = 0,
        max_records: int | None = None,
    ) -> Any:
        if max_records is None:
            return await original(self, partitions, timeout=timeout, max_records=None)
        # Only partitions holding records: an error is left for aiokafka to
        # raise on the plain path below, before anything else was taken.
        ready = [
            tp
            for tp, held in self._records.items()
            if type(held) is FetchResult and (not partitions or tp in partitions)
        ]
        drained: dict[Any, Any] = {}
        for tp, each in zip(ready, shares(max_records, len(ready)), strict=True):
            if each:
                drained.update(await original(self, {tp}, timeout=0, max_records=each))
        if drained:
            return drained
        return await original(self, partitions, timeout=timeout, max_records=max_records)

    fetched_records._scantrail_fair = True  # type: ignore[attr-defined]
    Fetcher.fetched_records = fetched_records


def tune(min_bytes: int, max_wait_ms: int) -> None:
    """Make faust's worker consumer ask each fetch for ``min_bytes`` within ``max_wait_ms``.

    faust builds its aiokafka consumer with aiokafka's 1-byte minimum (and a
    1.5 s wait) and offers no setting for either; the consumer reads both when
    it starts its fetcher, so they are set on it as it is made.
    """
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = getattr(AIOKafkaConsumerThread._create_worker_consumer, "_scantrail_original", None)
    original = original or AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_min_bytes = min_bytes
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    create_worker_consumer._scantrail_original = original  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer
